"""AGIPD 1M and LPD 1M: 16 per-module ``:xtdf`` sources, or one source with all modules.

What is sent (``P`` pulses; ``ss, fs`` = (512, 128) for AGIPD, (256, 256) for LPD; ``M`` = 16):

=====================  ==============================  =================================
source                 ``layout='online'``              ``layout='file'``
=====================  ==============================  =================================
per module             ``{D}/DET/{m}CH0:xtdf``         ``{D}/DET/{m}CH0:xtdf``
all modules            ``{D}/CAL/APPEND_CORRECTED``     ``{D}/DET/APPEND``
                       (``..._RAW`` when raw)
``image.data``         (fs, ss, P) per module,          corrected (P, ss, fs), raw
                       (M, fs, ss, P) combined;         (P, G, ss, fs) per module;
                       float32 corrected, uint16 raw    combined (P, M, ss, fs) /
                                                        (P, G, M, ss, fs); G = 2 for AGIPD
                                                        (data, gain), 1 for LPD
``image.gain``         like ``image.data``: uint8       corrected only: uint8, like
                       corrected, uint16 raw AGIPD      ``image.data`` (+ ``image.mask``
                       (raw LPD has none)               uint32); with ``gain=False``
                       corrected data leave it out      corrected data leave both out
``image.cellId`` ...   (P,) uint16 / pulseId, trainId   (P,) corrected, (P, 1) raw;
                       uint64                           + ``image.length``/``.status`` (P, 1)
=====================  ==============================  =================================

Per-module sources also carry ``header.*``/``trailer.*``/``detector.trainId`` scalars; combined
online sources carry ``sources`` and ``modulesPresent`` (lists of 16) as the calibration
pipeline's appender does; corrected online ones carry ``image.passport``. File-layout sources
repeat their metadata inside the data under ``'metadata'``, as extra-data's streamer does.

Where the online pipeline sends ``(modules, fs, ss, pulse)`` (protocol.md §3.2, §5.3) the
reference simulator and EXtra-foam agree; the file layouts are extra-data's (§4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import DetectorSetup, Field, PixelDetector, TrainContext, frozen, render
from .geometry import MODULE_SHAPE, RAW_OFFSET, RING_RADIUS, Roi, find_roi, module_radius
from .names import XTDF_DOMAIN

__all__ = ["XtdfDetector"]

N_MODULES = 16
MAX_PULSES = {"AGIPD": 352, "LPD": 512}
_RAW_GAIN_LEVEL = 4500  # raw AGIPD analog gain value of the high-gain stage, ADU


class XtdfDetector(PixelDetector):
    """AGIPD or LPD, as 16 module sources (``combined=False``) or one stacked source.

    Parameters
    ----------
    detector
        ``'AGIPD'`` or ``'LPD'``.
    setup
        Pulses, layout, raw or corrected, gain, scene, scan and noise (:class:`DetectorSetup`).
    combined
        One source with all modules instead of one source per module.
    filled_modules
        Module numbers filled with NaN (0 when raw) in a combined source, for the
        ``missing_module`` fault.
    """

    pooled_keys = ("image.data",)

    def __init__(self, detector: str, setup: DetectorSetup, *, combined: bool,
                 filled_modules: frozenset[int] = frozenset()) -> None:
        super().__init__(setup)
        self.detector = detector
        self.combined = combined
        self.filled_modules = filled_modules
        self.name = detector if combined else f"{detector}-modules"
        self.domain = XTDF_DOMAIN[detector]
        self.module_shape = MODULE_SHAPE[detector]
        self.gain_axis = 2 if detector == "AGIPD" else 1
        self.module_sources = [f"{self.domain}/DET/{m}CH0:xtdf" for m in range(N_MODULES)]
        if self.layout == "file":
            self.combined_source = f"{self.domain}/DET/APPEND"
        else:
            self.combined_source = (f"{self.domain}/CAL/APPEND_"
                                    + ("RAW" if self.raw else "CORRECTED"))

    # --- layout -------------------------------------------------------------------------
    @property
    def sources(self) -> list[str]:
        return [self.combined_source] if self.combined else list(self.module_sources)

    @property
    def data_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.raw else np.float32)

    def _image_shape(self) -> tuple[int, ...]:
        """Shape of ``image.data`` in one source."""
        ss, fs = self.module_shape
        p, m = self.pulses, N_MODULES
        if self.layout == "online":
            return (m, fs, ss, p) if self.combined else (fs, ss, p)
        if self.raw:
            return (p, self.gain_axis, m, ss, fs) if self.combined else (p, self.gain_axis, ss, fs)
        return (p, m, ss, fs) if self.combined else (p, ss, fs)

    def _module_view(self, array: np.ndarray, module: int) -> tuple[np.ndarray, tuple[str, ...]]:
        """The data part of one module in a pool array, and its axes."""
        if self.layout == "online":
            return (array[module] if self.combined else array), ("fs", "ss", "p")
        view = array
        if self.raw:
            view = view[:, 0]
        if self.combined:
            view = view[:, module]
        return view, ("p", "ss", "fs")

    def _gain_view(self, array: np.ndarray, module: int) -> np.ndarray | None:
        """The gain part of a raw AGIPD file-layout pool array (None elsewhere)."""
        if not (self.raw and self.layout == "file" and self.gain_axis == 2):
            return None
        view = array[:, 1]
        return view[:, module] if self.combined else view

    def _gain_key(self) -> tuple[np.dtype, tuple[int, ...]] | None:
        """dtype and shape of a separate ``image.gain`` array, if this variant has one."""
        if self.raw and (self.layout == "file" or self.detector == "LPD"):
            return None
        if not (self.raw or self.gain):
            return None
        return np.dtype(np.uint16 if self.raw else np.uint8), self._image_shape()

    def _id_shape(self) -> tuple[int, ...]:
        return (self.pulses, 1) if (self.layout == "file" and self.raw) else (self.pulses,)

    def schema(self) -> dict[str, dict[str, Field]]:
        keys: dict[str, Field] = {"image.data": (str(self.data_dtype), self._image_shape())}
        gain = self._gain_key()
        if gain is not None:
            keys["image.gain"] = (str(gain[0]), gain[1])
        if self.layout == "file" and not self.raw and self.gain:
            keys["image.mask"] = ("uint32", self._image_shape())
        ids = self._id_shape()
        keys.update({"image.cellId": ("uint16", ids), "image.pulseId": ("uint64", ids),
                     "image.trainId": ("uint64", ids)})
        if self.layout == "file":
            keys.update({"image.length": ("uint32", (self.pulses, 1)),
                         "image.status": ("uint16", (self.pulses, 1))})
        if not self.combined or self.layout == "file":
            keys.update({f"header.{k}": ("int", None) for k in _HEADER_INTS})
            keys.update({"trailer.status": ("int", None), "trailer.trainId": ("int", None),
                         "detector.trainId": ("int", None)})
        if self.layout == "file":
            keys.update({"header.magicNumberBegin": ("int8", (8,)),
                         "trailer.magicNumberEnd": ("int8", (8,)),
                         "metadata": ("dict", None)})
        if self.combined and self.layout == "online":
            keys.update({"sources": ("list", None), "modulesPresent": ("list", None)})
        if not self.raw and self.layout == "online":
            keys["image.passport"] = ("list", None)
        return {source: dict(keys) for source in self.sources}

    # --- pool ---------------------------------------------------------------------------
    def rings(self, module: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel responses (R1, R2) of module ``module``, (ss, fs)."""
        radius = module_radius(self.detector, module)
        return self.scene.rings(radius, RING_RADIUS[self.detector])

    def roi(self) -> dict[str, Roi]:
        """Regions on ring 1 (pump-sensitive) and ring 2 (reference)."""
        rings = [self.rings(m) for m in range(N_MODULES)]
        return {"ring1": find_roi([ring1 for ring1, _ in rings]),
                "ring2": find_roi([ring2 for _, ring2 in rings])}

    def prepare(self) -> None:
        if self._pool:
            return
        shape = self._image_shape()
        n = self.scan.n_steps
        if self.combined:
            pool = [np.empty(shape, self.data_dtype) for _ in range(n)]
        else:
            pool = [[np.empty(shape, self.data_dtype) for _ in range(N_MODULES)]
                    for _ in range(n)]
        offset = float(RAW_OFFSET[self.detector]) if self.raw else None
        fill = 0 if self.raw else np.nan
        for module in range(N_MODULES):
            ring1, ring2 = self.rings(module)
            noise = None
            for k in range(n):
                array = pool[k] if self.combined else pool[k][module]
                dest, axes = self._module_view(array, module)
                gain = self._gain_view(array, module)
                if self.combined and module in self.filled_modules:
                    dest[...] = fill
                    if gain is not None:
                        gain[...] = 0
                    continue
                if noise is None:
                    noise = self.rng.standard_normal(dest.shape, dtype=np.float32)
                    noise *= self.scene.noise
                render(dest, axes, ring1, ring2, self.scan.amp_ring1[k],
                       self.scan.amp_ring2[k], noise, offset)
                if gain is not None:
                    gain[...] = _RAW_GAIN_LEVEL
        for entry in pool:
            for array in (entry if isinstance(entry, list) else [entry]):
                frozen(array)
        self._pool = pool
        self._make_shared()

    def _make_shared(self) -> None:
        p = self.pulses
        ids = self._id_shape()
        shared = {
            "image.cellId": np.arange(p, dtype=np.uint16).reshape(ids),
            "image.pulseId": np.arange(p, dtype=np.uint64).reshape(ids),
        }
        gain = self._gain_key()
        if gain is not None:
            dtype, shape = gain
            if self.raw:
                shared["image.gain"] = np.full(shape, _RAW_GAIN_LEVEL, dtype)
            else:
                shared["image.gain"] = np.zeros(shape, dtype)  # high gain everywhere
        if self.layout == "file":
            shared["image.length"] = np.full((p, 1), int(np.prod(self.module_shape)), np.uint32)
            shared["image.status"] = np.zeros((p, 1), np.uint16)
            shared["header.magicNumberBegin"] = np.frombuffer(b"XTDF\0\0\0\0", np.int8).copy()
            shared["trailer.magicNumberEnd"] = np.frombuffer(b"XTDF\0\0\0\0", np.int8).copy()
            if not self.raw and self.gain:
                shared["image.mask"] = np.zeros(self._image_shape(), np.uint32)
        self._shared = {key: frozen(value) for key, value in shared.items()}

    @property
    def pool_nbytes(self) -> int:
        total = 0
        for entry in self._pool:
            for array in (entry if isinstance(entry, list) else [entry]):
                total += array.nbytes
        return total

    # --- per train ----------------------------------------------------------------------
    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        tid = ctx.train_id
        entry = self._pool[ctx.step]
        train_ids = frozen(np.full(self._id_shape(), tid, np.uint64))
        common = dict(self._shared)
        common["image.trainId"] = train_ids
        if self.combined:
            source = self.combined_source
            data = {"image.data": entry, **common}
            if self.layout == "online":
                data["sources"] = list(self.module_sources)
                data["modulesPresent"] = [m not in self.filled_modules
                                          for m in range(N_MODULES)]
            else:
                data.update(self._header(tid, 0))
            if not self.raw and self.layout == "online":
                data["image.passport"] = self._passport()
            if self.layout == "file":
                data["metadata"] = {"source": source, "timestamp.tid": tid}
            out[source] = data
            return
        for module, source in enumerate(self.module_sources):
            if module in ctx.missing:
                continue
            data = {"image.data": entry[module], **common, **self._header(tid, module)}
            if not self.raw and self.layout == "online":
                data["image.passport"] = self._passport()
            if self.layout == "file":
                data["metadata"] = {"source": source, "timestamp.tid": tid}
            out[source] = data

    def _header(self, train_id: int, module: int) -> dict[str, int]:
        return {
            "header.pulseCount": self.pulses,
            "header.trainId": train_id,
            "header.dataId": 0,
            "header.linkId": module,
            "header.majorTrainFormatVersion": 2,
            "header.minorTrainFormatVersion": 1,
            "trailer.status": 0,
            "trailer.trainId": train_id,
            "detector.trainId": train_id,
        }

    def _passport(self) -> list[str]:
        return [f"{self.domain}/CAL/{step}_Q1M1"
                for step in ("THRESHOLDING", "OFFSET_CORR", "RELGAIN_CORR")]


_HEADER_INTS = ("pulseCount", "trainId", "dataId", "linkId", "majorTrainFormatVersion",
                "minorTrainFormatVersion")
