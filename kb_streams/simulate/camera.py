"""A Basler-style beam camera: a 2-D Gaussian beam spot, one uint16 frame per train.

Online (the bridge flattens Karabo's ImageData, protocol.md §1.6), source
``SPB_IRU_SIDEMIC_CAM:daqOutput``:

* ``data.image.data`` uint16 ``(y, x)`` = (1024, 1280);
* ``data.image.bitsPerPixels`` (16), ``data.image.encoding`` (0, GRAY),
  ``data.image.dimensionScales`` (``''``), ``data.image.rotation`` (0), ``data.image.flipX``,
  ``data.image.flipY`` (False);
* ``data.image.dimensions`` uint64 ``[y, x]``, ``data.image.dimensionTypes`` int32 ``[0, 0]``,
  ``data.image.ROIOffsets`` uint64 ``[0, 0]``, ``data.image.binning`` uint64 ``[1, 1]``.

File layout (extra-data's mock Basler camera): ``data.image.pixels`` plus
``data.image.bitsPerPixel``, ``.dims``, ``.dimTypes``, ``.encoding``, ``.roiOffsets``,
``.binning``, ``.flipX``, ``.flipY`` and ``metadata``. Cameras have no calibrated variant:
``raw`` is ignored.

Ground truth: the spot's peak above the offset of 100 counts is
``SPOT_PEAK * mean_p(E_p) / E0`` (the pulse-averaged XGM energy of the train's delay step,
see :mod:`kb_streams.simulate.scene`); its centre is the frame centre plus a per-step offset of
``SPOT_JITTER`` px rms; rms widths ``SPOT_SIGMA`` (y, x); Gaussian noise of 3 counts rms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Component, Field, TrainContext, frozen
from .geometry import RAW_OFFSET
from .names import CAMERA_DEVICE
from .scene import Scan, Scene

__all__ = ["Camera"]

SHAPE = (1024, 1280)
SPOT_PEAK = 2000.0
SPOT_SIGMA = (30.0, 45.0)
SPOT_JITTER = 5.0
NOISE = 3.0


class Camera(Component):
    """A beam camera (train-resolved)."""

    name = "CAMERA"
    pooled_keys = ("data.image.data", "data.image.pixels")

    def __init__(self, *, layout: str, scene: Scene, scan: Scan,
                 rng: np.random.Generator) -> None:
        self.layout = layout
        self.scene = scene
        self.scan = scan
        self.rng = rng
        self.source = f"{CAMERA_DEVICE}:daqOutput"
        self.centres: list[tuple[float, float]] = []
        self._pool: list[np.ndarray] = []
        self._shared: dict[str, Any] = {}

    @property
    def sources(self) -> list[str]:
        return [self.source]

    def _metadata_keys(self) -> dict[str, Any]:
        y, x = SHAPE
        if self.layout == "file":
            return {
                "data.image.bitsPerPixel": 16,
                "data.image.dims": np.array([y, x], np.uint64),
                "data.image.dimTypes": np.zeros(2, np.int32),
                "data.image.encoding": 0,
                "data.image.roiOffsets": np.zeros(2, np.uint64),
                "data.image.binning": np.ones(2, np.uint64),
                "data.image.flipX": 0,
                "data.image.flipY": 0,
            }
        return {
            "data.image.bitsPerPixels": 16,
            "data.image.dimensions": np.array([y, x], np.uint64),
            "data.image.dimensionScales": "",
            "data.image.dimensionTypes": np.zeros(2, np.int32),
            "data.image.encoding": 0,
            "data.image.ROIOffsets": np.zeros(2, np.uint64),
            "data.image.binning": np.ones(2, np.uint64),
            "data.image.flipX": False,
            "data.image.flipY": False,
            "data.image.rotation": 0,
        }

    @property
    def key(self) -> str:
        return "data.image.pixels" if self.layout == "file" else "data.image.data"

    def schema(self) -> dict[str, dict[str, Field]]:
        keys: dict[str, Field] = {self.key: ("uint16", SHAPE)}
        for key, value in self._metadata_keys().items():
            keys[key] = ((str(value.dtype), value.shape) if isinstance(value, np.ndarray)
                         else (type(value).__name__, None))
        if self.layout == "file":
            keys["metadata"] = ("dict", None)
        return {self.source: keys}

    def prepare(self) -> None:
        if self._pool:
            return
        y = np.arange(SHAPE[0], dtype=np.float32)[:, None]
        x = np.arange(SHAPE[1], dtype=np.float32)[None, :]
        noise = self.rng.standard_normal(SHAPE, dtype=np.float32) * NOISE
        offset = RAW_OFFSET["CAMERA"]
        pool, centres = [], []
        for k in range(self.scan.n_steps):
            cy, cx = (np.array(SHAPE) - 1) / 2 + SPOT_JITTER * self.rng.standard_normal(2)
            peak = SPOT_PEAK * float(self.scan.energies[k].mean()) / self.scene.pulse_energy
            spot = (np.exp(-0.5 * ((y - cy) / SPOT_SIGMA[0]) ** 2)
                    * np.exp(-0.5 * ((x - cx) / SPOT_SIGMA[1]) ** 2))
            value = peak * spot + noise + offset
            np.rint(value, out=value)
            pool.append(frozen(np.clip(value, 0, 65535).astype(np.uint16)))
            centres.append((float(cy), float(cx)))
        self._pool, self.centres = pool, centres
        self._shared = {key: frozen(value) if isinstance(value, np.ndarray) else value
                        for key, value in self._metadata_keys().items()}

    @property
    def pool_nbytes(self) -> int:
        return sum(array.nbytes for array in self._pool)

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        data: dict[str, Any] = {self.key: self._pool[ctx.step], **self._shared}
        if self.layout == "file":
            data["metadata"] = {"source": self.source, "timestamp.tid": ctx.train_id}
        out[self.source] = data
