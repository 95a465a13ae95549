"""Detector families: what kb_streams knows of each detector, and the layouts its arrays come in.

Module shapes, the keys whose length is the number of pulses (or memory cells), module numbering
in source names, and the known axis orders of each family (online from the calibration pipeline,
from files, raw with a gain axis, already labelled). Choosing which layout a received array has is
:mod:`kb_streams.layouts`' job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "DETECTORS",
    "DetectorSpec",
    "Dims",
    "Layout",
    "detector_for",
    "full_module_count",
]

Dims = tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """One named way a detector array can arrive: the dimension name of each axis.

    Attributes
    ----------
    name
        ``'online'`` (bridge, calibration pipeline), ``'file'`` (files, extra-data's streamer),
        ``'file-raw'`` (raw AGIPD/LPD/DSSC files: ``data_gain`` axis), ``'labelled'`` (already in
        kb_streams' order) or ``'custom'`` (given by the caller).
    dims
        One name per axis of the received array, in its order.
    """

    name: str
    dims: Dims

    @property
    def combined(self) -> bool:
        """True when the array holds several modules (has a ``module`` axis)."""
        return "module" in self.dims


@dataclass(frozen=True)
class DetectorSpec:
    """What kb_streams knows about one detector family.

    Attributes
    ----------
    name
        Family name: ``'AGIPD'``, ``'LPD'``, ``'DSSC'``, ``'JUNGFRAU'``, ``'ePix100'``, ...
    module_shape
        ``(slow_scan, fast_scan)`` pixels per module, as in extra-data and extra_geom; None
        when any size goes (cameras).
    pulse_dim
        ``'pulse'`` for XTDF detectors (and the frame axis of cameras), ``'cell'`` for JUNGFRAU.
    pulse_keys
        Keys in the same source whose length is the number of pulses (or memory cells).
    group
        Key prefix of per-pulse data in the source (``'image'``, ``'data'``).
    source_re
        Recognises the family in a source name.
    module_re
        Finds the module number (group 1) in a per-module source name.
    first_module
        Number of the first module (0 for XTDF, 1 for JUNGFRAU, as extra-data counts).
    n_modules
        Modules in the full detector, when the family fixes it.
    layouts
        Known layouts, most likely first (per-module layouts, then multi-module ones).
    train_resolved
        One frame per train (ePix, cameras): a frame axis of length 1 is dropped.
    key_re
        When set, only keys matching it hold detector images (cameras: ``image``).
    """

    name: str
    module_shape: tuple[int, int] | None
    pulse_dim: str
    pulse_keys: tuple[str, ...]
    group: str
    source_re: str
    module_re: str
    first_module: int
    n_modules: int | None
    layouts: tuple[Layout, ...] = field(repr=False)
    train_resolved: bool = False
    key_re: str | None = None

    def holds_images(self, key: str) -> bool:
        """Whether ``key`` may hold detector images (always, unless ``key_re`` says)."""
        return self.key_re is None or re.search(self.key_re, key) is not None

    def matches_source(self, source: str) -> bool:
        """Whether ``source`` names a device of this family."""
        return re.search(self.source_re, source, re.IGNORECASE) is not None

    def module_number(self, source: str) -> int | None:
        """The module number in a per-module source name, or None for a multi-module source."""
        match = re.search(self.module_re, source)
        return int(match.group(1)) if match else None


def _xtdf_layouts() -> tuple[Layout, ...]:
    return (
        Layout("online", ("fast_scan", "slow_scan", "pulse")),
        Layout("file", ("pulse", "slow_scan", "fast_scan")),
        Layout("file-raw", ("pulse", "data_gain", "slow_scan", "fast_scan")),
        Layout("frame", ("slow_scan", "fast_scan")),
        Layout("file-raw-frame", ("data_gain", "slow_scan", "fast_scan")),  # raw AGIPD, 1 frame
        Layout("online", ("module", "fast_scan", "slow_scan", "pulse")),
        Layout("file", ("pulse", "module", "slow_scan", "fast_scan")),
        Layout("file-raw", ("pulse", "data_gain", "module", "slow_scan", "fast_scan")),
        Layout("labelled", ("module", "pulse", "slow_scan", "fast_scan")),
        Layout("labelled", ("module", "pulse", "data_gain", "slow_scan", "fast_scan")),
    )


def _jungfrau_layouts() -> tuple[Layout, ...]:
    return (
        Layout("online", ("slow_scan", "fast_scan", "cell")),
        Layout("file", ("cell", "slow_scan", "fast_scan")),
        Layout("frame", ("slow_scan", "fast_scan")),
        Layout("online", ("module", "slow_scan", "fast_scan", "cell")),
        Layout("file", ("cell", "module", "slow_scan", "fast_scan")),
        Layout("labelled", ("module", "cell", "slow_scan", "fast_scan")),
    )


def _camera_layouts() -> tuple[Layout, ...]:
    return (
        Layout("file", ("slow_scan", "fast_scan")),
        Layout("online", ("slow_scan", "fast_scan", "pulse")),  # calibrated: (y, x, 1)
        Layout("online-raw", ("pulse", "slow_scan", "fast_scan")),  # raw: (1, y, x)
        Layout("labelled", ("module", "slow_scan", "fast_scan")),
    )


_XTDF_MODULE_RE = r"/(?:DET|CORR)/(\d+)CH"
_JF_MODULE_RE = r"/(?:DET|CORR)/(?:JNGFR|MODULE_|RECEIVER-)(\d+)"

#: The detector families kb_streams labels, by name.
DETECTORS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec("AGIPD", (512, 128), "pulse", ("image.pulseId", "image.cellId"), "image",
                     r"AGIPD", _XTDF_MODULE_RE, 0, 16, _xtdf_layouts()),
        DetectorSpec("LPD", (256, 256), "pulse", ("image.pulseId", "image.cellId"), "image",
                     r"LPD", _XTDF_MODULE_RE, 0, 16, _xtdf_layouts()),
        DetectorSpec("DSSC", (128, 512), "pulse", ("image.pulseId", "image.cellId"), "image",
                     r"DSSC", _XTDF_MODULE_RE, 0, 16, _xtdf_layouts()),
        DetectorSpec("JUNGFRAU", (512, 1024), "cell", ("data.memoryCell",), "data",
                     r"JNGFR|JUNGF|_JF\d|_JF500K", _JF_MODULE_RE, 1, None, _jungfrau_layouts()),
        DetectorSpec("ePix10K", (352, 384), "pulse", (), "data",
                     r"EPIX10K", r"EPIX10K[-_]?(\d+)", 1, None, _camera_layouts(),
                     train_resolved=True),
        DetectorSpec("ePix100", (704, 768), "pulse", (), "data",
                     r"EPIX", r"EPIX(?:100)?[-_](\d+)", 1, None, _camera_layouts(),
                     train_resolved=True),
        DetectorSpec("camera", None, "pulse", (), "data",
                     r"_CAM\b|CAM:|/CAM/|CAMERA", r"(?!)", 0, None, _camera_layouts()[:3],
                     train_resolved=True, key_re=r"(^|\.)image(\.|$)"),
    )
}

_AGIPD500K = re.compile(r"AGIPD500K", re.IGNORECASE)


def full_module_count(spec: DetectorSpec, source: str) -> int | None:
    """Modules in the whole detector for ``source``, when known (AGIPD500K has 8)."""
    if spec.name == "AGIPD" and _AGIPD500K.search(source):
        return 8
    return spec.n_modules


def detector_for(source: str, detector: str | DetectorSpec | None = None) -> DetectorSpec | None:
    """The detector family of ``source``, from its name (or the ``detector`` override).

    Examples
    --------
    >>> detector_for('FXE_DET_LPD1M-1/DET/3CH0:xtdf').name
    'LPD'
    >>> detector_for('SPB_IRDA_JF4M/DET/JNGFR02:daqOutput').name
    'JUNGFRAU'
    >>> detector_for('SA1_XTD2_XGM/XGM/DOOCS') is None
    True
    """
    if isinstance(detector, DetectorSpec):
        return detector
    if detector is not None:
        for name, spec in DETECTORS.items():
            if name.lower() == str(detector).lower():
                return spec
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    for spec in DETECTORS.values():
        if spec.matches_source(source):
            return spec
    return None
