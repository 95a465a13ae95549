"""The extra devices: XGM, pump-probe delay line and a sample motor (small per-train values).

============  =====================================  ==============================================
device        source (defaults, see ``names.py``)    keys
============  =====================================  ==============================================
``xgm``       ``SA1_XTD2_XGM/XGM/DOOCS``             ``pulseEnergy.photonFlux`` (µJ, train mean),
                                                     ``pulseEnergy.numberOfBunchesActual``,
                                                     ``pulseEnergy.wavelengthUsed`` (nm),
                                                     ``beamPosition.ixPos``/``.iyPos`` (mm)
              ``SA1_XTD2_XGM/XGM/DOOCS:output``      ``data.intensityTD`` float32 (1000,): pulse
                                                     energies (µJ) in the first P entries, 1.0
                                                     after them (below the ``> 1`` threshold
                                                     facility scripts use to find pulses)
``delay``     ``{instrument}_AUXT_LIC/DOOCS/PPODL``  ``actualPosition`` (ps, with read-back
                                                     jitter), ``targetPosition`` (ps), ``state``
``motor``     ``{instrument}_SMS_USR/MOTOR/UM01``    ``actualPosition``, ``targetPosition`` (mm;
                                                     a slow sine sweep, no effect on the
                                                     images), ``state``
============  =====================================  ==============================================

Slow (control) keys use plain property names online, as EXtra-foam reads them from the bridge;
with ``layout='file'`` they get extra-data's ``.value``/``.timestamp`` suffixes (``state`` is
left out, as extra-data's streamer drops string arrays), and every source repeats its
metadata under ``'metadata'``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Component, Field, TrainContext, frozen
from .scene import Scan

__all__ = ["DelayLine", "Motor", "Xgm", "XGM_SAMPLES"]

#: Length of the XGM's per-pulse vectors.
XGM_SAMPLES = 1000
_WAVELENGTH_NM = 0.1333  # 9.3 keV
MOTOR_CENTRE, MOTOR_AMPLITUDE, MOTOR_PERIOD = 5.0, 0.5, 600  # mm, mm, trains


def _control(values: dict[str, Any], layout: str, ctx: TrainContext, source: str
             ) -> dict[str, Any]:
    if layout != "file":
        return values
    data: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str):
            continue
        data[f"{key}.value"] = value
        data[f"{key}.timestamp"] = ctx.timestamp_ns
    data["metadata"] = {"source": source, "timestamp.tid": ctx.train_id}
    return data


def _control_schema(keys: dict[str, str], layout: str) -> dict[str, Field]:
    if layout != "file":
        return {key: (kind, None) for key, kind in keys.items()}
    out: dict[str, Field] = {}
    for key, kind in keys.items():
        if kind != "str":
            out[f"{key}.value"] = (kind, None)
            out[f"{key}.timestamp"] = ("int", None)
    out["metadata"] = ("dict", None)
    return out


class Xgm(Component):
    """The XGM: per-pulse energies of the train's delay step, and slow train averages."""

    name = "xgm"
    pooled_keys = ("data.intensityTD",)

    def __init__(self, source: str, *, layout: str, pulses: int, scan: Scan,
                 rng: np.random.Generator, noise: float = 0.0) -> None:
        self.control_source = source
        self.output_source = f"{source}:output"
        self.layout = layout
        self.pulses = pulses
        self.scan = scan
        self.rng = rng
        self.noise = noise  # relative rms of the per-pulse reading, drawn per train
        self._intensity: list[np.ndarray] = []

    @property
    def sources(self) -> list[str]:
        return [self.control_source, self.output_source]

    _SLOW = {"pulseEnergy.photonFlux": "float", "pulseEnergy.numberOfBunchesActual": "float",
             "pulseEnergy.wavelengthUsed": "float", "beamPosition.ixPos": "float",
             "beamPosition.iyPos": "float"}

    def schema(self) -> dict[str, dict[str, Field]]:
        output: dict[str, Field] = {"data.intensityTD": ("float32", (XGM_SAMPLES,))}
        if self.layout == "file":
            output["metadata"] = ("dict", None)
        return {self.control_source: _control_schema(self._SLOW, self.layout),
                self.output_source: output}

    def prepare(self) -> None:
        if self._intensity:
            return
        for energies in self.scan.energies:
            vector = np.ones(XGM_SAMPLES, np.float32)
            vector[: self.pulses] = energies
            self._intensity.append(frozen(vector))

    @property
    def pool_nbytes(self) -> int:
        return sum(vector.nbytes for vector in self._intensity)

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        ix, iy = self.rng.normal(0.0, 0.01, 2)
        slow = {
            "pulseEnergy.photonFlux": float(self.scan.energies[ctx.step].mean()),
            "pulseEnergy.numberOfBunchesActual": float(self.pulses),
            "pulseEnergy.wavelengthUsed": _WAVELENGTH_NM,
            "beamPosition.ixPos": float(ix),
            "beamPosition.iyPos": float(iy),
        }
        out[self.control_source] = _control(slow, self.layout, ctx, self.control_source)
        output: dict[str, Any] = {"data.intensityTD": self._reading(ctx.step)}
        if self.layout == "file":
            output["metadata"] = {"source": self.output_source, "timestamp.tid": ctx.train_id}
        out[self.output_source] = output


    def _reading(self, step: int) -> np.ndarray:
        """The pulse energies as the XGM reads them this train (a new array if noisy)."""
        energies = self._intensity[step]
        if not self.noise:
            return energies
        reading = energies.copy()
        reading[: self.pulses] *= 1.0 + self.noise * self.rng.standard_normal(self.pulses)
        return reading


class DelayLine(Component):
    """The pump-probe optical delay line, positioned at the train's delay step (ps)."""

    name = "delay"
    _KEYS = {"actualPosition": "float", "targetPosition": "float", "state": "str"}

    def __init__(self, source: str, *, layout: str, scan: Scan) -> None:
        self.source = source
        self.layout = layout
        self.scan = scan

    @property
    def sources(self) -> list[str]:
        return [self.source]

    def schema(self) -> dict[str, dict[str, Field]]:
        return {self.source: _control_schema(self._KEYS, self.layout)}

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        values = {"actualPosition": float(ctx.delay),
                  "targetPosition": float(self.scan.delays[ctx.step]), "state": "ON"}
        out[self.source] = _control(values, self.layout, ctx, self.source)


class Motor(Component):
    """A sample motor sweeping slowly (a distractor: it does not change the images)."""

    name = "motor"
    _KEYS = {"actualPosition": "float", "targetPosition": "float", "state": "str"}

    def __init__(self, source: str, *, layout: str) -> None:
        self.source = source
        self.layout = layout

    @property
    def sources(self) -> list[str]:
        return [self.source]

    def schema(self) -> dict[str, dict[str, Field]]:
        return {self.source: _control_schema(self._KEYS, self.layout)}

    @staticmethod
    def position(train_offset: int) -> float:
        """Motor position (mm) ``train_offset`` trains after the first train."""
        phase = 2 * math.pi * train_offset / MOTOR_PERIOD
        return MOTOR_CENTRE + MOTOR_AMPLITUDE * math.sin(phase)

    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        position = self.position(ctx.offset)
        values = {"actualPosition": position, "targetPosition": round(position, 3),
                  "state": "MOVING"}
        out[self.source] = _control(values, self.layout, ctx, self.source)
