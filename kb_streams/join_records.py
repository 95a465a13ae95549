"""What a train-ID join gives out and counts: :class:`Joined`, :class:`Late`, :class:`JoinStats`.

Plain data, shared by :class:`kb_streams.join.TrainJoiner` (which makes them) and the streamz
node :func:`kb_streams.join_stream.join_trains` (which emits them and shows the counters).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Joined", "JoinStats", "Late"]


@dataclass(frozen=True)
class Joined:
    """One train's parts, once its slot closed.

    Attributes
    ----------
    train_id
        The train.
    parts
        ``{input: item}`` for every input that delivered (``latest`` inputs: their as-of value).
    missing
        Inputs without a part (empty when complete).
    reason
        ``None`` when complete. Else, when only ``latest`` inputs are missing, ``'stale'``
        (none had a value within ``max_age`` trains, or any value at all); when a required
        input is missing, how the slot closed: ``'window'`` (the clock moved ``window`` trains
        past it), ``'timeout'``, ``'restart'`` (train IDs jumped back) or ``'end'``
        (:meth:`TrainJoiner.flush`).
    """

    train_id: int
    parts: dict[Hashable, Any] = field(repr=False)
    missing: tuple[Hashable, ...] = ()
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def present(self) -> tuple[Hashable, ...]:
        return tuple(self.parts)


@dataclass(frozen=True)
class Late:
    """A part not joined: ``reason`` ``'late'`` (its train had closed), ``'duplicate'`` (its
    input had delivered that train already) or ``'bad_train_id'`` (an unconfirmed jump)."""

    train_id: int
    input: Hashable
    reason: str = "late"
    item: Any = field(default=None, repr=False, compare=False)


@dataclass
class JoinStats:
    """Counters of a join (a snapshot).

    Attributes
    ----------
    matched
        Trains closed complete.
    partial
        Trains closed incomplete (``dropped`` says why).
    dropped
        ``{reason: count}``: incomplete trains by reason (see :class:`Joined`), parts with an
        implausible train ID (``'bad_train_id'``) or none (``'no_train_id'``).
    late
        Parts that arrived after their train closed.
    duplicates
        Second parts from one input for one open train.
    open
        Slots open now.
    clock
        The newest plausible train ID seen.
    lag
        ``{input: trains behind the clock}`` of each input's newest train (``None``: not seen).
    """

    matched: int = 0
    partial: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    late: int = 0
    duplicates: int = 0
    open: int = 0
    clock: int | None = None
    lag: dict[Hashable, int | None] = field(default_factory=dict)

    @property
    def matching_ratio(self) -> float:
        """Complete trains over all closed trains (``nan`` before the first)."""
        closed = self.matched + self.partial
        return self.matched / closed if closed else float("nan")
