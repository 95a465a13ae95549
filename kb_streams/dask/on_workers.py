"""Receive trains on the Dask workers, reduce them there, stream the small results in train order.

Which of the Dask paths to use: see :mod:`kb_streams.dask`.

How it works
------------
The source keeps ``tasks_per_receiver`` short Dask tasks in flight per receiver, each pinned to
that receiver's worker (strictly: work stealing would strand trains in another worker's
receiver; the tasks of a worker that died are re-submitted to the others).
A task takes the next train from a bridge client kept open in the worker process (one per
receiver, in its own thread, receiving ``prefetch`` trains ahead so the next train travels while
``f`` runs), applies ``f`` and returns ``(train ID, result)``; an exception in ``f`` comes back as
an error record with the train ID. Nothing is queued without bound: results wait in a re-order
buffer (:mod:`kb_streams.dask.order`) for at most ``wait`` seconds, and only while some receiver
may still deliver an earlier train (the graph asks the workers about receivers that hold a
result back). A train that comes after a later one was emitted is counted as late and dropped.
Workers that leave are replaced by the
remaining ones (each train lost with one comes out as a record on ``errors``), and receivers
are spread over new workers as they join; with no worker at all the source submits nothing and
waits for one, with a warning once a minute. Stopping closes the receivers first, so their
tasks end by themselves. A receiver whose source is gone (no task for a minute) closes itself.

This module runs the receivers and their tasks; what happens to each result (counted, ordered,
merged, emitted, lost) is :mod:`kb_streams.dask.on_workers_results`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle
from dask.utils import funcname
from distributed import Client
from streamz import Stream
from streamz.sources import Source

from ..stats import WorkerReceiveStats
from .base import DaskNode, loop_for, resolve_client
from .on_workers_results import ResultsInOrder
from .order import LostTrains, ReorderBuffer
from .placement import Shard, module_shards, place, shards_of
from .receiver import ReceiverSpec, close_receivers, receive_and_apply
from .tasks import ReceiverTasks, Slot

__all__ = ["Shard", "WorkerReceiveStats", "from_karabo_bridge_on_workers", "module_shards",
           "receive_and_apply", "close_receivers"]

logger = logging.getLogger(__name__)


#: Seconds a result waits for a receiver that just delivered a train before that one is probed.
PROBE_AFTER = 0.2


@Stream.register_api(staticmethod)
class from_karabo_bridge_on_workers(ResultsInOrder, DaskNode, Source):
    """Receive and reduce trains on Dask workers; emit the results in train order.

    Parameters
    ----------
    endpoint
        A bridge endpoint (all receivers connect to it), or a list of :class:`Shard` (or endpoint
        strings): one receiver per shard, results merged per train.
    func
        ``func(train, *args, **kwargs)`` with a :class:`kb_streams.train.Train`; runs on a worker
        and should return something small (labelled with the train ID if you need it).
    client
        The :class:`distributed.Client`; default: the default client when the source is built.
    n
        Receivers for a single endpoint; default: the number of workers when the source starts.
    sock
        ``'REQ'`` (REP bridge), ``'PULL'`` (PUSH bridge) or ``'SUB'`` (PUB bridge; every receiver
        gets every train, so only with shards or ``n=1``).
    select
        Keep only this part of each train (:meth:`~kb_streams.train.Train.select`) before ``func``.
    merge
        Sharded only: ``merge(parts) -> result`` with the shards' results in shard order. Default:
        a dict ``{shard name: part}``.
    args, kwargs
        Extra arguments for ``func``.
    timeout
        Seconds a task waits for a train before reporting that its receiver is idle (then the
        next task waits again; this bounds how long :meth:`stop` takes).
    receive_timeout
        The workers' bridge client timeout: a REQ client renews its request after this long
        without a train (recovering from a bridge that died holding it). Keep it well above the
        transfer time of one train (about 1 s for 1.4 GB).
    wait
        Seconds a result may wait in the re-order buffer for earlier trains (or, sharded, for its
        other parts); after that it is emitted (or, incomplete, dropped and counted).
    tasks_per_receiver
        Tasks in flight per receiver (2 keeps a worker busy while a result travels back).
    prefetch
        Trains each receiver takes from the bridge ahead of the tasks (1: the next train arrives
        while ``func`` runs on this one). Each is held in the worker's memory until used.
    max_buffered
        Most results held for re-ordering; beyond it the oldest is emitted at once.
    start
        Start receiving at once (default: call ``.start()`` after connecting the graph).

    Attributes
    ----------
    errors : streamz.Stream
        Emits an :class:`~kb_streams.records.ErrorRecord` per train ``func`` raised on, per
        receive or task failure, and per train lost with its worker (its ID, the worker).
    stats : WorkerReceiveStats
    finished : kb_streams.nodes.Finished
        Set once the source has stopped and closed the workers' bridge clients
        (``join(timeout)`` waits for it).

    Examples
    --------
    >>> from kb_streams.cluster import connect
    >>> def pulse_energy(train):                        # runs on the workers
    ...     return train.stack_modules().sum(["module", "slow_scan", "fast_scan"])
    >>> client = connect(n_workers=2)                                   # doctest: +SKIP
    >>> source = Stream.from_karabo_bridge_on_workers(
    ...     "tcp://10.0.0.1:4545", pulse_energy, client, sock="REQ")      # doctest: +SKIP
    >>> results = source.sink_to_list()                                 # doctest: +SKIP
    >>> source.start()                                                  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: str | Sequence[str | Shard],
        func: Callable[..., Any],
        client: Client | None = None,
        *,
        n: int | None = None,
        sock: str = "REQ",
        select: Any = None,
        merge: Callable[[list[Any]], Any] | None = None,
        args: tuple = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 1.0,
        receive_timeout: float = 10.0,
        wait: float = 2.0,
        tasks_per_receiver: int = 2,
        prefetch: int = 1,
        hwm: int = 1,
        max_buffered: int = 64,
        start: bool = False,
        stream_name: str | None = None,
        loop: Any = None,
        asynchronous: bool | None = None,
    ) -> None:
        client = resolve_client(client, "from_karabo_bridge_on_workers")
        sock = sock.upper()
        self.shards = shards_of(endpoint, sock, n)
        if tasks_per_receiver < 1 or wait < 0 or timeout <= 0 or receive_timeout <= 0:
            raise ValueError("need tasks_per_receiver >= 1, wait >= 0, timeout > 0 and "
                             "receive_timeout > 0")
        self.endpoint = endpoint
        self.func = func
        self.client = client
        self.n = n
        self.sock = sock
        self.select = select
        self.merge = merge
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.timeout = timeout
        self.receive_timeout = receive_timeout
        self.wait = wait
        self.tasks_per_receiver = tasks_per_receiver
        self.prefetch = prefetch
        self.hwm = hwm
        self.max_buffered = max_buffered
        self.stats = WorkerReceiveStats()
        self._func_name = funcname(func)
        loop, asynchronous = loop_for(client, loop, asynchronous)
        super().__init__(start=False, stream_name=stream_name, loop=loop,
                         asynchronous=asynchronous)
        self._init_interface(stream_name or "on_workers")
        self._slots: list[Slot] = []
        self._calls = ReceiverTasks(client, func, self.args, self.kwargs)
        self._buffer = ReorderBuffer(sharded=self.shards is not None, wait=wait,
                                     max_buffered=max_buffered)
        self._losses = LostTrains()
        self._session = ""
        self._warned_size = False
        if start:
            self.start()

    # -- streamz interface -------------------------------------------------------------------
    def start(self) -> None:
        """Start receiving (does nothing while running). Thread-safe."""
        if self.stopped:
            if not self.finished.is_set():
                raise RuntimeError("the source is still stopping: wait for source.finished")
            self.finished.clear()
        super().start()

    async def run(self) -> None:
        self._session = session = uuid.uuid4().hex
        tasks: dict[asyncio.Future, tuple[Slot, float]] = {}
        probes: set[asyncio.Future] = set()
        try:
            await self._make_slots(session)
            task_bytes = len(cloudpickle.dumps(
                (self._slots[0].spec, self.func, self.args, self.kwargs)))
            next_check = 0.0
            while not self.stopped:
                now = time.monotonic()
                if now >= next_check:
                    await self._assign_workers()
                    next_check = now + 1.0
                for slot in self._slots:
                    # a receiver waits for a worker: a task run anywhere would strand its trains
                    while (slot.worker is not None and slot.tasks < self.tasks_per_receiver
                           and now >= slot.not_before):
                        task = asyncio.ensure_future(self._calls.run(slot.spec, slot.worker))
                        tasks[task] = (slot, now)
                        slot.tasks += 1
                        self.stats.tasks += 1
                        self.stats.bytes_tasks += task_bytes
                step = min(0.25, self._next_deadline(now) - now)
                if tasks or probes:
                    done, _ = await asyncio.wait([*tasks, *probes], timeout=max(step, 0.001),
                                                 return_when=asyncio.FIRST_COMPLETED)
                else:
                    done = set()
                    await asyncio.sleep(max(step, 0.001))
                for task in done:
                    if task in probes:
                        probes.discard(task)
                        continue  # it has recorded what it saw
                    slot, submitted = tasks.pop(task)
                    slot.tasks -= 1
                    await self._handle(slot, task.result(), submitted)
                await self._emit_ready(flush=False)
                probes.update(self._probe_blockers())
            await self._emit_ready(flush=True)
        except Exception:
            logger.exception("worker-side bridge source %s stopped on an error", self.endpoint)
            self.stopped = True
        finally:
            await self._calls.stop(session, [*tasks, *probes], self.timeout)
            self.finished.set()

    # -- receivers and workers ---------------------------------------------------------------
    async def _make_slots(self, session: str) -> None:
        def spec(name: str, endpoint: str, sock: str, select: Any) -> ReceiverSpec:
            return ReceiverSpec(session, name, endpoint, sock, select, self.timeout,
                         self.receive_timeout, self.prefetch, self.hwm)

        if self.shards is not None:
            specs = [spec(s.name, s.endpoint, s.sock, s.select) for s in self.shards]
        else:
            n = self.n
            if n is None:
                n = max(1, len(await self._calls.workers()))
            specs = [spec(f"r{i}", self.endpoint, self.sock, self.select) for i in range(n)]
        self._slots = [Slot(s) for s in specs]
        self._buffer.reset(self._slots)
        # a dead worker's trains show up as gaps within about what all receivers hold (twice that:
        # its death may be seen a moment after the results around them went out)
        self._losses = LostTrains(2 * len(self._slots)
                                  * (self.tasks_per_receiver + self.prefetch + 1))

    async def _assign_workers(self) -> None:
        """Pin every receiver to a live worker, spread evenly (cheap; done about once a second)."""
        try:
            workers = await self._calls.workers()
        except Exception as exc:
            logger.warning("cannot list the Dask workers: %s", exc)
            return
        gone = {s.worker for s in self._slots if s.worker is not None} - set(workers)
        if gone:
            try:
                await self._calls.abandon(gone)
            except Exception as exc:  # their tasks end with the stream at the latest
                logger.warning("cannot cancel the tasks of the workers that left: %s", exc)
        now = time.monotonic()
        for slot in self._slots:
            if slot.worker in gone:  # what it had received is lost; a new receiver starts afresh
                slot.order.restart(now)
                self._losses.worker_left(slot.worker, slot.name, self.stats.emitted)
        if gone:
            await self._report_lost(range(0))
        if not workers:
            for slot in self._slots:
                if slot.worker is not None:
                    logger.info("receiver %s: worker %s is gone", slot.spec.name, slot.worker)
                    slot.worker = None
            self._warn_no_workers("worker-side bridge source %s: the Dask cluster has no "
                                  "workers; no train is received until workers join",
                                  self.endpoint)
            return
        self.stats.reassigned += place(self._slots, workers)

    def _next_deadline(self, now: float) -> float:
        return self._buffer.next_deadline(now, PROBE_AFTER)

    # -- probes ------------------------------------------------------------------------------
    def _probe_blockers(self) -> list[asyncio.Future]:
        """Ask the workers about the receivers holding back the oldest result, if none was
        asked since it came: one that runs no receiver or has nothing left to deliver lets it go
        at once instead of after its next idle report (or ``wait``)."""
        if self.shards is not None or not len(self._buffer):
            return []
        tid = min(self._buffer.pending)
        first_seen = self._buffer.pending[tid].first_seen
        waited = time.monotonic() - first_seen
        by_worker: dict[str, list[Slot]] = {}
        for slot in self._buffer.blockers(tid):
            if (not slot.probing and slot.probed_at < first_seen
                    and (not slot.busy or waited >= PROBE_AFTER)):
                by_worker.setdefault(slot.worker, []).append(slot)
        return [asyncio.ensure_future(self._probe(worker, slots))
                for worker, slots in by_worker.items()]

    async def _probe(self, worker: str, slots: list[Slot]) -> None:
        self.stats.probes += 1
        await self._calls.probe(worker, self._session, slots)
