"""Rough detector geometries: each pixel's distance from the beam, per module.

Not extra_geom-accurate, but laid out like the real detectors so that rings look like rings
once the modules are placed:

* **AGIPD 1M**: 4 quadrants around the beam, each 4 modules of (ss=512, fs=128) stacked along
  fs with 4-pixel gaps, 20 pixels clear of the beam; module ``m`` sits in quadrant ``m // 4``
  (top-left, bottom-left, bottom-right, top-right).
* **LPD 1M**: 4 quadrants of 2 x 2 modules of (256, 256), same gaps.
* **JUNGFRAU**: modules of (512, 1024) stacked along ss, 24-pixel gaps, centred on the beam.
* **ePix100**: one (704, 768) module centred on the beam.

Pixels are taken as equal in size on every detector (the rings are in pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MODULE_SHAPE", "RAW_OFFSET", "RING_RADIUS", "Roi", "find_roi", "module_radius",
           "roi_of"]

#: (slow_scan, fast_scan) pixels per module.
MODULE_SHAPE = {"AGIPD": (512, 128), "LPD": (256, 256), "JUNGFRAU": (512, 1024),
                "EPIX": (704, 768)}
#: Radii (pixels) of the pump-sensitive ring 1 and the reference ring 2.
RING_RADIUS = {"AGIPD": (250.0, 420.0), "LPD": (250.0, 420.0), "JUNGFRAU": (250.0, 420.0),
               "EPIX": (200.0, 330.0)}
#: ADC offset added to raw data (ADU); raw = offset + calibrated value, rounded.
RAW_OFFSET = {"AGIPD": 5000, "LPD": 1000, "JUNGFRAU": 1500, "EPIX": 1000, "CAMERA": 100}

_QUADRANT_SIGNS = ((-1, 1), (-1, -1), (1, -1), (1, 1))
_CLEAR = 20
_GAP = 4


def module_radius(detector: str, module_index: int = 0, n_modules: int = 1) -> np.ndarray:
    """Distance from the beam (pixels, float32) of each pixel of a module, shape (ss, fs).

    ``module_index`` counts from 0 (JUNGFRAU module number 1 is index 0).

    Examples
    --------
    >>> module_radius('AGIPD', 0).shape
    (512, 128)
    >>> round(float(module_radius('JUNGFRAU', 0, 1).min()), 1)
    0.7
    """
    ss_n, fs_n = MODULE_SHAPE[detector]
    ss, fs = np.meshgrid(np.arange(ss_n, dtype=np.float64), np.arange(fs_n, dtype=np.float64),
                         indexing="ij")
    if detector == "AGIPD":
        sx, sy = _QUADRANT_SIGNS[module_index // 4]
        x = sx * (_CLEAR + ss)
        y = sy * (_CLEAR + (module_index % 4) * (fs_n + _GAP) + fs)
    elif detector == "LPD":
        sx, sy = _QUADRANT_SIGNS[module_index // 4]
        row, col = divmod(module_index % 4, 2)
        x = sx * (_CLEAR + col * (fs_n + _GAP) + fs)
        y = sy * (_CLEAR + row * (ss_n + _GAP) + ss)
    elif detector == "JUNGFRAU":
        x = fs - (fs_n - 1) / 2
        y = (module_index - (n_modules - 1) / 2) * (ss_n + 24) + ss - (ss_n - 1) / 2
    elif detector == "EPIX":
        x = fs - (fs_n - 1) / 2
        y = ss - (ss_n - 1) / 2
    else:
        raise ValueError(f"no geometry for {detector!r}")
    return np.hypot(x, y).astype(np.float32)


@dataclass(frozen=True)
class Roi:
    """A box on one module: ``module`` (index from 0), ``slow_scan`` and ``fast_scan`` slices."""

    module: int
    slow_scan: slice
    fast_scan: slice

    def as_dict(self) -> dict[str, object]:
        return {"module": self.module, "slow_scan": (self.slow_scan.start, self.slow_scan.stop),
                "fast_scan": (self.fast_scan.start, self.fast_scan.stop)}


def roi_of(response: np.ndarray, module: int = 0, size: int = 32) -> Roi:
    """A ``size`` x ``size`` box on the ring: centred on a pixel at the ring's peak response.

    The centre is the middle one (in row-major order) of the pixels within 10 % of the peak;
    the box is shifted to stay inside the module.
    """
    ss, fs = np.nonzero(response >= 0.9 * response.max())
    centre = len(ss) // 2
    bounds = []
    for at, n in ((ss[centre], response.shape[0]), (fs[centre], response.shape[1])):
        start = min(max(int(at) - size // 2, 0), max(n - size, 0))
        bounds.append(slice(start, min(start + size, n)))
    return Roi(module, bounds[0], bounds[1])


def find_roi(responses: list[np.ndarray]) -> Roi:
    """:func:`roi_of` on the first module whose response reaches 95 % of the largest one."""
    peak = max(float(r.max()) for r in responses)
    for module, response in enumerate(responses):
        if response.max() >= 0.95 * peak:
            return roi_of(response, module)
    raise ValueError("no response")  # unreachable: one module holds the peak
