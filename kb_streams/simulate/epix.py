"""ePix100: one train-resolved (704, 768) frame per train (pulse-averaged ring pattern).

==================  ==================================  =====================================
layout / data       source                              key, dtype, shape
==================  ==================================  =====================================
online, raw         ``{D}/DET/RECEIVER:daqOutput``      ``data.image.data`` uint16 (1, 704, 768)
online, corrected   ``{D}/CORR/RECEIVER:output``        ``data.image`` float32 (704, 768, 1)
file, raw           ``{D}/DET/RECEIVER:daqOutput``      ``data.image.pixels`` uint16 (704, 768)
file, corrected     ``{D}/CORR/RECEIVER:daqOutput``     ``data.image.pixels`` float32 (704, 768)
==================  ==================================  =====================================

``D`` is ``MID_EXP_EPIX-1``. Online shapes follow EXtra-foam's ePix100 assembler (raw
``(1, y, x)``, calibrated ``(y, x, 1)``, protocol.md §1.6); the 4 calibration rows of the raw
sensor readout are left out, as extra_geom's ``Epix100Geometry`` expects. Each source also
sends ``data.trainId`` and ``data.frameNumber`` (ints). The frame shows the pulse average of
the ring amplitudes (see :mod:`kb_streams.simulate.scene`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Component, Field, TrainContext, frozen, render
from .geometry import MODULE_SHAPE, RAW_OFFSET, RING_RADIUS, Roi, module_radius, roi_of
from .names import EPIX_DOMAIN
from .scene import Scan, Scene

__all__ = ["Epix100"]


class Epix100(Component):
    """An ePix100 camera-like detector (train-resolved)."""

    name = "EPIX"
    pooled_keys = ("data.image.data", "data.image", "data.image.pixels")

    def __init__(self, *, raw: bool, layout: str, scene: Scene, scan: Scan,
                 rng: np.random.Generator) -> None:
        self.raw = raw
        self.layout = layout
        self.scene = scene
        self.scan = scan
        self.rng = rng
        part = "DET" if raw else "CORR"
        channel = "output" if (layout == "online" and not raw) else "daqOutput"
        self.source = f"{EPIX_DOMAIN}/{part}/RECEIVER:{channel}"
        if layout == "file":
            self.key = "data.image.pixels"
        else:
            self.key = "data.image.data" if raw else "data.image"
        self._pool: list[np.ndarray] = []

    @property
    def sources(self) -> list[str]:
        return [self.source]

    def _shape(self) -> tuple[int, ...]:
        ss, fs = MODULE_SHAPE["EPIX"]
        if self.layout == "file":
            return (ss, fs)
        return (1, ss, fs) if self.raw else (ss, fs, 1)

    def schema(self) -> dict[str, dict[str, Field]]:
        keys: dict[str, Field] = {self.key: ("uint16" if self.raw else "float32", self._shape()),
                                  "data.trainId": ("int", None),
                                  "data.frameNumber": ("int", None)}
        if self.layout == "file":
            keys["metadata"] = ("dict", None)
        return {self.source: keys}

    def rings(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scene.rings(module_radius("EPIX"), RING_RADIUS["EPIX"])

    def roi(self) -> dict[str, Roi]:
        """Regions on ring 1 and ring 2 of the (single) module."""
        ring1, ring2 = self.rings()
        return {"ring1": roi_of(ring1, 0), "ring2": roi_of(ring2, 0)}

    def prepare(self) -> None:
        if self._pool:
            return
        ring1, ring2 = self.rings()
        offset = float(RAW_OFFSET["EPIX"]) if self.raw else None
        noise = self.rng.standard_normal(MODULE_SHAPE["EPIX"], dtype=np.float32) * self.scene.noise
        pool = []
        for k in range(self.scan.n_steps):
            array = np.empty(self._shape(), np.uint16 if self.raw else np.float32)
            frame = array.reshape(MODULE_SHAPE["EPIX"])  # drop the length-1 axis: a view
            render(frame, ("ss", "fs"), ring1, ring2, float(self.scan.amp_ring1[k].mean()),
                   float(self.scan.amp_ring2[k].mean()), noise, offset)
            pool.append(frozen(array))
        self._pool = pool

    @property
    def pool_nbytes(self) -> int:
        return sum(array.nbytes for array in self._pool)

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        data: dict[str, Any] = {self.key: self._pool[ctx.step], "data.trainId": ctx.train_id,
                                "data.frameNumber": ctx.offset + 1}
        if self.layout == "file":
            data["metadata"] = {"source": self.source, "timestamp.tid": ctx.train_id}
        out[self.source] = data
