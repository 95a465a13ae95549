"""The graph side of :class:`~kb_streams.dask.offload.Offload`: items in flight, results out.

:class:`InFlight` admits at most ``n`` items at a time (the ``n+1``-th item's emit stays pending,
so backpressure reaches an awaiting source), emits each item's outcome in input order (or, with
``ordered=False``, as items complete): a result downstream, a failure as a record on ``errors``.
It tells when nothing is in flight (``finished``, :meth:`InFlight.drain`). How one item is run on
the cluster is the node's ``_run``, in :mod:`kb_streams.dask.offload`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from distributed.utils import sync

from ..stats import OffloadStats
from ..train_id import train_id_of
from .base import in_loop

__all__ = ["Entry", "InFlight", "Outcome"]


@dataclass(eq=False)
class Entry:
    """One item in flight: its place in the input, train ID, streamz metadata and task."""

    index: int
    train_id: int | None
    metadata: list
    task: asyncio.Task = field(init=False)


@dataclass
class Outcome:
    """What an item came to: ``ok`` and its result, or not ``ok`` and its error record."""

    ok: bool
    value: Any


class InFlight:
    """Mixed into :class:`~kb_streams.dask.offload.Offload`, a Dask node.

    The node sets ``n``, ``ordered``, ``stats`` and ``_func_name``, calls :meth:`_init_in_flight`
    and provides ``_run(item, entry) -> Outcome`` (awaited on the client's loop) and
    ``_error(entry, exc, attempts) -> ErrorRecord``.
    """

    n: int
    ordered: bool
    stats: OffloadStats
    _func_name: str

    def _init_in_flight(self) -> None:
        self._next_index = 0
        self._slots: asyncio.Semaphore | None = None
        self._pending: deque[Entry] = deque()  # in input order (ordered mode)
        self._done: deque[Entry] = deque()  # in completion order (unordered mode)
        self._wakeup: asyncio.Event | None = None
        self._emitter: asyncio.Task | None = None
        self._tasks: set[asyncio.Future] = set()
        self._idle: asyncio.Event | None = None

    def drain(self, timeout: float | None = None):
        """Wait until every item accepted so far has been emitted as a result or an error.

        From the graph's event loop this returns an awaitable; from any other thread it blocks.
        ``TimeoutError`` if items are still in flight after ``timeout`` seconds.

        Examples
        --------
        >>> node.drain(timeout=60)                                # doctest: +SKIP
        >>> await node.drain(timeout=60)                          # doctest: +SKIP
        """
        async def _drain() -> None:
            if self._idle is not None:
                await asyncio.wait_for(self._idle.wait(), timeout)

        if in_loop(self.loop):
            return _drain()
        sync(self.loop, _drain)
        return None

    def _keep(self, task: asyncio.Future) -> None:
        self._setup()
        self._idle.clear()
        self.finished.clear()
        self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.stats.in_flight and not self._tasks:
            self._idle.set()
            self.finished.set()

    def _setup(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.n)
            self._wakeup = asyncio.Event()
            self._idle = asyncio.Event()

    async def _accept(self, x: Any, metadata: list) -> None:
        await self._slots.acquire()
        entry = Entry(self._next_index, train_id_of(x), metadata)
        self._next_index += 1
        stats = self.stats
        stats.accepted += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        entry.task = asyncio.ensure_future(self._on_client(self._run, x, entry))
        del x
        if self.ordered:
            self._pending.append(entry)
        else:
            entry.task.add_done_callback(lambda _, e=entry: self._completed(e))
        self._wakeup.set()
        if self._emitter is None or self._emitter.done():
            self._emitter = asyncio.ensure_future(self._emit_results())

    def _completed(self, entry: Entry) -> None:
        self._done.append(entry)
        self._wakeup.set()

    async def _emit_results(self) -> None:
        """Deliver outcomes downstream; ends when nothing is in flight (restarted on demand)."""
        queue = self._pending if self.ordered else self._done
        while self.stats.in_flight:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            entry = queue[0]
            try:
                outcome = await asyncio.shield(entry.task)
            except asyncio.CancelledError:
                if not entry.task.cancelled():
                    raise  # this emitter is being cancelled, not the item
                outcome = Outcome(False, self._error(entry, asyncio.CancelledError(), 1))
            except Exception as exc:  # e.g. the client's loop is gone
                outcome = Outcome(False, self._error(entry, exc, 1))
            queue.popleft()
            await self._pass_on(entry, outcome)
            self.stats.in_flight -= 1
            self._slots.release()
            self._release_refs(entry.metadata)
        self._check_idle()

    async def _pass_on(self, entry: Entry, outcome: Outcome) -> None:
        if outcome.ok:
            self.stats.completed += 1
            value = outcome.value
            del outcome
            await self._deliver(value, entry.metadata, entry.train_id,
                                f"offload({self._func_name})")
        else:
            self.stats.failed += 1
            await self._report_async(outcome.value)
