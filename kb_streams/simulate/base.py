"""What every simulated detector or device provides, and the per-train context it receives.

A component generates its big arrays once, into a pool (:meth:`Component.prepare`), and per
train only assembles a dict per source from pool entries plus a few small fresh values
(:meth:`Component.emit`). Pool arrays are made read-only: they are sent zero-copy, so nothing
may write to them while a message may still be in flight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .scene import Scan, Scene

__all__ = ["Component", "DetectorSetup", "Field", "PixelDetector", "TrainContext", "field_of",
           "frozen", "render"]

#: Schema entry: ``(dtype, shape)`` for arrays, ``(python type name, None)`` for other values.
Field = tuple[str, tuple[int, ...] | None]


@dataclass(frozen=True)
class TrainContext:
    """Everything a component needs to know about the train being generated.

    Attributes
    ----------
    train_id
        The train ID.
    offset
        Trains since the first train ID (skipped train IDs count).
    step
        Index of the pool entry (delay step) to send.
    delay
        Delay-line read-back (ps): the step's nominal delay plus jitter.
    timestamp_ns
        Train timestamp, nanoseconds since the epoch.
    missing
        Module numbers to leave out of this train.
    """

    train_id: int
    offset: int
    step: int
    delay: float
    timestamp_ns: int
    missing: frozenset[int] = field(default_factory=frozenset)


def frozen(array: np.ndarray) -> np.ndarray:
    """Mark ``array`` read-only (pool and shared arrays must never change in flight)."""
    array.flags.writeable = False
    return array


def field_of(value: Any) -> Field:
    """The schema entry describing ``value``."""
    if isinstance(value, np.ndarray):
        return str(value.dtype), tuple(value.shape)
    return type(value).__name__, None


class Component(ABC):
    """A simulated detector or device: one or more sources.

    Attributes
    ----------
    name
        Short name (``'AGIPD-modules'``, ``'xgm'``, ...).
    """

    name: str = ""
    #: Keys whose arrays come from the pool (one per delay step); the rest are shared or small.
    pooled_keys: tuple[str, ...] = ()

    @property
    @abstractmethod
    def sources(self) -> list[str]:
        """The source names this component sends in a train without faults."""

    @abstractmethod
    def schema(self) -> dict[str, dict[str, Field]]:
        """``{source: {key: (dtype or type name, shape or None)}}`` of what :meth:`emit` sends."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Generate the pool (called once, before the first train)."""

    @abstractmethod
    def emit(self, ctx: TrainContext, out: dict[str, dict[str, Any]]) -> None:
        """Add this component's sources for the train ``ctx`` to ``out``."""

    @property
    def pool_nbytes(self) -> int:
        """Bytes held by the pool (0 before :meth:`prepare`)."""
        return 0

    def train_nbytes(self, keys: tuple[str, ...] | None = None) -> int:
        """Array bytes per train (of ``keys`` only, if given), from the schema."""
        total = 0
        for fields in self.schema().values():
            for key, (dtype, shape) in fields.items():
                if shape is not None and (keys is None or key in keys):
                    total += np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        return total

    def pool_estimate(self, n_steps: int) -> int:
        """Bytes the pool will hold, from the schema (before :meth:`prepare`)."""
        return n_steps * self.train_nbytes(self.pooled_keys) if self.pooled_keys else 0


@dataclass(frozen=True)
class DetectorSetup:
    """What a simulated pixel detector renders its images from.

    Attributes
    ----------
    raw, layout, pulses, gain
        As for :func:`kb_streams.simulate.simulate`.
    scene, scan
        The ground truth and the per-step amplitudes.
    rng
        Random generator for the noise.
    """

    raw: bool
    layout: str
    pulses: int
    scene: Scene
    scan: Scan
    rng: np.random.Generator
    gain: bool = True


class PixelDetector(Component):
    """A pixel detector (JUNGFRAU, AGIPD, LPD): its setup as attributes, an empty pool."""

    def __init__(self, setup: DetectorSetup) -> None:
        self.raw = setup.raw
        self.layout = setup.layout
        self.pulses = setup.pulses
        self.scene = setup.scene
        self.scan = setup.scan
        self.rng = setup.rng
        self.gain = setup.gain
        self._pool: list[Any] = []
        self._shared: dict[str, np.ndarray] = {}


def _orient_pixels(response: np.ndarray, axes: tuple[str, ...]) -> np.ndarray:
    pixel_axes = [a for a in axes if a in ("ss", "fs")]
    view = response if pixel_axes == ["ss", "fs"] else response.T
    if "p" in axes:
        view = np.expand_dims(view, axes.index("p"))
    return view


def _orient_pulses(amp: np.ndarray | float, axes: tuple[str, ...]) -> np.ndarray | float:
    if "p" not in axes:
        return amp
    shape = [1] * len(axes)
    shape[axes.index("p")] = len(amp)  # type: ignore[arg-type]
    return np.asarray(amp).reshape(shape)


def render(
    dest: np.ndarray,
    axes: tuple[str, ...],
    ring1: np.ndarray,
    ring2: np.ndarray,
    amp1: np.ndarray | float,
    amp2: np.ndarray | float,
    noise: np.ndarray,
    offset: float | None = None,
) -> None:
    """Write ``amp1 * ring1 + amp2 * ring2 + noise (+ offset)`` into ``dest``.

    ``dest`` is a view whose axes are named by ``axes`` (``'p'`` pulse, ``'ss'``, ``'fs'``);
    ``ring1``/``ring2`` are ``(ss, fs)`` pixel responses, ``amp1``/``amp2`` per-pulse factors
    (or scalars without a ``'p'`` axis), ``noise`` has ``dest``'s shape. With ``offset`` the
    values are shifted, rounded and clipped to ``dest``'s integer range (raw data).
    """
    in_place = dest.dtype == np.float32 and offset is None
    value = dest if in_place else np.empty(dest.shape, np.float32)
    np.multiply(_orient_pixels(ring1, axes), _orient_pulses(amp1, axes), out=value)
    value += _orient_pixels(ring2, axes) * _orient_pulses(amp2, axes)
    value += noise
    if in_place:
        return
    if offset is not None:
        value += offset
        np.rint(value, out=value)
        info = np.iinfo(dest.dtype)
        np.clip(value, info.min, info.max, out=value)
    dest[...] = value
