"""The re-order buffer of a worker-side source, as plain logic (no Dask, no event loop).

Results of trains reduced on the workers come back out of order. :class:`ReorderBuffer` holds
them until no receiver can still deliver an earlier train (or, sharded, until every shard's part
is in), for at most ``wait`` seconds; :class:`ReceiveOrder` is what the graph knows of the trains
one receiver may still deliver. Times are :func:`time.monotonic` seconds, given by the caller.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Incomplete", "LostTrains", "Pending", "Ready", "ReceiveOrder", "ReorderBuffer"]


@dataclass(eq=False)
class ReceiveOrder:
    """What the graph knows of the trains one receiver may still deliver.

    A receiver hands its trains to tasks in train ID order and numbers them (``seq``, per receiver
    instance: ``epoch``); their results may come back out of order. It cannot deliver a train
    before ``tid`` any more once

    * every train it handed out up to one at or after ``tid - 1`` has come back (``floor``), or
    * it was seen with nothing handed out still to come back and nothing waiting (idle, or not
      running at all) at a moment after ``tid``'s result reached the graph (``clear``). What it
      receives after that moment left the bridge after ``tid`` did, so it is later, unless a
      train was still on the wire to it then.
    """

    epoch: str | None = None
    next_seq: int = 0  # every train numbered below came back
    ahead: dict[int, int | None] = field(default_factory=dict)  # seq: train ID, came back early
    taken: int = 0  # trains it is known to have handed out
    lost: int = 0  # failed tasks, each of which may have taken a train that never comes back
    floor: int | None = None  # every train still to come from it is later than this
    clear: float = -math.inf  # nothing still to come precedes a result that reached us by then
    seen_empty: tuple[float, int] | None = None  # (when, taken): clear once those came back
    retired: set[str] = field(default_factory=set)

    def passes(self, tid: int, first_seen: float) -> bool:
        """Whether this receiver can no longer deliver a train before ``tid``."""
        return (self.floor is not None and self.floor >= tid - 1) or self.clear >= first_seen

    def returned(self, epoch: str | None, seq: int | None, tid: int | None) -> None:
        """A task's result for the ``seq``-th train (``tid``: None if receiving failed)."""
        if seq is None or not self._current(epoch) or seq < self.next_seq:
            return
        self.ahead[seq] = tid
        self.taken = max(self.taken, seq + 1)
        self._advance()

    def failed(self) -> None:
        """A task failed without a result: it may have taken a train, which is lost."""
        self.lost += 1
        self._advance()

    def empty(self, epoch: str | None, taken: int, when: float) -> None:
        """At ``when`` the receiver had handed out ``taken`` trains and had none waiting."""
        if not self._current(epoch):
            return
        self.taken = max(self.taken, taken)
        if self.seen_empty is None or when > self.seen_empty[0]:
            self.seen_empty = (when, self.taken)
        self._advance()

    def absent(self, when: float) -> None:
        """At ``when`` the receiver did not run (not started yet, or gone)."""
        self.empty(self.epoch, self.taken, when)

    def restart(self, when: float) -> None:
        """Its worker is gone: what it had handed out is lost, a new receiver starts afresh."""
        self._advance(give_up=True)
        self.clear = max(self.clear, when)
        self._current(None)

    def _current(self, epoch: str | None) -> bool:
        """Whether ``epoch`` is (now) the receiver instance followed; a new one replaces it."""
        if epoch == self.epoch:
            return True
        if epoch in self.retired:
            return False
        if self.epoch is not None:
            self.retired.add(self.epoch)
        self.epoch, self.next_seq, self.ahead, self.taken = epoch, 0, {}, 0
        self.lost, self.seen_empty = 0, None
        return True

    def _advance(self, give_up: bool = False) -> None:
        end = max(self.taken, max(self.ahead, default=-1) + 1)
        while self.next_seq < end:
            if self.next_seq in self.ahead:
                tid = self.ahead.pop(self.next_seq)
                if tid is not None:
                    self.floor = tid if self.floor is None else max(self.floor, tid)
            elif self.lost or give_up:  # taken by a task that failed: it never comes back
                self.lost = max(self.lost - 1, 0)
            else:
                break
            self.next_seq += 1
        if self.seen_empty is not None and self.next_seq >= self.seen_empty[1]:
            self.clear = max(self.clear, self.seen_empty[0])
            self.seen_empty = None


