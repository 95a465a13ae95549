"""The newest item of a plot: what the graph writes (a cheap assignment) and browsers read.

Pull, never push: the graph's sink puts each item into its plot's :class:`Slot` under a lock
and goes on; every browser session reads the slot a few times a second. A slow or absent browser
costs the graph nothing but that assignment.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["Slot", "SlotState"]


@dataclass(frozen=True)
class SlotState:
    """A consistent look at a slot.

    Attributes
    ----------
    version
        How many items were put (0: none yet); a reader redraws when it changes.
    value
        The newest item.
    train_id
        Its train ID, when known.
    updated
        :func:`time.monotonic` when it was put (``None`` before the first).
    rate
        Items per second over the last few seconds.
    history
        ``(wall time, value)`` of the last items, for plots over time (empty unless kept).
    """

    version: int
    value: Any
    train_id: int | None
    updated: float | None
    rate: float
    history: tuple[tuple[float, Any], ...]

    def age(self, now: float | None = None) -> float:
        """Seconds since the newest item was put (``inf`` before the first)."""
        if self.updated is None:
            return float("inf")
        return (time.monotonic() if now is None else now) - self.updated


class Slot:
    """Holds the newest item (and optionally the last ``history`` items) of one plot.

    Parameters
    ----------
    history
        How many past ``(wall time, value)`` items to keep (0: only the newest).
    rate_window
        Seconds over which :attr:`SlotState.rate` counts items.

    Examples
    --------
    >>> slot = Slot(history=2)
    >>> for value in (1.0, 2.0, 3.0):
    ...     slot.put(value, train_id=int(value))
    >>> state = slot.state()
    >>> state.version, state.value, state.train_id, [v for _, v in state.history]
    (3, 3.0, 3, [2.0, 3.0])
    """

    def __init__(self, history: int = 0, *, rate_window: float = 3.0) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._version = 0
        self._train_id: int | None = None
        self._updated: float | None = None
        self._times: deque[float] = deque(maxlen=256)
        self._history: deque[tuple[float, Any]] = deque(maxlen=max(0, int(history)))
        self._rate_window = rate_window

    def put(self, value: Any, train_id: int | None = None) -> None:
        """Make ``value`` the newest item (called by the graph: cheap, never blocks for long)."""
        now = time.monotonic()
        with self._lock:
            self._value = value
            self._version += 1
            self._train_id = train_id
            self._updated = now
            self._times.append(now)
            if self._history.maxlen:
                self._history.append((time.time(), value))

    def clear(self) -> None:
        """Forget the items (after a reset of what feeds the plot); the version goes on."""
        with self._lock:
            self._value = None
            self._version += 1
            self._history.clear()

    def state(self) -> SlotState:
        """The newest item and its train ID, age, rate and history, taken together."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._times if now - t <= self._rate_window]
            history = tuple(self._history)
            value, version, train_id, updated = (self._value, self._version, self._train_id,
                                                 self._updated)
        rate = 0.0
        if len(recent) >= 2:
            rate = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)
        return SlotState(version, value, train_id, updated, rate, history)
