"""Detector array layouts: which axis of a received array is which, found without copying.

Bridge and file data order their axes differently (protocol.md §5.3). The calibration pipeline
sends XTDF modules (AGIPD, LPD, DSSC) as ``(fast_scan, slow_scan, pulse)``, files and
extra-data's streamer as ``(pulse, slow_scan, fast_scan)``; raw AGIPD files add a ``data_gain``
axis after ``pulse``; JUNGFRAU sends ``(slow_scan, fast_scan, cell)`` live and
``(cell, slow_scan, fast_scan)`` from files. This module names the axes of an array; moving them
into the canonical order is a :func:`numpy.transpose` view (no copy), done by
:mod:`kb_streams.labels`.

The pulse axis is *found* from the number of pulse or cell IDs the source sends alongside
(``image.pulseId``/``image.cellId``, JUNGFRAU ``data.memoryCell``), never guessed from the
shape alone: LPD modules are 256 x 256, so a shape test cannot tell its layouts apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .detector_families import (
    DETECTORS,
    DetectorSpec,
    Dims,
    Layout,
    detector_for,
    full_module_count,
)
from .errors import LayoutError

__all__ = [
    "DETECTORS",
    "DetectorSpec",
    "Layout",
    "LayoutError",
    "canonical_order",
    "detector_for",
    "full_module_count",
    "parse_layout",
    "from_file_streamer",
    "pulse_count",
    "resolve_layout",
]

#: Short names accepted in an explicit layout, and the dimension names they stand for.
DIM_ALIASES: dict[str, str] = {
    "m": "module", "mod": "module", "module": "module",
    "p": "pulse", "pulse": "pulse", "frame": "pulse",
    "c": "cell", "cell": "cell",
    "g": "data_gain", "gain": "data_gain", "data_gain": "data_gain",
    "ss": "slow_scan", "slow_scan": "slow_scan", "y": "slow_scan",
    "fs": "fast_scan", "fast_scan": "fast_scan", "x": "fast_scan",
}

_ORDER = {"module": 0, "pulse": 1, "cell": 1, "data_gain": 3, "slow_scan": 4, "fast_scan": 5}


def parse_layout(layout: str | Sequence[str]) -> Dims:
    """Turn ``'pulse,ss,fs'`` or ``('pulse', 'slow_scan', 'fast_scan')`` into full dim names.

    Short names: ``m``/``module``, ``p``/``pulse``/``frame``, ``c``/``cell``, ``g``/``gain``/
    ``data_gain``, ``ss``/``y``/``slow_scan``, ``fs``/``x``/``fast_scan``. Other names are kept
    as they are.

    Examples
    --------
    >>> parse_layout('fs, ss, pulse')
    ('fast_scan', 'slow_scan', 'pulse')
    >>> parse_layout(['module', 'c', 'y', 'x'])
    ('module', 'cell', 'slow_scan', 'fast_scan')
    """
    parts = re.split(r"[\s,]+", layout.strip()) if isinstance(layout, str) else list(layout)
    dims = tuple(DIM_ALIASES.get(str(p).strip(), str(p).strip()) for p in parts if str(p).strip())
    if len(set(dims)) != len(dims):
        raise LayoutError(f"layout {layout!r} names a dimension twice: {dims}")
    return dims


def pulse_count(spec: DetectorSpec | None,
                source_data: Mapping[str, Any]) -> tuple[int | None, bool]:
    """Number of pulses/cells in a source, from its pulse ID keys; and whether they look file-like.

    Returns ``(n, from_file)``: ``n`` is the length of the first of ``spec.pulse_keys`` present
    (None if none is), ``from_file`` is True when that array is 2-D (files store per-pulse
    IDs as ``(pulses, 1)``; the bridge pipeline sends ``(pulses,)``) or a scalar (EXtra-data's
    streamer sends the one entry of a 1-frame train without its frame axis).
    """
    if spec is None:
        return None, False
    for key in spec.pulse_keys:
        if key not in source_data:
            continue
        ids = source_data[key]
        shape = getattr(ids, "shape", None)
        if shape:
            return int(shape[0]), len(shape) == 2
        if isinstance(ids, int | float) or shape == ():
            return 1, True
    return None, False


def from_file_streamer(source_data: Mapping[str, Any], protocol: str | None) -> bool:
    """Whether a source came from EXtra-data's file streamer (``karabo-bridge-serve-files``).

    The streamer repeats each source's metadata inside its data (``'metadata'``) under protocol
    2.2, where the live bridge sends it in the header only; such data has the file layout.
    """
    return protocol == "2.2" and isinstance(source_data.get("metadata"), Mapping)


def _fits(dims: Dims, shape: tuple[int, ...], spec: DetectorSpec, n_pulses: int | None) -> bool:
    if len(dims) != len(shape):
        return False
    ss, fs = spec.module_shape or (None, None)
    for dim, size in zip(dims, shape, strict=True):
        if dim == "slow_scan" and ss is not None and size != ss:
            return False
        if dim == "fast_scan" and fs is not None and size != fs:
            return False
        if dim in ("pulse", "cell") and n_pulses is not None and size != n_pulses:
            return False
        if dim == "pulse" and spec.train_resolved and n_pulses is None and size != 1:
            return False
        if dim == "data_gain" and not 1 <= size <= 3:
            return False
        if dim == "data_gain" and "pulse" not in dims and (size < 2 or n_pulses != 1):
            return False  # the one frame of a raw AGIPD train, (data, gain), as the IDs say
        if dim == "module" and size < 1:
            return False
    return True


def _rename_pulse(dims: Dims, spec: DetectorSpec) -> Dims:
    other = "cell" if spec.pulse_dim == "pulse" else "pulse"
    return tuple(spec.pulse_dim if d == other else d for d in dims)


def resolve_layout(
    shape: tuple[int, ...],
    spec: DetectorSpec,
    *,
    n_pulses: int | None = None,
    per_module: bool = True,
    prefer_file: bool = False,
    layout: str | Sequence[str] | None = None,
    where: str = "",
) -> Layout | None:
    """Name the axes of an array of ``shape`` from detector ``spec``.

    Parameters
    ----------
    shape
        The received array's shape.
    spec
        The detector family.
    n_pulses
        Number of pulses (cells) in the source, from :func:`pulse_count`; pins the pulse axis.
    per_module
        The source carries one module (its name has a module number): multi-module layouts are
        not considered. Otherwise multi-module layouts are tried first.
    prefer_file
        The message shows it holds file data (per-pulse IDs shaped ``(pulses, 1)``, or the
        metadata EXtra-data's streamer puts in the data, see :func:`from_file_streamer`): when
        several layouts fit (e.g. LPD with 256 pulses), take the file one. Without such
        evidence, a shape that fits layouts with different axes raises :class:`LayoutError`
        asking for ``layout=``: never a silent guess.
    layout
        ``None`` to detect; a layout name (``'online'``, ``'file'``, ``'file-raw'``,
        ``'labelled'``) to pick among the known ones; or explicit dims (``'pulse,ss,fs'``).
    where
        Source and key, for error messages.

    Returns
    -------
    Layout or None
        None when nothing fits and no layout was asked for: the array is not detector data.

    Raises
    ------
    LayoutError
        When ``layout`` is given and the shape does not fit it.

    Examples
    --------
    >>> lpd = DETECTORS['LPD']
    >>> resolve_layout((256, 256, 256), lpd, n_pulses=256, prefer_file=True).name
    'file'
    >>> resolve_layout((256, 256, 256), lpd, n_pulses=256, layout='online').name
    'online'
    >>> resolve_layout((256, 256, 10), lpd, n_pulses=10).dims
    ('fast_scan', 'slow_scan', 'pulse')
    >>> resolve_layout((10, 256, 256), lpd, layout='p,ss,fs').dims
    ('pulse', 'slow_scan', 'fast_scan')
    """
    where_txt = f" for {where}" if where else ""
    if layout is not None and not (isinstance(layout, str) and "," not in layout
                                   and layout.strip() in {lay.name for lay in spec.layouts}):
        dims = _rename_pulse(parse_layout(layout), spec)
        if len(dims) != len(shape):
            raise LayoutError(f"layout {dims} has {len(dims)} axes but the array{where_txt} has "
                              f"shape {shape}")
        if not _fits(dims, shape, spec, n_pulses):
            raise LayoutError(
                f"array{where_txt} of shape {shape} does not fit layout {dims}: a {spec.name} "
                f"module is (slow_scan, fast_scan) = {spec.module_shape or 'any'}"
                + (f" with {n_pulses} {spec.pulse_dim}s" if n_pulses is not None else ""))
        return Layout("custom", dims)

    candidates = list(spec.layouts)
    if layout is not None:
        candidates = [lay for lay in candidates if lay.name == layout.strip()]
    if per_module:
        candidates = [lay for lay in candidates if not lay.combined]
    fitting = [lay for lay in candidates if _fits(lay.dims, shape, spec, n_pulses)]
    if prefer_file and any(lay.name.startswith("file") for lay in fitting):
        fitting = [lay for lay in fitting if lay.name.startswith("file")]
    if not fitting and layout is not None:
        expected = ", ".join(str(lay.dims) for lay in candidates) or "none for this source"
        raise LayoutError(
            f"array{where_txt} of shape {shape} does not fit the {layout!r} layout of "
            f"{spec.name} (module {spec.module_shape}"
            + (f", {n_pulses} {spec.pulse_dim}s" if n_pulses is not None else "")
            + f"); expected one of: {expected}")
    if len({canonical_order(lay.dims) + _axis_names(lay.dims) for lay in fitting}) > 1:
        names = " or ".join(f"{lay.name!r} {lay.dims}" for lay in fitting)
        raise LayoutError(
            f"array{where_txt} of shape {shape} fits several {spec.name} layouts ({names}) and "
            "nothing in the message tells which one it is; pass layout= (e.g. layout='online' "
            "for the calibration pipeline, layout='file' for data from files)")
    if not per_module:
        fitting.sort(key=lambda lay: not lay.combined)  # stable: multi-module first
    return fitting[0] if fitting else None


def _axis_names(dims: Dims) -> tuple[str, ...]:
    return tuple(dims[i] for i in canonical_order(dims))


def canonical_order(dims: Dims) -> tuple[int, ...]:
    """The axis permutation that puts ``dims`` in kb_streams' order.

    ``module``, ``pulse``/``cell``, other named axes (kept in their order), ``data_gain``,
    ``slow_scan``, ``fast_scan``.

    Examples
    --------
    >>> canonical_order(('fast_scan', 'slow_scan', 'pulse'))
    (2, 1, 0)
    """
    return tuple(sorted(range(len(dims)), key=lambda i: (_ORDER.get(dims[i], 2), i)))