class _Receiver(Protocol):
    """What the buffer reads of a receiver: its name, its order, whether it runs somewhere."""

    name: str
    order: ReceiveOrder
    worker: str | None


@dataclass(eq=False)
class Pending:
    """A train's result (or, sharded, its parts by shard name) waiting to be emitted."""

    first_seen: float
    parts: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


@dataclass(eq=False)
class Ready:
    """A train's complete result, to emit now; ``skipped``: train IDs passed over before it."""

    train_id: int
    parts: dict[str, Any]
    skipped: range


@dataclass(eq=False)
class Incomplete:
    """A sharded train dropped without the parts of ``missing`` shards."""

    train_id: int
    missing: list[str]


class ReorderBuffer:
    """Results waiting for earlier trains, emitted in train ID order.

    Parameters
    ----------
    receivers
        Objects with ``name``, ``order`` (:class:`ReceiveOrder`) and ``worker`` (``None`` while a
        receiver runs nowhere: it delivers nothing then).
    sharded
        Each receiver delivers one part of every train (keyed by its name); a train is complete
        with every part. Otherwise each train comes whole from one receiver (key ``''``).
    wait
        Seconds a result may wait for earlier trains (sharded: for its other parts).
    max_buffered
        Most results held; beyond that the oldest goes at once.

    Examples
    --------
    Two receivers; ``r1`` has handed out one train, not yet back, so train 11 waits for it:

    >>> from types import SimpleNamespace as Receiver
    >>> r0, r1 = Receiver(name="r0", order=ReceiveOrder(), worker="w0"), \\
    ...     Receiver(name="r1", order=ReceiveOrder(), worker="w1")
    >>> r1.order.empty("e1", 1, when=0.0)
    >>> buffer = ReorderBuffer([r0, r1], wait=2.0)
    >>> r0.order.returned("e0", 0, 11); buffer.add(11, "", "result 11", now=0.5)
    True
    >>> buffer.pop(now=0.6) is None
    True
    >>> r1.order.returned("e1", 0, 10); buffer.add(10, "", "result 10", now=0.7)
    True
    >>> [buffer.pop(now=0.8).train_id, buffer.pop(now=0.8).train_id, buffer.pop(now=0.8)]
    [10, 11, None]
    >>> buffer.add(9, "", "result 9", now=0.9)   # after a later train: late
    False
    """

    def __init__(self, receivers: Sequence[_Receiver] = (), *, sharded: bool = False,
                 wait: float = 2.0, max_buffered: int = 64) -> None:
        self.receivers = list(receivers)
        self.sharded = sharded
        self.wait = wait
        self.max_buffered = max_buffered
        self.pending: dict[int, Pending] = {}
        self.last_emitted: int | None = None

    def __len__(self) -> int:
        return len(self.pending)

    def reset(self, receivers: Sequence[_Receiver]) -> None:
        """Start afresh with these receivers."""
        self.receivers = list(receivers)
        self.pending.clear()
        self.last_emitted = None

    def add(self, train_id: int, part: str, value: Any, now: float) -> bool:
        """Hold ``value`` (a shard's ``part``); ``False`` if a later train was emitted (late)."""
        if self.last_emitted is not None and train_id <= self.last_emitted:
            return False
        pending = self.pending.setdefault(train_id, Pending(now))
        pending.parts[part] = value
        return True

    def fail(self, train_id: int) -> None:
        """A part of ``train_id`` failed (reported elsewhere): the train is dropped."""
        pending = self.pending.get(train_id)
        if pending is not None:
            pending.failed = True

    def pop(self, now: float, flush: bool = False) -> Ready | Incomplete | None:
        """The next result to emit or incomplete train to drop, or None if all must wait.

        ``flush``: emit everything held (the source stops).
        """
        needed = len(self.receivers) if self.sharded else 1
        while self.pending:
            tid = min(self.pending)
            pending = self.pending[tid]
            complete = len(pending.parts) == needed
            overdue = (flush or now - pending.first_seen >= self.wait
                       or len(self.pending) > self.max_buffered)
            if pending.failed or (not complete and (overdue or self._hopeless(tid, pending))):
                del self.pending[tid]
                if pending.failed:
                    continue
                return Incomplete(tid, sorted({r.name for r in self.receivers}
                                              - set(pending.parts)))
            if not complete or not (overdue or self._ready(tid, pending)):
                return None
            del self.pending[tid]
            first = tid if self.last_emitted is None else self.last_emitted + 1
            self.last_emitted = tid
            return Ready(tid, pending.parts, range(first, tid))
        return None

    def blockers(self, tid: int) -> list[_Receiver]:
        """The receivers that may still deliver a train before ``tid``."""
        first_seen = self.pending[tid].first_seen
        return [r for r in self.receivers
                if r.worker is not None and not r.order.passes(tid, first_seen)]

    def next_deadline(self, now: float, probe_after: float) -> float:
        """When to look again: the oldest result's ``wait`` ends, or the next probe is due."""
        if not self.pending:
            return now + 1.0
        first_seen = min(p.first_seen for p in self.pending.values())
        probe_at = self.pending[min(self.pending)].first_seen + probe_after
        return min(first_seen + self.wait, probe_at if probe_at > now else math.inf)

    def _ready(self, tid: int, pending: Pending) -> bool:
        """Whether the complete result of ``tid`` can go: no train before it can still come."""
        if not self.sharded:
            return not self.blockers(tid)
        # a shard's part of ``tid`` is in: it can deliver no earlier train once it has returned
        # every train it handed out up to ``tid``
        return all(r.order.floor is not None and r.order.floor >= tid for r in self.receivers)

    def _hopeless(self, tid: int, pending: Pending) -> bool:
        """Sharded: a missing part can no longer come (its shard has delivered a later train)."""
        return any(r.name not in pending.parts and r.order.floor is not None
                   and r.order.floor > tid for r in self.receivers)


