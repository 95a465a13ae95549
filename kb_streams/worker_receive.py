"""Receive trains on the Dask workers, reduce them there, stream the small results in train order.

Which path to use
-----------------
``Stream.from_karabo_bridge(endpoint).map(f)``
    Everything in the graph's process. Fine while ``f`` keeps up with the train rate.
``Stream.from_karabo_bridge(endpoint).offload(f, client=client)`` (:mod:`kb_streams.offload`)
    The graph's process receives each train and scatters it to a worker. Every train crosses one
    more process boundary (about 60-120 ms per 100 MB on loopback), so use it for trains up to a
    few tens of MB, for data already reduced or selected in the graph, or when the graph itself
    needs the whole train.
``Stream.from_karabo_bridge_on_workers(endpoint, f, client)`` (this module)
    Each of ``n`` workers runs its own bridge client: REQ on a REP bridge or PULL on a PUSH bridge
    (the bridge hands different trains to different receivers). ``f(train)`` runs where the
    train landed and only its (small) result reaches the graph, re-ordered by train ID. For
    megapixel detectors (100 MB - 1.4 GB trains) at 10 Hz: the train is never copied again.
    Measured on a 2-core machine (``benchmarks/bench_dask.py``: AGIPD-1M, 64 pulses, 336 MB per
    train, 150 ms of CPU per train): 5.8-6.0 trains/s against 2.8-3.3 with ``offload``, with
    7 kB per train (0.002 %) between the graph and the workers instead of the whole train.
Sharding: ``endpoint=[Shard(...), ...]`` or :func:`module_shards`
    Each receiver takes a subset of the detector modules (its own bridge per module group, or SUB
    on one PUB bridge keeping only its modules); the partial results of a train are merged once
    every shard has delivered it. When one receiver cannot take a whole train in time.

How it works
------------
The source keeps ``tasks_per_receiver`` short Dask tasks in flight per receiver, each pinned to
that receiver's worker (strictly: work stealing would strand trains in another worker's
receiver; the tasks of a worker that died are re-submitted to the others).
A task takes the next train from a bridge client kept open in the worker process (one per
receiver, in its own thread, receiving ``prefetch`` trains ahead so the next train travels while
``f`` runs), applies ``f`` and returns ``(train ID, result)``; an exception in ``f`` comes back as
an error record with the train ID. Nothing is queued without bound: results wait in a re-order
buffer for at most ``wait`` seconds, and only while some receiver may still deliver an earlier
train. A receiver hands its trains out in order and numbers them, so the graph knows which of
them are still on their way back; one that has returned every train it handed out up to the
waiting one, or that was seen with nothing to deliver (idle, or not running yet: the graph asks
its worker) after the waiting result came, holds nothing back. A train that comes after a later
one was emitted is counted as late and dropped. Workers that leave are replaced by the
remaining ones, and receivers are spread over new workers as they join; with no worker at all
the source submits nothing and waits for one, with a warning once a minute. Stopping closes the
receivers first, so their tasks end by themselves. A receiver whose source is gone (no task for
a minute) closes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np
from dask.utils import funcname
from distributed import Client, default_client
from distributed.client import FutureCancelledError
from streamz import Stream
from streamz.sources import Source

from ._receive_order import ReceiveOrder
from ._worker_receiver import (
    STATE_PROBE,
    ReceiverSpec,
    TaskResult,
    close_receivers,
    close_receivers_async,
    receive_and_apply,
)
from .offload import (
    RPC_TIMEOUT,
    WARN_EVERY,
    OffloadError,
    cancel_quietly,
    detach,
    nbytes_of,
    on_client_loop,
)

__all__ = ["Shard", "WorkerReceiveStats", "from_karabo_bridge_on_workers", "module_shards",
           "receive_and_apply", "close_receivers"]

logger = logging.getLogger(__name__)

SOCKS = ("REQ", "PULL", "SUB")


@dataclass(frozen=True)
class Shard:
    """One receiver of a sharded worker-side source.

    Parameters
    ----------
    endpoint
        Bridge endpoint this receiver connects to.
    select
        What it keeps of each train: anything :meth:`kb_streams.train.Train.select` takes
        (a source glob, a list of globs, a dict); ``None`` keeps everything.
    name
        Label of the shard (default ``'shard<i>'``); keys of the default merged result.
    sock
        Socket type; default: the source's ``sock``.

    Examples
    --------
    One bridge per module group:

    >>> shards = [Shard("tcp://10.0.0.1:4501", name="Q1"), Shard("tcp://10.0.0.1:4502", name="Q2")]
    """

    endpoint: str
    select: Any = None
    name: str | None = None
    sock: str | None = None


def module_shards(endpoint: str, n: int, *, modules: int = 16,
                  source: str = "*/DET/{module}CH0:*", sock: str = "SUB") -> list[Shard]:
    """Split the modules of one bridge into ``n`` shards of consecutive modules.

    Every shard subscribes (SUB, on a PUB bridge) to the whole train and keeps its modules: this
    splits the CPU work, not the network traffic. For that, give each module group its own bridge.

    Examples
    --------
    >>> [s.name for s in module_shards("tcp://127.0.0.1:4545", 4)]
    ['modules 0-3', 'modules 4-7', 'modules 8-11', 'modules 12-15']
    >>> module_shards("tcp://127.0.0.1:4545", 2, modules=4)[1].select
    ['*/DET/2CH0:*', '*/DET/3CH0:*']
    """
    if not 1 <= n <= modules:
        raise ValueError(f"need 1 to {modules} shards, not {n}")
    groups = np.array_split(np.arange(modules), n)
    return [Shard(endpoint, select=[source.format(module=m) for m in group],
                  name=f"modules {group[0]}-{group[-1]}", sock=sock) for group in groups]


#: Seconds a result waits for a receiver that just delivered a train before that one is probed.
PROBE_AFTER = 0.2
#: Seconds, beyond ``timeout``, that stopping waits for running tasks before cancelling them.
STOP_GRACE = 10.0


@dataclass
class WorkerReceiveStats:
    """Counters of a worker-side source (``source.stats``), updated live.

    ``emitted`` results went downstream; ``received`` trains were reduced on workers; ``errors``
    records went to ``source.errors``; ``late`` results came after a later train was emitted and
    were dropped; ``skipped`` train IDs were passed over between emitted trains; ``incomplete``
    sharded trains missed a shard (within ``wait``); ``idle`` receive attempts timed out;
    ``probes`` asked the workers about receivers holding back a result;
    ``bytes_received`` arrived on the workers, ``bytes_tasks`` + ``bytes_results`` crossed between
    the graph's process and the workers.
    """

    emitted: int = 0
    received: int = 0
    errors: int = 0
    late: int = 0
    skipped: int = 0
    incomplete: int = 0
    idle: int = 0
    probes: int = 0
    tasks: int = 0
    reassigned: int = 0
    buffered: int = 0
    max_buffered: int = 0
    bytes_received: int = 0
    bytes_tasks: int = 0
    bytes_results: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class _Slot:
    spec: ReceiverSpec
    worker: str | None = None
    tasks: int = 0
    not_before: float = 0.0
    order: ReceiveOrder = field(default_factory=ReceiveOrder)
    busy: bool = False  # its last report was a train, so another one is likely on its way
    probing: bool = False
    probed_at: float = -math.inf


@dataclass(eq=False)
class _Pending:
    first_seen: float
    parts: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


@Stream.register_api(staticmethod)
class from_karabo_bridge_on_workers(Source):
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
        Emits an :class:`~kb_streams.offload.OffloadError` per train ``func`` raised on, and per
        receive or task failure.
    stats : WorkerReceiveStats
    finished : threading.Event
        Set once the source has stopped and closed the workers' bridge clients.

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
        if client is None:
            try:
                client = default_client()
            except ValueError:
                raise ValueError("from_karabo_bridge_on_workers needs a Dask client: pass "
                                 "client=kb_streams.cluster.connect(...)") from None
        sock = sock.upper()
        if isinstance(endpoint, str):
            self.shards: list[Shard] | None = None
            if sock not in SOCKS:
                raise ValueError(f"sock must be one of {SOCKS}, not {sock!r}")
            if sock == "SUB" and n not in (None, 1):
                raise ValueError("with SUB every receiver gets every train: use n=1, or shards")
        else:
            self.shards = [s if isinstance(s, Shard) else Shard(s) for s in endpoint]
            if not self.shards:
                raise ValueError("no shards given")
            self.shards = [Shard(s.endpoint, s.select, s.name or f"shard{i}",
                                 (s.sock or sock).upper()) for i, s in enumerate(self.shards)]
            names = [s.name for s in self.shards]
            if len(set(names)) != len(names):
                raise ValueError(f"shard names must differ: {names}")
            for s in self.shards:
                if s.sock not in SOCKS:
                    raise ValueError(f"shard {s.name}: sock must be one of {SOCKS}, not {s.sock!r}")
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
        self.finished = threading.Event()
        self.finished.set()
        self._func_name = funcname(func)
        if loop is None:
            loop = client.loop
            if asynchronous is None and getattr(client, "_asynchronous", False):
                asynchronous = True
        super().__init__(start=False, stream_name=stream_name, loop=loop,
                         asynchronous=asynchronous)
        self.errors = Stream(loop=self.loop, asynchronous=self.asynchronous,
                             stream_name=f"{stream_name or 'on_workers'}.errors")
        self._slots: list[_Slot] = []
        # Dask futures in flight -> their worker, and the keys given up on (client's loop only)
        self._futures: dict[Any, str | None] = {}
        self._abandoned: set[str] = set()
        self._buffer: dict[int, _Pending] = {}
        self._last_emitted: int | None = None
        self._session = ""
        self._warned_size = False
        self._warned_no_workers = -WARN_EVERY  # when (time.monotonic()) it last warned
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

    def _emit(self, x: Any, metadata: list | None = None) -> list:
        try:
            return super()._emit(x, metadata=metadata)
        finally:
            self.current_value = None
            self.current_metadata = None

    async def run(self) -> None:
        self._session = session = uuid.uuid4().hex
        tasks: dict[asyncio.Future, tuple[_Slot, float]] = {}
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
                        task = asyncio.ensure_future(
                            on_client_loop(self.client, self._remote, slot.spec, slot.worker))
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
            await self._stop_tasks(session, [*tasks, *probes])
            self.finished.set()

    async def _stop_tasks(self, session: str, tasks: list[asyncio.Future]) -> None:
        """Close the receivers, so their waiting tasks end at once; cancel only what then lasts.

        A cancelled Dask task runs on in its worker thread (here: until its receive times out),
        keeping the worker from the next source; a worker closed meanwhile logs a
        ``CancelledError`` warning for it.
        """
        await self._close_workers(session)
        if not tasks:
            return
        _, left = await asyncio.wait(tasks, timeout=self.timeout + STOP_GRACE)
        if left:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(on_client_loop(self.client, self._cancel_futures),
                                       RPC_TIMEOUT)
            _, left = await asyncio.wait(left, timeout=STOP_GRACE)
            for task in left:
                task.cancel()

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
                workers = await on_client_loop(self.client, self._workers)
                n = max(1, len(workers))
            specs = [spec(f"r{i}", self.endpoint, self.sock, self.select) for i in range(n)]
        self._slots = [_Slot(s) for s in specs]
        self._buffer.clear()
        self._last_emitted = None

    async def _workers(self) -> list[str]:
        return sorted(await asyncio.wait_for(self.client.scheduler.ncores_running(), RPC_TIMEOUT))

    async def _assign_workers(self) -> None:
        """Pin every receiver to a live worker, spread evenly (cheap; done about once a second)."""
        try:
            workers = await on_client_loop(self.client, self._workers)
        except Exception as exc:
            logger.warning("cannot list the Dask workers: %s", exc)
            return
        gone = {s.worker for s in self._slots if s.worker is not None} - set(workers)
        if gone:
            try:
                await on_client_loop(self.client, self._abandon, gone)
            except Exception as exc:  # their tasks end with the stream at the latest
                logger.warning("cannot cancel the tasks of the workers that left: %s", exc)
        now = time.monotonic()
        for slot in self._slots:
            if slot.worker in gone:  # what it had received is lost; a new receiver starts afresh
                slot.order.restart(now)
        if not workers:
            for slot in self._slots:
                if slot.worker is not None:
                    logger.info("receiver %s: worker %s is gone", slot.spec.name, slot.worker)
                    slot.worker = None
            if now - self._warned_no_workers >= WARN_EVERY:
                self._warned_no_workers = now
                logger.warning("worker-side bridge source %s: the Dask cluster has no workers; no "
                               "train is received until workers join", self.endpoint)
            return
        load = {w: 0 for w in workers}
        for slot in self._slots:
            if slot.worker in load:
                load[slot.worker] += 1
        for slot in self._slots:
            if slot.worker not in load:
                target = min(workers, key=load.__getitem__)
                if slot.worker is not None:
                    self.stats.reassigned += 1
                    logger.info("receiver %s: worker %s is gone, now on %s", slot.spec.name,
                                slot.worker, target)
                slot.worker = target
                load[target] += 1
        while True:  # move receivers from crowded workers to new ones
            busiest = max(workers, key=load.__getitem__)
            idlest = min(workers, key=load.__getitem__)
            if load[busiest] - load[idlest] <= 1:
                break
            slot = next(s for s in self._slots if s.worker == busiest)
            slot.worker = idlest
            load[busiest] -= 1
            load[idlest] += 1
            self.stats.reassigned += 1

    async def _remote(self, spec: ReceiverSpec, worker: str) -> TaskResult:
        """Client loop: one receive-and-apply task on ``worker``."""
        client = self.client
        future = None
        try:
            future = client.submit(
                receive_and_apply, spec, self.func, self.args, self.kwargs, pure=False,
                key=f"kb-receive-{spec.name}-{uuid.uuid4().hex}", workers=[worker])
            self._futures[future] = worker
            return await client.gather(future, direct=True)
        except (Exception, FutureCancelledError) as exc:
            if future is not None and future.key in self._abandoned:
                return TaskResult(spec.name, "abandoned")
            return TaskResult(spec.name, "failed", error=detach(exc))
        finally:
            if future is not None:
                self._futures.pop(future, None)
                self._abandoned.discard(future.key)
                if not future.done():
                    await cancel_quietly(client, future)

    async def _abandon(self, workers: set[str]) -> None:
        """Cancel the tasks pinned to workers that left (they would wait for them forever)."""
        futures = [f for f, w in self._futures.items() if w in workers]
        if futures:
            self._abandoned.update(f.key for f in futures)
            await asyncio.wait_for(self.client.cancel(futures, asynchronous=True), RPC_TIMEOUT)

    async def _cancel_futures(self) -> None:
        if self._futures:
            self._abandoned.update(f.key for f in self._futures)
            await asyncio.wait_for(self.client.cancel(list(self._futures), asynchronous=True),
                                   RPC_TIMEOUT)

    async def _close_workers(self, session: str) -> None:
        async def close() -> Any:
            return await self.client.run(close_receivers_async, session, on_error="ignore")

        try:
            await asyncio.wait_for(on_client_loop(self.client, close), self.timeout + 10)
        except Exception as exc:
            logger.debug("could not close the bridge clients on the workers: %s", exc)

    # -- results -----------------------------------------------------------------------------
    async def _handle(self, slot: _Slot, result: TaskResult, submitted: float) -> None:
        stats = self.stats
        if result.kind == "idle":
            stats.idle += 1
            slot.busy = False
            if result.taken is not None:
                # it waited ``poll`` seconds, starting after the task was submitted
                slot.order.empty(result.epoch, result.taken,
                                 min(submitted + slot.spec.poll, time.monotonic()))
            return
        if result.kind in ("closed", "abandoned"):
            return
        if result.kind == "failed":
            slot.order.failed()
        else:
            slot.order.returned(result.epoch, result.seq, result.train_id)
        if result.seq is not None:
            slot.busy = True
        if result.kind in ("error", "failed"):
            if result.train_id is None:  # receiving or the task failed: do not hammer
                slot.not_before = time.monotonic() + min(self.timeout, 1.0)
            else:
                pending = self._buffer.get(result.train_id)
                if pending is not None:
                    pending.failed = True
            text, exc = result.error
            await self._report(OffloadError(result.train_id, self._func_name, exc, text,
                                            receiver=slot.spec.name))
            return
        stats.received += 1
        stats.bytes_received += result.nbytes
        nbytes = nbytes_of(result.value)
        stats.bytes_results += nbytes
        if nbytes > max(1e6, 0.05 * result.nbytes) and not self._warned_size:
            self._warned_size = True
            logger.warning("%s returns %.1f MB per train (the train is %.1f MB): reduce more on "
                           "the workers", self._func_name, nbytes / 1e6, result.nbytes / 1e6)
        tid = result.train_id
        if tid is None:  # cannot be ordered: pass it on as it comes
            await self._deliver(None, result.value)
            return
        if self._last_emitted is not None and tid <= self._last_emitted:
            stats.late += 1
            logger.debug("train %s from %s came after train %s: dropped", tid, slot.spec.name,
                         self._last_emitted)
            return
        pending = self._buffer.setdefault(tid, _Pending(time.monotonic()))
        pending.parts[slot.spec.name if self.shards is not None else ""] = result.value
        stats.buffered = len(self._buffer)
        stats.max_buffered = max(stats.max_buffered, stats.buffered)

    def _next_deadline(self, now: float) -> float:
        if not self._buffer:
            return now + 1.0
        first_seen = min(p.first_seen for p in self._buffer.values())
        probe_at = self._buffer[min(self._buffer)].first_seen + PROBE_AFTER
        return min(first_seen + self.wait, probe_at if probe_at > now else math.inf)

    def _blockers(self, tid: int, pending: _Pending) -> list[_Slot]:
        """The receivers that may still deliver a train before ``tid``."""
        return [s for s in self._slots
                if s.worker is not None and not s.order.passes(tid, pending.first_seen)]

    def _ready(self, tid: int, pending: _Pending) -> bool:
        """Whether the complete result of ``tid`` can go: no train before it can still come."""
        if self.shards is None:
            return not self._blockers(tid, pending)
        # a shard's part of ``tid`` is in: it can deliver no earlier train once it has returned
        # every train it handed out up to ``tid``
        return all(s.order.floor is not None and s.order.floor >= tid for s in self._slots)

    def _hopeless(self, tid: int, pending: _Pending) -> bool:
        """Sharded: a missing part can no longer come (its shard has delivered a later train)."""
        return any(s.spec.name not in pending.parts and s.order.floor is not None
                   and s.order.floor > tid for s in self._slots)

    async def _emit_ready(self, flush: bool) -> None:
        parts_needed = len(self.shards) if self.shards is not None else 1
        while self._buffer:
            now = time.monotonic()
            tid = min(self._buffer)
            pending = self._buffer[tid]
            complete = len(pending.parts) == parts_needed
            overdue = flush or now - pending.first_seen >= self.wait or \
                len(self._buffer) > self.max_buffered
            if pending.failed or (not complete and (overdue or self._hopeless(tid, pending))):
                del self._buffer[tid]
                if not pending.failed:
                    self.stats.incomplete += 1
                    logger.info("train %s: no result from %s within %s s, skipped", tid,
                                sorted({s.spec.name for s in self._slots} - set(pending.parts)),
                                self.wait)
                continue
            if not complete or not (overdue or self._ready(tid, pending)):
                break
            del self._buffer[tid]
            if self._last_emitted is not None and tid > self._last_emitted + 1:
                self.stats.skipped += tid - self._last_emitted - 1
            self._last_emitted = tid
            if self.shards is None:
                value = pending.parts[""]
            else:
                parts = [pending.parts[s.name] for s in self.shards]
                try:
                    value = self.merge(parts) if self.merge else dict(
                        zip([s.name for s in self.shards], parts, strict=True))
                except Exception as exc:
                    text, exc = detach(exc)
                    await self._report(OffloadError(tid, funcname(self.merge), exc, text))
                    continue
            del pending
            await self._deliver(tid, value)
        self.stats.buffered = len(self._buffer)

    # -- probes ------------------------------------------------------------------------------
    def _probe_blockers(self) -> list[asyncio.Future]:
        """Ask the workers about the receivers holding back the oldest result, if none was
        asked since it came: one that runs no receiver or has nothing left to deliver lets it go
        at once instead of after its next idle report (or ``wait``)."""
        if self.shards is not None or not self._buffer:
            return []
        tid = min(self._buffer)
        pending = self._buffer[tid]
        waited = time.monotonic() - pending.first_seen
        by_worker: dict[str, list[_Slot]] = {}
        for slot in self._blockers(tid, pending):
            if (not slot.probing and slot.probed_at < pending.first_seen
                    and (not slot.busy or waited >= PROBE_AFTER)):
                by_worker.setdefault(slot.worker, []).append(slot)
        return [asyncio.ensure_future(self._probe(worker, slots))
                for worker, slots in by_worker.items()]

    async def _probe(self, worker: str, slots: list[_Slot]) -> None:
        sent = time.monotonic()
        for slot in slots:
            slot.probing, slot.probed_at = True, sent
        self.stats.probes += 1
        names = [slot.spec.name for slot in slots]

        async def states() -> dict:
            return await self.client.run(STATE_PROBE, self._session, names, workers=[worker],
                                         on_error="ignore")

        try:
            answer = await asyncio.wait_for(on_client_loop(self.client, states), RPC_TIMEOUT)
        except Exception as exc:
            logger.debug("cannot probe the receivers on %s: %s", worker, exc)
            answer = {}
        finally:
            for slot in slots:
                slot.probing = False
        for slot in slots:
            if worker not in answer or slot.worker != worker:
                continue
            state = answer[worker].get(slot.spec.name)
            if state is None:
                slot.order.absent(sent)
                slot.busy = False
            elif state[2] == 0:  # nothing waiting for a task
                slot.order.empty(state[0], state[1], sent)

    async def _deliver(self, tid: int | None, value: Any) -> None:
        self.stats.emitted += 1
        try:
            await asyncio.gather(*self._emit(value))
        except Exception:
            logger.exception("downstream of the worker-side source raised on train %s", tid)

    async def _report(self, record: OffloadError) -> None:
        self.stats.errors += 1
        logger.warning("%s", record)
        try:
            await asyncio.gather(*self.errors._emit(record))
        except Exception:
            logger.exception("the errors stream raised on %s", record)

