"""What a node's counters do not say by themselves: a recent rate and the age of the data.

:class:`RateWindow` turns a growing counter into items per second over the last seconds;
:class:`DataAge` keeps the age of the data a node passed on (last, mean, largest).
"""

from __future__ import annotations

import math
import time
from collections import deque

__all__ = ["RateWindow", "DataAge"]


class RateWindow:
    """Items per second over the last ``window`` seconds, from a growing counter.

    Examples
    --------
    >>> rate = RateWindow(window=3.0)
    >>> rate.update(0, now=0.0), rate.update(10, now=1.0), rate.update(40, now=5.0)
    (0.0, 10.0, 7.5)
    """

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.points: deque[tuple[float, int]] = deque()

    def update(self, count: int, now: float | None = None) -> float:
        """Record ``count`` at ``now`` (default: :func:`time.monotonic`); the recent rate."""
        now = time.monotonic() if now is None else now
        self.points.append((now, count))
        while len(self.points) > 2 and now - self.points[0][0] > self.window:
            self.points.popleft()
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


class DataAge:
    """Age of the data passed on: the last, mean and largest (``nan`` before any).

    Examples
    --------
    >>> age = DataAge()
    >>> for seconds in (0.2, None, 0.4):   # trains without a timestamp have no age
    ...     age.observe(seconds)
    >>> age.last, round(age.mean, 3), age.max
    (0.4, 0.3, 0.4)
    """

    def __init__(self) -> None:
        self.last = self.mean = self.max = math.nan
        self._sum = 0.0
        self._count = 0

    def observe(self, age: float | None) -> None:
        """Count one item's age in seconds (``None``/``nan``: it has none)."""
        if age is None or age != age:
            return
        self._sum += age
        self._count += 1
        self.last = age
        self.mean = self._sum / self._count
        if not self.max >= age:  # (nan before the first)
            self.max = age