class LostTrains:
    """Which trains passed over went with a worker that left.

    A worker that left took the trains its receiver held; they show as train IDs passed over
    (see :attr:`Ready.skipped`) among the results emitted just before or after it was seen gone:
    within ``horizon`` results (as many as all receivers can have on their way). Train IDs
    passed over that already have an error record are not counted again.

    Examples
    --------
    >>> lost = LostTrains(horizon=4)
    >>> list(lost.passed_over(range(10, 12), emitted=5))    # no worker left: a bridge's gap
    []
    >>> lost.reported(13)                                    # 13 failed, with its own record
    >>> lost.worker_left("tcp://w1", "r1", emitted=6)
    >>> [tid for tid, _ in lost.passed_over(range(12, 14), emitted=7)]
    [10, 11, 12]
    >>> list(lost.passed_over(range(20, 21), emitted=20))   # long after: not this worker's
    []
    """

    def __init__(self, horizon: int = 8, most: int = 256) -> None:
        self.horizon = horizon
        self._losses: list[tuple[int, str, str]] = []  # (emitted, worker, receiver)
        self._unexplained: deque[tuple[int, int]] = deque(maxlen=most)  # (emitted, train ID)
        self._reported: set[int] = set()

    def reported(self, train_id: int) -> None:
        """``train_id`` has its own error record."""
        self._reported.add(train_id)

    def worker_left(self, worker: str, receiver: str, emitted: int) -> None:
        """``worker`` (running ``receiver``) left when ``emitted`` results had been emitted."""
        self._losses.append((emitted, worker, receiver))

    def passed_over(self, skipped: range, emitted: int
                    ) -> Iterator[tuple[int, tuple[str, str]]]:
        """``(train ID, (worker, receiver))`` of the trains lost with a worker, as far as known
        after ``skipped`` train IDs were passed over with ``emitted`` results emitted."""
        reported, self._reported = self._reported, {t for t in self._reported
                                                    if t > skipped.stop}
        self._losses = [loss for loss in self._losses if emitted - loss[0] <= self.horizon]
        while self._unexplained and emitted - self._unexplained[0][0] > self.horizon:
            self._unexplained.popleft()
        if len(skipped) <= (self._unexplained.maxlen or 0):  # else: a restarted bridge's jump
            self._unexplained.extend((emitted, t) for t in skipped if t not in reported)
        while self._losses and self._unexplained:
            _, worker, receiver = self._losses[-1]
            yield self._unexplained.popleft()[1], (worker, receiver)
