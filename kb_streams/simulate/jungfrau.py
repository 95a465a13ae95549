"""JUNGFRAU: one source per module (numbered from 1), burst mode with ``C`` memory cells.

Sources (``D`` is ``FXE_XAD_JF1M``, ``nn`` the module number ``01``, ``02``, ...):

* raw: ``{D}/DET/JNGFR{nn}:daqOutput``;
* corrected: ``{D}/CORR/JNGFR{nn}:output`` online, ``{D}/CORR/JNGFR{nn}:daqOutput`` in the
  file layout.

Keys:

* ``data.adc``: float32 corrected, uint16 raw; (512, 1024, C) online, (C, 512, 1024) in the
  file layout;
* ``data.gain`` (uint8) and, corrected only, ``data.mask`` (uint32), shaped like ``data.adc``;
  with ``gain=False`` corrected data have neither;
* ``data.memoryCell`` (C,) uint8, ``data.frameNumber`` and ``data.trainId`` (C,) uint64;
* file layout: ``metadata`` repeats the source's metadata, as extra-data's streamer does.

Layouts per protocol.md §5.1/§5.3 and EXtra-foam's JUNGFRAU assembler.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import DetectorSetup, Field, PixelDetector, TrainContext, frozen, render
from .geometry import MODULE_SHAPE, RAW_OFFSET, RING_RADIUS, Roi, find_roi, module_radius
from .names import JUNGFRAU_DOMAIN

__all__ = ["Jungfrau"]

MAX_CELLS = 16
MAX_MODULES = 8


class Jungfrau(PixelDetector):
    """A JUNGFRAU detector of ``n_modules`` modules, ``pulses`` memory cells per train."""

    name = "JUNGFRAU"
    pooled_keys = ("data.adc",)

    def __init__(self, setup: DetectorSetup, *, n_modules: int) -> None:
        super().__init__(setup)
        self.n_modules = n_modules
        self.gain = setup.gain or setup.raw
        raw, layout = setup.raw, setup.layout
        if raw:
            pattern = f"{JUNGFRAU_DOMAIN}/DET/JNGFR{{:02d}}:daqOutput"
        else:
            channel = "output" if layout == "online" else "daqOutput"
            pattern = f"{JUNGFRAU_DOMAIN}/CORR/JNGFR{{:02d}}:{channel}"
        self.module_sources = {number: pattern.format(number)
                               for number in range(1, n_modules + 1)}

    @property
    def sources(self) -> list[str]:
        return list(self.module_sources.values())

    def _image_shape(self) -> tuple[int, ...]:
        ss, fs = MODULE_SHAPE["JUNGFRAU"]
        return (ss, fs, self.pulses) if self.layout == "online" else (self.pulses, ss, fs)

    def _axes(self) -> tuple[str, ...]:
        return ("ss", "fs", "p") if self.layout == "online" else ("p", "ss", "fs")

    def schema(self) -> dict[str, dict[str, Field]]:
        shape, cells = self._image_shape(), (self.pulses,)
        keys: dict[str, Field] = {"data.adc": ("uint16" if self.raw else "float32", shape)}
        if self.gain:
            keys["data.gain"] = ("uint8", shape)
        if self.gain and not self.raw:
            keys["data.mask"] = ("uint32", shape)
        keys.update({"data.memoryCell": ("uint8", cells), "data.frameNumber": ("uint64", cells),
                     "data.trainId": ("uint64", cells)})
        if self.layout == "file":
            keys["metadata"] = ("dict", None)
        return {source: dict(keys) for source in self.sources}

    def rings(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel responses (R1, R2) of the module at ``index`` (module number - 1)."""
        radius = module_radius("JUNGFRAU", index, self.n_modules)
        return self.scene.rings(radius, RING_RADIUS["JUNGFRAU"])

    def roi(self) -> dict[str, Roi]:
        """Regions on ring 1 and ring 2 (``module`` is the index: module number - 1)."""
        rings = [self.rings(i) for i in range(self.n_modules)]
        return {"ring1": find_roi([ring1 for ring1, _ in rings]),
                "ring2": find_roi([ring2 for _, ring2 in rings])}

    def prepare(self) -> None:
        if self._pool:
            return
        dtype = np.uint16 if self.raw else np.float32
        offset = float(RAW_OFFSET["JUNGFRAU"]) if self.raw else None
        n = self.scan.n_steps
        pool = [[np.empty(self._image_shape(), dtype) for _ in range(self.n_modules)]
                for _ in range(n)]
        for index in range(self.n_modules):
            ring1, ring2 = self.rings(index)
            noise = self.rng.standard_normal(self._image_shape(), dtype=np.float32)
            noise *= self.scene.noise
            for k in range(n):
                render(pool[k][index], self._axes(), ring1, ring2, self.scan.amp_ring1[k],
                       self.scan.amp_ring2[k], noise, offset)
                frozen(pool[k][index])
        self._pool = pool
        shared = {"data.memoryCell": np.arange(self.pulses, dtype=np.uint8)}
        if self.gain:
            shared["data.gain"] = np.zeros(self._image_shape(), np.uint8)
        if self.gain and not self.raw:
            shared["data.mask"] = np.zeros(self._image_shape(), np.uint32)
        self._shared = {key: frozen(value) for key, value in shared.items()}

    @property
    def pool_nbytes(self) -> int:
        return sum(array.nbytes for entry in self._pool for array in entry)

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        cells = self.pulses
        first_frame = ctx.offset * cells + 1
        frames = frozen(np.arange(first_frame, first_frame + cells, dtype=np.uint64))
        train_ids = frozen(np.full(cells, ctx.train_id, np.uint64))
        entry = self._pool[ctx.step]
        for number, source in self.module_sources.items():
            if number in ctx.missing:
                continue
            data = {"data.adc": entry[number - 1], **self._shared,
                    "data.frameNumber": frames, "data.trainId": train_ids}
            if self.layout == "file":
                data["metadata"] = {"source": source, "timestamp.tid": ctx.train_id}
            out[source] = data
