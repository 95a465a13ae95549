"""The streamz source node: trains from a Karabo bridge into a streamz graph.

``Stream.from_karabo_bridge(endpoint)`` (registered here and through the ``streamz.sources`` entry
point) receives trains with :class:`kb_streams.client.AsyncClient` and emits one
:class:`kb_streams.train.Train` per train. It waits for the whole graph to accept a train before it
asks for the next one, so a slow graph slows the source down instead of queueing trains; with
``sock='SUB'`` it keeps only the newest train, so the data stay fresh under a slow graph.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import fields
from typing import Any

from streamz import Stream
from streamz.sources import Source

from ._source_emit import EmitsTrains, InFlightTicket
from .client import AsyncClient
from .endpoints import check_endpoint
from .errors import ProtocolError
from .graph_errors import failed_node, log_failure
from .nodes import ForgetValues, NodeInterface, forget_values
from .protocol import Message
from .records import ErrorRecord, detach
from .stats import DataAge, SourceStats
from .train import Train

__all__ = ["SourceStats", "from_karabo_bridge"]

logger = logging.getLogger(__name__)

_CLIENT_COUNTERS = ("bytes", "gaps", "decode_errors", "timeouts", "reconnects", "dropped")


@Stream.register_api(staticmethod)
class from_karabo_bridge(EmitsTrains, ForgetValues, NodeInterface, Source):
    """Emit the trains of a Karabo bridge as :class:`kb_streams.Train` records.

    Parameters
    ----------
    endpoint
        ZeroMQ endpoint of the bridge, e.g. ``'tcp://exflonc12:45000'``. A list of endpoints
        reads each and joins them by train ID into one :class:`Train` per train
        (:func:`kb_streams.join_stream.from_karabo_bridges`).
    sock
        ``'REQ'`` (the bridge's REP socket; the default), ``'SUB'`` (PUB) or ``'PULL'`` (PUSH).
    timeout
        Seconds without a train before the client gives up waiting (``stats.timeouts``); with
        REQ it then abandons the request and asks again (``stats.reconnects``), which recovers
        from a server that died holding it. Keep it well above the time one train takes to arrive
        (about 1 s for 1.4 GB). ``None`` waits forever. It does not delay :meth:`stop`.
    prefetch
        REQ only: requests the client keeps outstanding while the graph works on a train.
    max_in_flight
        Cap on trains anywhere in the graph at once (in buffers, partitions, Dask), counted from
        emit until the train's last reference leaves the graph. ``None``: no cap beyond
        the graph's own back-pressure. A ``sliding_window(n)`` or ``partition(n)`` holds the
        references of its ``n`` items, so the cap must be larger than ``n``.
    latest
        Keep only the newest waiting train and drop older ones (counted in ``stats.dropped``).
        Default: ``True`` for ``'SUB'``, ``False`` otherwise.
    forget
        Make every node of the graph forget the last item it emitted
        (:func:`kb_streams.nodes.forget_values`) when the source starts, so that finished trains
        are freed at once.
    start
        Start receiving at once. Usually connect the graph first, then call :meth:`start`.
    asynchronous, loop, stream_name
        As for any streamz node: ``asynchronous=True`` runs on the running asyncio loop; by
        default streamz's own event-loop thread is used.
    **client_kwargs
        Passed on to :class:`kb_streams.client.AsyncClient` (e.g. ``hwm``, ``context``).

    Notes
    -----
    * The node waits for every awaitable the graph returns before asking for the next train, so
      back-pressure from ``buffer``, Dask ``gather`` or async sinks reaches the bridge.
    * A train that cannot be decoded, or for which a node raises, is counted, logged with its train
      ID and skipped: the stream goes on. A restarted server on the same endpoint is picked up
      without rebuilding the graph.
    * ``source.stats`` holds the counters (:class:`SourceStats`); ``source.errors`` emits an
      :class:`~kb_streams.records.ErrorRecord` per train that could not be decoded or for which
      the graph raised; ``source.finished`` (a :class:`~kb_streams.nodes.Finished` event) is set
      once it has stopped and its trains have left the graph (``source.join(timeout)``).

    Examples
    --------
    From a script (streamz runs the source in its own event-loop thread):

    >>> from streamz import Stream
    >>> import kb_streams
    >>> source = Stream.from_karabo_bridge("tcp://127.0.0.1:45000")  # doctest: +SKIP
    >>> ids = source.map(lambda train: train.train_id).sink_to_list()  # doctest: +SKIP
    >>> source.start()  # doctest: +SKIP
    >>> source.stop(); source.join(timeout=2)  # doctest: +SKIP

    Inside a running asyncio loop:

    >>> async def main():  # doctest: +SKIP
    ...     source = Stream.from_karabo_bridge(endpoint, sock="SUB", asynchronous=True)
    ...     source.map(analyse).sink(show)
    ...     source.start()
    """

    def __new__(cls, endpoint: str | list[str] = "", *args: Any, **kwargs: Any) -> Any:
        if isinstance(endpoint, list | tuple):  # several bridges: one merged Train per train ID
            from .join_stream import from_karabo_bridges
            return from_karabo_bridges(endpoint, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        endpoint: str,
        sock: str = "REQ",
        *,
        timeout: float | None = 5.0,
        prefetch: int = 1,
        max_in_flight: int | None = None,
        latest: bool | None = None,
        forget: bool = True,
        start: bool = False,
        asynchronous: bool | None = None,
        loop: Any = None,
        stream_name: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        sock = sock.upper()
        if sock not in ("REQ", "SUB", "PULL"):
            raise ValueError(f"sock must be 'REQ', 'SUB' or 'PULL', not {sock!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be None or a number of seconds > 0, not {timeout!r}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None, not {max_in_flight!r}")
        # a subclass reading something else than a bridge (a recorded run) names it its own way
        opens_a_bridge = type(self)._open_client is from_karabo_bridge._open_client
        self.endpoint = check_endpoint(endpoint) if opens_a_bridge else endpoint
        self.sock = sock
        self.timeout = timeout
        self.prefetch = prefetch
        self.max_in_flight = max_in_flight
        self.latest = (sock == "SUB") if latest is None else bool(latest)
        self.forget = forget
        self.client_kwargs = client_kwargs
        self._stats = SourceStats()
        self._client: AsyncClient | None = None
        self._in_flight = 0
        self._generation = 0
        self._lock: asyncio.Lock | None = None
        self._waiting: asyncio.Future | None = None
        self._age = DataAge()
        super().__init__(start=False, asynchronous=asynchronous, loop=loop,
                         stream_name=stream_name)
        self._init_interface(stream_name or "from_karabo_bridge")
        if start:
            self.start()

    # -- public -----------------------------------------------------------------------------

    @property
    def stats(self) -> SourceStats:
        """A snapshot of the counters (:class:`SourceStats`)."""
        stats = SourceStats(**{f.name: getattr(self._stats, f.name) for f in fields(SourceStats)})
        client = self._client
        if client is not None:
            live = client.stats
            for name in _CLIENT_COUNTERS:
                setattr(stats, name, getattr(stats, name) + getattr(live, name, 0))
            stats.protocol_version = (getattr(live, "protocol_version", None)
                                      or stats.protocol_version)
        stats.in_flight = self._in_flight
        return stats

    def start(self) -> None:
        """Start receiving (again); does nothing while running. Thread-safe."""
        if self.stopped:
            if self.forget:
                forget_values(self)
            self.finished.clear()
            self._generation += 1
        super().start()

    def stop(self) -> None:
        """Stop receiving; a wait for the next train is interrupted at once. Thread-safe.

        Trains already in the graph go on; :meth:`join` waits for them.
        """
        if not self.stopped:
            self.stopped = True
            self.loop.add_callback(self._interrupt)

    def _interrupt(self) -> None:
        task = self._waiting
        if task is not None and not task.done():
            task.cancel()

    # -- the receive loop -------------------------------------------------------------------

    async def run(self) -> None:
        generation = self._generation
        async with self._run_lock():  # a restart waits for the previous run to wind down
            ended = False
            try:
                semaphore = (asyncio.Semaphore(self.max_in_flight)
                             if self.max_in_flight is not None else None)
                self._client = self._open_client()
                try:
                    while not self.stopped and generation == self._generation:
                        await self._step(semaphore)
                    await self._drain()
                finally:
                    self._close_client()
                ended = True
            except Exception:
                logger.exception("Bridge source %s (%s) failed and stopped",
                                 self.endpoint, self.sock)
            finally:
                if generation == self._generation:
                    if not ended:
                        self.stopped = True  # so that start() can run it again
                    self.finished.set()

    def _open_client(self) -> AsyncClient:
        """Where the trains come from (the recorded-run source reads a run instead)."""
        return AsyncClient(self.endpoint, sock=self.sock, timeout=self.timeout,
                           prefetch=self.prefetch, **self.client_kwargs)

    def _run_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _step(self, semaphore: asyncio.Semaphore | None) -> None:
        message = await self._receive()
        if message is None:
            return
        try:
            train = Train.from_message(message)
        except Exception as exc:
            self._stats.decode_errors += 1
            logger.warning("Skipped train %s from %s: %s", message.train_id, self.endpoint, exc)
            await self._record(message.train_id, exc, "could not decode the train")
            return
        finally:
            del message
        if semaphore is not None and not await self._interruptible(semaphore.acquire()):
            return  # stopped while waiting for room in the graph: the train is not emitted
        ticket = InFlightTicket(self, semaphore)
        self._count(train)
        train_id = train.train_id
        awaitables, failures = self._emit_train(train, ticket)
        del train
        if awaitables:
            results = await asyncio.gather(*awaitables, return_exceptions=True)
            failures += [r for r in results if isinstance(r, BaseException)]
            del results
        if failures:
            await self._downstream_error(train_id, failures)
            ticket.release()

    async def _interruptible(self, awaitable: Any) -> Any:
        """Await ``awaitable``, or give up (returning None) when :meth:`stop` is called."""
        self._waiting = asyncio.ensure_future(awaitable)
        if self.stopped:  # stop() came while no wait was pending: nothing else will cancel it
            self._waiting.cancel()
        try:
            return await self._waiting
        except asyncio.CancelledError:
            if self.stopped:  # cancelled by stop()
                return None
            raise
        finally:
            self._waiting = None

    async def _receive(self) -> Message | None:
        """The next train to emit, or None (timeout, bad message, stopped)."""
        try:
            message = await self._interruptible(self._client.next_message(latest=self.latest))
        except TimeoutError:
            return None
        except ProtocolError as exc:
            await self._skipped(exc)
            return None
        return message

    async def _skipped(self, exc: ProtocolError) -> None:
        where = f"train {exc.train_id}" if exc.train_id is not None else "a message"
        logger.warning("Skipped %s from %s: %s", where, self.endpoint, exc)
        await self._record(exc.train_id, exc, "could not decode the message")

    async def _record(self, train_id: int | None, exc: BaseException, reason: str,
                      node: str = "from_karabo_bridge") -> None:
        """One failure on ``errors`` (already logged and counted)."""
        text, exc = detach(exc)
        await self._report_async(ErrorRecord(train_id, node, exc, text, reason=reason,
                                             endpoint=self.endpoint), log=False)

    async def _downstream_error(self, train_id: int | None,
                                failures: list[BaseException]) -> None:
        self._stats.errors += 1
        for exc in failures:
            # log the traceback as text; the record drops it: it would keep the train's arrays alive
            log_failure(logger, train_id, self.endpoint, exc)
            await self._record(train_id, exc, "a node of the graph raised", node=failed_node(exc))

    def _count(self, train: Train) -> None:
        stats = self._stats
        stats.trains += 1
        stats.last_train_id = train.train_id
        age = self._age
        age.observe(train.age)
        stats.age_last, stats.age_mean, stats.age_max = age.last, age.mean, age.max

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        live = client.stats
        for name in _CLIENT_COUNTERS:
            setattr(self._stats, name, getattr(self._stats, name) + getattr(live, name, 0))
        self._stats.protocol_version = (getattr(live, "protocol_version", None)
                                        or self._stats.protocol_version)
        client.close()
