"""Run a function on a Dask cluster for each item of a stream: bounded, ordered, never stalling.

``source.offload(func, n=4, client=client)`` replaces streamz' ``scatter().map(func).buffer(n)
.gather()`` with one node that

* keeps at most ``n`` items in flight: the ``n+1``-th item's emit stays pending (backpressure
  reaches an awaiting source such as ``from_karabo_bridge``);
* emits results in the order items arrived (``ordered=False``: as they complete);
* turns an item whose task raised, timed out or lost its worker into an :class:`OffloadError`
  record (train ID, exception, traceback text) on ``node.errors`` and goes on: one bad train never
  stalls the graph (stock ``buffer`` + ``gather`` stalls forever on the first failing task);
* gives every item at most ``timeout`` seconds (default 60) to produce its result, so a cluster
  without workers gives error records, never an eternal stall, and says so in a warning;
* scatters large items straight to a worker (``direct=True``), never inside a task message;
* uses the client it was given (or the default client at build time), never a later default;
* forgets each item once passed on (no ``current_value`` pinning a train).

It runs on its graph's event loop and hands the Dask calls to the client's loop
(:mod:`kb_streams.dask.base`), whichever of graph and client was created first. This module runs
one item on the cluster (scatter, submit, result, time limit, re-submission);
:mod:`kb_streams.dask.in_flight` bounds the items in flight and emits their outcomes in order.

Use it when trains are at most a few tens of MB, or already reduced/sharded, before they leave the
graph's process. For megapixel trains see :mod:`kb_streams.dask.on_workers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from dask.utils import funcname
from distributed import Client
from distributed.client import FutureCancelledError
from streamz import Stream

from ..records import ErrorRecord, detach
from ..stats import OffloadStats
from .base import DaskNode, cancel_quietly, loop_for, nbytes_of, resolve_client
from .in_flight import Entry, InFlight, Outcome

__all__ = ["Offload", "OffloadError", "OffloadStats", "nbytes_of"]

logger = logging.getLogger(__name__)

#: A train (or item) for which the cluster produced no result; emitted on ``node.errors``.
OffloadError = ErrorRecord

#: Failures that mean "the cluster lost this item" (worker or scattered data gone, connection
#: dropped) rather than "the function raised"; such items are re-submitted up to ``retries`` times.
#: ``KilledWorker`` is not among them: Dask already re-ran that task on several workers.
LOST = (FutureCancelledError, OSError)
RESUBMIT_DELAY = 0.5
#: Default seconds an item may take from submission to result.
TIMEOUT = 60.0
#: Seconds between checks, while an item waits for its result, that the cluster has workers.
STALL_CHECK = 5.0


@Stream.register_api(attribute_name="offload")
class Offload(InFlight, DaskNode, Stream):
    """Apply ``func`` to each item on a Dask cluster, ``n`` items at a time, without stalling.

    Parameters
    ----------
    upstream
        The stream feeding items (registered as ``Stream.offload``).
    func
        ``func(item, *args, **kwargs)``; runs on a worker. Return something small.
    n
        Most items in flight (submitted, running, or waiting to be emitted).
    ordered
        Emit results in input order (default; a slow item holds back later ones), or as they
        complete.
    client
        The :class:`distributed.Client` to use. Default: the current default client, fixed when the
        node is built (see :func:`kb_streams.cluster.connect`).
    retries
        Extra attempts for an item: Dask re-runs a task that raised up to ``retries`` times, and the
        node re-submits an item whose worker or scattered data was lost up to ``retries`` times.
    timeout
        Seconds an item may take from submission to result (sending it, waiting for a free worker,
        running, returning); then it is cancelled and reported as a ``TimeoutError`` record. This
        includes the wait behind other items: with ``n`` items in flight on ``w`` worker threads,
        allow about ``n / w`` task durations. While items wait, the node checks every few seconds
        that the cluster has workers and logs a warning if it has none. ``None``: no limit (a
        cluster without workers then stalls the graph until workers join).
    scatter
        ``'auto'``: items of at least ``scatter_threshold`` bytes are scattered straight to a
        worker, smaller ones travel inside the task message. ``True``/``False``: always/never
        scatter.
    scatter_threshold
        Byte size from which ``scatter='auto'`` scatters.
    submit_kwargs
        Extra :meth:`distributed.Client.submit` options (``resources``, ``workers``, ``priority``).
    kwargs
        Keyword arguments for ``func``.

    Attributes
    ----------
    errors : streamz.Stream
        Emits an :class:`OffloadError` for each item that did not produce a result.
    stats : OffloadStats
        Live counters.
    finished : kb_streams.nodes.Finished
        Set while no item is in flight (``join(timeout)`` waits for it).

    Examples
    --------
    >>> from streamz import Stream
    >>> from kb_streams.cluster import connect
    >>> client = connect(n_workers=2)                         # doctest: +SKIP
    >>> source = Stream()                                     # doctest: +SKIP
    >>> node = source.offload(lambda x: 1 / x, n=4, client=client)      # doctest: +SKIP
    >>> results, errors = node.sink_to_list(), node.errors.sink_to_list()  # doctest: +SKIP
    >>> for x in [1, 2, 0, 4]:                                # doctest: +SKIP
    ...     source.emit(x)
    >>> node.drain(timeout=30)                                # doctest: +SKIP
    >>> results, [e.index for e in errors]                    # doctest: +SKIP
    ([1.0, 0.5, 0.25], [2])
    """

    _graphviz_shape = "octagon"

    def __init__(
        self,
        upstream: Stream,
        func: Callable[..., Any],
        *args: Any,
        n: int = 4,
        ordered: bool = True,
        client: Client | None = None,
        retries: int = 0,
        timeout: float | None = TIMEOUT,
        scatter: bool | str = "auto",
        scatter_threshold: int = 64_000,
        submit_kwargs: Mapping[str, Any] | None = None,
        stream_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        if scatter not in (True, False, "auto"):
            raise ValueError(f"scatter must be True, False or 'auto', not {scatter!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be None or a number of seconds > 0, not {timeout!r}")
        client = resolve_client(client, "offload")
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.n = n
        self.ordered = ordered
        self.client = client
        self.retries = retries
        self.timeout = timeout
        self.scatter = scatter
        self.scatter_threshold = scatter_threshold
        self.submit_kwargs = dict(submit_kwargs or {})
        self.stats = OffloadStats()
        self._func_name = funcname(func)

        loop, asynchronous = loop_for(client, getattr(upstream, "loop", None),
                                      getattr(upstream, "asynchronous", None))
        super().__init__(upstream, loop=loop, asynchronous=asynchronous, stream_name=stream_name)
        self._init_interface(stream_name or "offload")
        self._init_in_flight()

    # -- streamz interface -------------------------------------------------------------------
    def update(self, x: Any, who: Stream | None = None, metadata: list | None = None):
        metadata = metadata or []
        self._retain_refs(metadata)
        task = asyncio.ensure_future(self._accept(x, metadata))
        self._keep(task)
        return task

    # -- client side -------------------------------------------------------------------------
    def _should_scatter(self, nbytes: int) -> bool:
        return self.scatter is True or (self.scatter == "auto" and nbytes >= self.scatter_threshold)

    async def _run(self, x: Any, entry: Entry) -> Outcome:
        """Submit one item (re-submitting after a lost worker) and wait for its result."""
        client, stats = self.client, self.stats
        nbytes = nbytes_of(x)
        scatter = self._should_scatter(nbytes)
        key_prefix = f"{self._func_name}-" + (
            f"train{entry.train_id}" if entry.train_id is not None else f"item{entry.index}")
        attempts = 0
        while True:
            attempts += 1
            future = arg = None
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                if scatter:
                    arg = await self._scatter(x, deadline)
                    stats.bytes_scattered += nbytes
                else:
                    arg = x
                    stats.bytes_in_tasks += nbytes
                future = client.submit(self.func, arg, *self.args,
                                       key=f"{key_prefix}-{uuid.uuid4().hex}", pure=False,
                                       retries=self.retries, **self.submit_kwargs, **self.kwargs)
                result = await self._result(future, deadline)
                stats.bytes_results += nbytes_of(result)
                return Outcome(True, result)
            except (Exception, FutureCancelledError) as exc:
                task_raised = future is not None and future.status == "error"
                if (isinstance(exc, TimeoutError) and deadline is not None and not task_raised
                        and time.monotonic() >= deadline):
                    stats.timed_out += 1
                elif isinstance(exc, LOST) and not task_raised and attempts <= self.retries:
                    stats.resubmitted += 1
                    logger.info("resubmitting %s after %s: %s", key_prefix, type(exc).__name__, exc)
                    # give the scheduler a moment to drop a dead worker: a direct scatter to
                    # it would retry connecting for distributed's whole connect timeout
                    await asyncio.sleep(RESUBMIT_DELAY * attempts)
                    continue
                return Outcome(False, self._error(entry, exc, attempts))
            finally:
                if future is not None and not future.done():
                    await cancel_quietly(client, future)
                del future, arg

    async def _scatter(self, x: Any, deadline: float | None) -> Any:
        """Scatter ``x`` straight to a worker, waiting for one until ``deadline`` (without one,
        for the client's timeout). A scatter is never cancelled halfway: that could strand the
        item on a worker without the scheduler knowing."""
        options = {} if deadline is None else {"timeout": max(deadline - time.monotonic(), 0.01)}
        scattering = asyncio.ensure_future(
            self.client.scatter([x], direct=True, hash=False, **options))
        no_workers = await self._watch(scattering, deadline, STALL_CHECK)
        try:
            [future] = await scattering  # ends by itself: its own timeout covers the wait
        except TimeoutError:  # distributed's "No valid workers found"
            if no_workers or await self._no_workers():
                raise TimeoutError(f"no Dask worker to send the item to within {self.timeout} s: "
                                   "the cluster has no workers") from None
            raise
        return future

    async def _result(self, future: Any, deadline: float | None) -> Any:
        """The future's result (direct from the worker); ``TimeoutError`` at ``deadline``.

        On timeout the Dask future is cancelled first, so that the pending gather ends by itself
        (cancelling a gather coroutine leaves distributed's helper tasks failing unseen).
        """
        client = self.client
        gathering = asyncio.ensure_future(client.gather(future, direct=True))
        no_workers = await self._watch(gathering, deadline, STALL_CHECK)
        if gathering.done():
            return gathering.result()
        await cancel_quietly(client, future)
        done, _ = await asyncio.wait({gathering}, timeout=5)
        if done and not gathering.cancelled():
            gathering.exception()  # retrieved: the cancellation error is expected
        else:
            gathering.cancel()
        raise TimeoutError(f"no result within {self.timeout} s"
                           + (": the Dask cluster has no workers" if no_workers else ""))

    async def _no_workers(self) -> bool:
        """Whether the scheduler says it has no running workers (warns, at most once a minute)."""
        if await self._count_workers() != 0:
            return False
        limit = (f"each for at most {self.timeout} s" if self.timeout is not None
                 else "until workers join (no timeout)")
        self._warn_no_workers("offload(%s): the Dask cluster at %s has no workers; %d item(s) "
                              "wait %s", self._func_name, self.client.scheduler.address,
                              self.stats.in_flight, limit)
        return True

    def _error(self, entry: Entry, exc: BaseException, attempts: int) -> OffloadError:
        text, exc = detach(exc)
        return OffloadError(entry.train_id, self._func_name, exc, text, index=entry.index,
                            attempts=attempts)
