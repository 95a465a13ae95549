"""Which trains a worker-side receiver may still deliver: the re-order buffer's bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ReceiveOrder"]


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
