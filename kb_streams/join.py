"""Joining streams by train ID: the slot logic as plain code (no streamz, no sockets, no clock).

:class:`TrainJoiner` is fed parts (``add(input, train_id, item, now)``) and the time
(``tick(now)``) and returns what became final: :class:`Joined` trains, in increasing train ID,
and :class:`Late` records (both defined in :mod:`kb_streams.join_records`). The streamz node
:func:`kb_streams.join_stream.join_trains` and the multi-bridge source are thin layers on top; a
scale-out merge of per-shard results can use it directly.

The rules:

* One open slot per train ID of the *required* inputs. Slot ``T`` closes when every required
  input has delivered ``T`` (and every ``latest`` input is settled, below); or when the newest
  train ID seen (the *clock*) is ``window`` trains past ``T``; or ``timeout`` seconds after it
  opened. A later train completing never closes ``T`` early: it waits behind ``T``, since
  output is in increasing train ID.
* ``latest`` inputs (slow data) join *as of* ``T``: their newest value with a train ID ``<= T``,
  at most ``max_age`` trains old. ``T`` waits until each has been seen with a train ID ``>= T``
  (so a delayed slow bridge still gives the value that belongs to ``T``) or until ``T`` closes
  by window or timeout; then the newest value ``<= T`` counts if fresh enough. A ``latest``
  input never seen, or only with values too old, makes ``T`` incomplete: no silent default.
* With ``ordered=True`` (the default) each input is taken to deliver its own trains in order,
  as a bridge does: then any interleaving of the inputs within ``window`` gives the same
  output. With ``ordered=False`` trains are held ``window`` trains so that any order within
  the window does.
* A part for a train already closed is *late*: it never reopens its slot (counted, reported).
  A second part from one input for one open train is a *duplicate*: counted, the first kept.
* The clock does not jump on one implausible train ID (recorded data has them): a train ID more
  than ``max_jump`` trains away from the clock is held back until a second one near it confirms
  the jump (a restart or a long gap), else it is dropped as ``'bad_train_id'``. A confirmed jump
  backwards closes every open slot (reason ``'restart'``).
* Memory: at most ``window`` open slots (train IDs within ``window`` of the clock), plus the
  ``latest`` values needed for them.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from .join_records import Joined, JoinStats, Late

__all__ = ["Joined", "JoinStats", "Late", "TrainJoiner", "join_all"]


class _Slot:
    __slots__ = ("parts", "opened")

    def __init__(self, opened: float) -> None:
        self.parts: dict[Hashable, Any] = {}
        self.opened = opened


class TrainJoiner:
    """Join parts from several inputs by train ID (see the module doc for the rules).

    Parameters
    ----------
    inputs
        Names of the required inputs: a train is complete when each delivered it.
    latest
        Names of the as-of inputs (slow data).
    window
        Trains the clock may run ahead of an open slot before the slot closes.
    timeout
        Seconds (of the ``now`` given to :meth:`add`/:meth:`tick`) a slot stays open at most;
        ``None``: no limit (a stalled input then holds output until the clock moves on).
    max_age
        Trains a ``latest`` value may be older than the train it joins; ``None``: any age.
    max_jump
        Train IDs further than this from the clock need a second one to confirm the jump.
    ordered
        Each input delivers its own trains in increasing train ID (a bridge does): a train
        closes as soon as it is complete. ``False``: inputs may also reorder their own trains;
        every train is held until the clock is ``window`` past it (or ``timeout``), so that
        any arrival order within the window gives the same output, at ``window`` trains of
        latency.

    Examples
    --------
    >>> joiner = TrainJoiner(["det", "xgm"], latest=["motor"], window=3)
    >>> joiner.add("motor", 99, 0.5, now=0.0)
    []
    >>> joiner.add("det", 100, "image", now=0.0)
    []
    >>> joiner.add("motor", 100, 0.6, now=0.0)
    []
    >>> out = joiner.add("xgm", 100, 1e-3, now=0.0)
    >>> out[0].train_id, out[0].parts["motor"], out[0].complete
    (100, 0.6, True)
    >>> joiner.add("det", 101, "image", now=0.1)
    []
    >>> joiner.add("det", 104, "image", now=0.4)     # 101 closes: the clock is 3 past it
    [Joined(train_id=101, missing=('xgm',), reason='window')]
    >>> joiner.add("xgm", 101, 1e-3, now=0.5)
    [Late(train_id=101, input='xgm', reason='late')]
    """

    def __init__(self, inputs: Sequence[Hashable], *, latest: Sequence[Hashable] = (),
                 window: int = 10, timeout: float | None = None, max_age: int | None = None,
                 max_jump: int = 1000, ordered: bool = True) -> None:
        self.inputs = tuple(inputs)
        self.latest = tuple(latest)
        if not self.inputs:
            raise ValueError("a join needs at least one required input")
        names = self.inputs + self.latest
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be distinct: {names}")
        if int(window) < 1:
            raise ValueError(f"window must be at least 1 train, not {window}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be None or seconds > 0, not {timeout!r}")
        if max_age is not None and int(max_age) < 0:
            raise ValueError(f"max_age must be None or >= 0, not {max_age}")
        self.window = int(window)
        self.timeout = timeout
        self.max_age = None if max_age is None else int(max_age)
        self.max_jump = max(int(max_jump), self.window)
        self.ordered = ordered
        self._slots: dict[int, _Slot] = {}
        self._order: list[int] = []          # open train IDs, sorted
        self._closed: int | None = None      # highest train ID closed (output so far)
        self._clock: int | None = None
        self._candidate: tuple[Hashable, int, Any] | None = None
        self._history: dict[Hashable, list[tuple[int, Any]]] = {n: [] for n in self.latest}
        self._newest: dict[Hashable, int | None] = dict.fromkeys(names)
        self._stats = JoinStats()

    # -- public -----------------------------------------------------------------------------
    @property
    def stats(self) -> JoinStats:
        """A snapshot of the counters (:class:`JoinStats`)."""
        s = self._stats
        clock = self._clock
        return JoinStats(s.matched, s.partial, dict(s.dropped), s.late, s.duplicates,
                         len(self._slots), clock,
                         {n: None if t is None or clock is None else clock - t
                          for n, t in self._newest.items()})

    def add(self, name: Hashable, train_id: int | None, item: Any, now: float
            ) -> list[Joined | Late]:
        """Take one part; return the trains (and late records) that became final."""
        if name not in self._newest:
            raise KeyError(f"unknown input {name!r}; inputs are {self.inputs + self.latest}")
        if train_id is None:
            self._drop("no_train_id")
            return []
        train_id = int(train_id)
        out: list[Joined | Late] = []
        if self._clock is not None and abs(train_id - self._clock) > self.max_jump:
            held = self._candidate
            if held is None or abs(train_id - held[1]) > self.max_jump:
                self._candidate = (name, train_id, item)
                return [] if held is None else [self._bad(held)]
            self._candidate = None
            out += self._jump(held[1], now)
            out += self._take(*held, now)
        elif self._candidate is not None:
            out.append(self._bad(self._candidate))
            self._candidate = None
        out += self._take(name, train_id, item, now)
        return out

    def tick(self, now: float) -> list[Joined]:
        """Close the slots whose ``timeout`` has passed by ``now``."""
        return self._close_ready(now) if self._slots else []

    def flush(self, now: float = 0.0) -> list[Joined]:
        """Close every open slot (complete or not, reason ``'end'``), in train ID order."""
        return self._close_ready(now, upto=self._order[-1] if self._order else None,
                                 reason="end")

    # -- the rules --------------------------------------------------------------------------
    def _take(self, name: Hashable, tid: int, item: Any, now: float) -> list[Joined | Late]:
        newest = self._newest[name]
        self._newest[name] = tid if newest is None else max(newest, tid)
        self._clock = tid if self._clock is None else max(self._clock, tid)
        rejected: list[Joined | Late] = []
        if name in self._history:
            if not self._add_latest(name, tid, item):
                rejected.append(Late(tid, name, "duplicate", item))
        elif self._closed is not None and tid <= self._closed:
            self._stats.late += 1
            rejected.append(Late(tid, name, "late", item))
        else:
            slot = self._slots.get(tid)
            if slot is None:
                slot = self._slots[tid] = _Slot(now)
                bisect.insort(self._order, tid)
            if name in slot.parts:
                rejected.append(Late(tid, name, "duplicate", item))
            else:
                slot.parts[name] = item
        self._stats.duplicates += sum(r.reason == "duplicate" for r in rejected)
        return rejected + self._close_ready(now)

    def _bad(self, part: tuple[Hashable, int, Any]) -> Late:
        self._drop("bad_train_id")
        return Late(part[1], part[0], "bad_train_id", part[2])

    def _add_latest(self, name: Hashable, tid: int, item: Any) -> bool:
        history = self._history[name]
        keys = [t for t, _ in history]
        at = bisect.bisect_left(keys, tid)
        if at < len(keys) and keys[at] == tid:
            return False
        history.insert(at, (tid, item))
        self._prune_latest(name)
        return True

    def _prune_latest(self, name: Hashable) -> None:
        """Keep the newest value at or below the oldest train that may still open a slot."""
        if self._clock is None:
            return
        floor = self._clock - self.window  # an older train closes as soon as it opens
        if self._closed is not None:
            floor = max(floor, self._closed + 1)
        if self._order:
            floor = min(floor, self._order[0])
        history = self._history[name]
        keys = [t for t, _ in history]
        keep_from = max(bisect.bisect_right(keys, floor) - 1, 0)
        if keep_from:
            del history[:keep_from]

    def _jump(self, tid: int, now: float) -> list[Joined]:
        """A confirmed jump of the clock: forwards closes by window; backwards is a restart."""
        out: list[Joined] = []
        if self._clock is not None and tid < self._clock:
            if self._order:
                out = self._close_ready(now, upto=self._order[-1], reason="restart")
            self._closed = None
            self._clock = None
            for name in self._newest:
                self._newest[name] = None
            for history in self._history.values():
                history.clear()
        return out

    def _close_ready(self, now: float, upto: int | None = None, reason: str | None = None
                     ) -> list[Joined]:
        """Close slots from the oldest while one may close; ``upto``: force up to there."""
        timed_out = None
        if self.timeout is not None:
            old = [t for t in self._order if now - self._slots[t].opened >= self.timeout]
            timed_out = old[-1] if old else None
        out: list[Joined] = []
        while self._order:
            tid = self._order[0]
            parts = self._slots[tid].parts
            latest, unsettled, missing_latest = self._as_of(tid)
            required_missing = [n for n in self.inputs if n not in parts]
            if upto is not None and tid <= upto:
                why = reason
            elif self._clock - tid >= self.window:
                why = "window"
            elif timed_out is not None and tid <= timed_out:
                why = "timeout"
            elif self.ordered and not required_missing and not unsettled:
                why = "stale"  # settled: what is missing now stays missing
            else:
                break
            del self._slots[tid]
            self._order.pop(0)
            self._closed = tid if self._closed is None else max(self._closed, tid)
            missing = tuple(required_missing) + tuple(missing_latest)
            out.append(self._closed_slot(tid, {**parts, **latest}, missing, why))
        for name in self._history:
            self._prune_latest(name)
        return out

    def _as_of(self, tid: int) -> tuple[dict, list, list]:
        """``latest`` values for train ``tid``: found, not yet settled, missing (too old/unseen)."""
        found: dict[Hashable, Any] = {}
        unsettled: list[Hashable] = []
        missing: list[Hashable] = []
        for name, history in self._history.items():
            newest = self._newest[name]
            if newest is None or newest < tid:
                unsettled.append(name)
            at = bisect.bisect_right([t for t, _ in history], tid) - 1
            if at >= 0 and (self.max_age is None or tid - history[at][0] <= self.max_age):
                found[name] = history[at][1]
            else:
                missing.append(name)
        return found, unsettled, missing

    def _closed_slot(self, tid: int, parts: dict, missing: tuple, why: str | None) -> Joined:
        if not missing:
            self._stats.matched += 1
            return Joined(tid, parts)
        self._stats.partial += 1
        if all(name in self._history for name in missing):
            why = "stale"  # whatever closed it, the as-of inputs had nothing fresh enough
        self._drop(why)
        return Joined(tid, parts, missing, why)

    def _drop(self, reason: str) -> None:
        self._stats.dropped[reason] = self._stats.dropped.get(reason, 0) + 1


def join_all(joiner: TrainJoiner, parts: Iterable[tuple[Hashable, int, Any]], now: float = 0.0
             ) -> list[Joined | Late]:
    """Feed ``(input, train_id, item)`` parts in order, then flush: everything that came out.

    Examples
    --------
    >>> out = join_all(TrainJoiner(["a", "b"]), [("a", 1, "x"), ("b", 2, "y"), ("b", 1, "z")])
    >>> [(j.train_id, j.complete) for j in out]
    [(1, True), (2, False)]
    """
    out: list[Joined | Late] = []
    for name, tid, item in parts:
        out += joiner.add(name, tid, item, now)
    return out + joiner.flush(now)
