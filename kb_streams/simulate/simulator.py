"""The train iterator: train IDs, timestamps and faults around the components' data."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Component, Field, TrainContext
from .faults import CORRUPTIONS, Faults, corrupt, shuffle
from .geometry import Roi
from .scene import Scan, Scene

__all__ = ["Simulator", "TrainTruth", "make_meta"]

log = logging.getLogger(__name__)

TRAIN_PERIOD_NS = 100_000_000  # 10 Hz


def _groups(schema: dict[str, dict[str, Field]]
            ) -> list[tuple[list[str], dict[str, Field]]]:
    """Sources with identical keys grouped together, in order."""
    groups: list[tuple[list[str], dict[str, Field]]] = []
    for source, keys in schema.items():
        for sources, other in groups:
            if other == keys:
                sources.append(source)
                break
        else:
            groups.append(([source], keys))
    return groups


def make_meta(source: str, train_id: int, timestamp_ns: int) -> dict[str, Any]:
    """Bridge metadata of one source: ``timestamp.frac`` is 18 digits of attoseconds.

    Examples
    --------
    >>> make_meta('A', 7, 1_700_000_000_123_456_789)['timestamp.frac']
    '123456789000000000'
    """
    sec, ns = divmod(timestamp_ns, 1_000_000_000)
    return {
        "source": source,
        "timestamp": timestamp_ns / 1e9,
        "timestamp.sec": str(sec),
        "timestamp.frac": f"{ns:09d}000000000",
        "timestamp.tid": train_id,
    }


@dataclass(frozen=True)
class TrainTruth:
    """What the simulator put into one train (the ground truth a client should recover).

    Attributes
    ----------
    train_id, step
        Train ID, and the delay step (pool entry) it shows.
    delay
        Nominal delay of the step (ps); the delay line reports it plus jitter.
    signal
        Pump-probe response ``S(delay)`` (0..1).
    ratio
        Expected pumped/unpumped ratio of ring-1 intensity per pulse energy:
        ``1 + contrast * signal``.
    pulse_energy
        Pulse energies (µJ), ``(pulses,)``; the XGM sends them.
    pumped
        Pumped pulses (bool), ``(pulses,)``.
    skipped
        The train ID is left out by the ``skip_every`` fault.
    """

    train_id: int
    step: int
    delay: float
    signal: float
    ratio: float
    pulse_energy: np.ndarray
    pumped: np.ndarray
    skipped: bool


class Simulator(Iterator[Any]):
    """Infinite iterator of simulated trains; build it with :func:`kb_streams.simulate.simulate`.

    Each item is ``(data, meta)`` (dicts keyed by source), or, for the ``shuffle_every`` and
    ``corrupt_every`` faults, a ``list`` of already-encoded message frames. The pool of
    pre-generated images is built on the first train (or by :meth:`prepare`).
    """

    def __init__(self, detector: str, components: list[Component], *, scene: Scene, scan: Scan,
                 faults: Faults, first_train_id: int, seed: int, pulses: int, raw: bool,
                 layout: str, protocol_version: str, timestamps: str,
                 roi: dict[str, Roi]) -> None:
        self.detector = detector
        self.components = components
        self.scene = scene
        self.scan = scan
        self.faults = faults
        self.first_train_id = first_train_id
        self.pulses = pulses
        self.raw = raw
        self.layout = layout
        self.protocol_version = protocol_version
        self.timestamps = timestamps
        self.roi = roi
        self._jitter_rng = np.random.default_rng([seed, 1])
        self._fault_rng = np.random.default_rng([seed, 3])
        self._offset = 0
        self._corruptions = 0
        self._start_ns = time.time_ns()
        self._prepared = False

    # --- description --------------------------------------------------------------------
    @property
    def sources(self) -> list[str]:
        """Source names in a train without faults, sorted."""
        return sorted(source for c in self.components for source in c.sources)

    @property
    def pool_size(self) -> int:
        return self.scan.n_steps

    def schema(self) -> dict[str, dict[str, Field]]:
        """``{source: {key: (dtype or type name, shape or None)}}`` of a train without faults."""
        out: dict[str, dict[str, Field]] = {}
        for component in self.components:
            out.update(component.schema())
        return dict(sorted(out.items()))

    def train_nbytes(self) -> int:
        """Array payload bytes per train."""
        return sum(component.train_nbytes() for component in self.components)

    @property
    def pool_nbytes(self) -> int:
        """Bytes held by the pool (0 until it is built)."""
        return sum(component.pool_nbytes for component in self.components)

    def pool_estimate(self) -> int:
        """Bytes the pool holds once built (known before it is built)."""
        return sum(component.pool_estimate(self.pool_size) for component in self.components)

    def describe(self) -> str:
        """A text table of what this simulator sends, with its ground truth and faults."""
        mib = 1 << 20
        lines = [
            f"{self.detector}: {'raw' if self.raw else 'corrected'}, {self.layout} layout, "
            f"{self.pulses} pulse(s) per train, {self.train_nbytes() / mib:.1f} MiB per train; "
            f"pool of {self.pool_size} delay steps, {self.pool_estimate() / mib:.0f} MiB",
        ]
        for component in self.components:
            for sources, keys in _groups(component.schema()):
                name = sources[0] if len(sources) == 1 else (
                    f"{sources[0]} ... {sources[-1]} ({len(sources)} sources)")
                lines.append(f"  {name}")
                for key, (kind, shape) in keys.items():
                    lines.append(f"    {key:<44} {kind}{'' if shape is None else ' ' + str(shape)}")
        scene = self.scene
        lines.append(f"ground truth: delay steps {np.round(self.scan.delays, 3).tolist()} ps, "
                     f"{scene.trains_per_step} trains each, back and forth;")
        if "spot" in self.roi:
            lines.append("  beam spot peak = 2000 counts * mean pulse energy / "
                         f"{scene.pulse_energy:g} uJ, above an offset of 100 counts")
        else:
            lines.append(f"  ring-1 intensity / pulse energy, pumped over unpumped pulses = "
                         f"1 + {scene.contrast} * S(delay),")
            lines.append(f"  S = 1 - exp(-(delay - {scene.time_zero}) / {scene.rise_time}) "
                         f"from time zero on; ring 2 does not respond")
        for name, roi in self.roi.items():
            lines.append(f"  ROI {name}: module {roi.module}, slow_scan "
                         f"{roi.slow_scan.start}:{roi.slow_scan.stop}, fast_scan "
                         f"{roi.fast_scan.start}:{roi.fast_scan.stop}")
        if self.faults.active:
            lines.append(f"faults: {self.faults}")
        return "\n".join(lines)

    def truth(self, train_id: int) -> TrainTruth:
        """The ground truth of train ``train_id``."""
        offset = int(train_id) - self.first_train_id
        if offset < 0:
            raise ValueError(f"train {train_id} is before the first train {self.first_train_id}")
        step = self.scene.step(offset, self.scan.n_steps)
        signal = float(self.scan.signal[step])
        return TrainTruth(
            train_id=int(train_id), step=step, delay=float(self.scan.delays[step]),
            signal=signal, ratio=1.0 + self.scene.contrast * signal,
            pulse_energy=self.scan.energies[step], pumped=self.scan.pumped,
            skipped=self.faults.skipped(offset))

    # --- iteration ----------------------------------------------------------------------
    def prepare(self) -> Simulator:
        """Build the pool now (otherwise it is built on the first train)."""
        if not self._prepared:
            started = time.perf_counter()
            for component in self.components:
                component.prepare()
            self._prepared = True
            log.info("simulator pool for %s: %.0f MiB in %.2f s", self.detector,
                     self.pool_nbytes / (1 << 20), time.perf_counter() - started)
        return self

    def __iter__(self) -> Simulator:
        return self

    def __next__(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]] | list[Any]:
        if not self._prepared:
            self.prepare()
        offset = self._offset
        while self.faults.skipped(offset):
            offset += 1
        self._offset = offset + 1
        train_id = self.first_train_id + offset
        if self.timestamps == "wall":
            timestamp_ns = time.time_ns()
        else:
            timestamp_ns = self._start_ns + offset * TRAIN_PERIOD_NS
        step = self.scene.step(offset, self.scan.n_steps)
        delay = float(self.scan.delays[step])
        if self.scene.delay_jitter:
            delay += self.scene.delay_jitter * float(self._jitter_rng.standard_normal())
        ctx = TrainContext(train_id=train_id, offset=offset, step=step, delay=delay,
                           timestamp_ns=timestamp_ns, missing=self.faults.missing(offset))
        data: dict[str, dict[str, Any]] = {}
        for component in self.components:
            component.emit(ctx, data)
        meta = {source: make_meta(source, train_id, timestamp_ns) for source in data}
        wire = self.faults.wire_fault(offset)
        if wire is None:
            return data, meta
        from .. import protocol  # the codec, only needed for wire-level faults

        frames = protocol.encode(data, meta, protocol_version=self.protocol_version)
        if wire == "shuffle":
            return shuffle(list(frames), self._fault_rng)
        kind = CORRUPTIONS[self._corruptions % len(CORRUPTIONS)]
        self._corruptions += 1
        log.debug("train %d: sending a corrupted message (%s)", train_id, kind)
        return corrupt(list(frames), kind)
