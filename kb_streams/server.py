"""A Karabo bridge server: publishes trains over REP, PUB or PUSH for any bridge client to read.

Used by the simulator, by pipelines that re-publish their results, and by tests. Trains come from an
iterable (``serve``/``start``/``serve_async``) or are pushed in one by one with ``feed`` through a
bounded queue. Each item is a ``(data, meta)`` tuple, a bare ``data`` dict (metadata taken from
``data[src]['metadata']``), or a list of already encoded message parts, which is sent as it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import zmq

from ._drop_queue import DropQueue
from ._server_socket import SOCKET_TYPES, bind_server_socket, normalise_endpoint
from ._server_state import ServingState
from ._serving import (
    Prepared,
    ServingLoop,
    Steps,
    Unsendable,
    async_items,
    drive,
    drive_async,
    prepare,
)
from .stats import ServerStats

__all__ = ["BridgeServer", "ServerStats"]

log = logging.getLogger(__name__)

PROTOCOL_VERSIONS = ("2.2", "1.0")


class BridgeServer:
    """Serve trains over a Karabo bridge socket (REP, PUB or PUSH; protocol 2.2 or 1.0).

    The socket is bound when the server is created, so :attr:`endpoint` is known at once. Trains
    are served from an iterable (:meth:`serve` in this thread, :meth:`start` in a background
    thread, :meth:`serve_async` in an asyncio loop) or, without an iterable, from the bounded queue
    that :meth:`feed` fills. Arrays are sent zero-copy: do not modify them after handing them over.

    A train is taken from the iterable (or queue) only once a reader can have it: with REP when a
    ``b'next'`` request is waiting, with PUSH when there is room. So trains leave fresh (their
    age is not the time spent waiting for a reader), and a finite iterable served over REP is
    found exhausted at the first request after its last train (or at :meth:`stop`).

    Parameters
    ----------
    endpoint
        Where to bind. ``None`` (default) binds ``tcp://127.0.0.1`` on a free port; an int or a
        string of digits binds that port on 127.0.0.1; any other string is used as it is
        (``'tcp://127.0.0.1:45000'``, ``'ipc:///tmp/bridge'``, ``'tcp://*:45000'``).
    sock
        ``'REP'`` (answers each ``b'next'`` request with one train), ``'PUB'`` or ``'PUSH'``.
    protocol_version
        ``'2.2'`` (default) or ``'1.0'``, used to encode ``(data, meta)`` items.
    hwm
        Send and receive high-water mark in messages (1, as the reference server uses). A REP
        socket's send HWM is at least 4, the replies it queues for one reader at most: at 1 it
        would drop replies to a reader with several requests out (prefetch), and a reader that
        asks without reading (a DEALER sending 500 ``b'next'``) pins no more than that many
        trains; ZeroMQ drops the replies beyond. Requests over 64 kB disconnect their sender.
    maxlen
        Capacity of the :meth:`feed` queue.
    dummy_timestamps
        Fill in ``timestamp``, ``timestamp.sec`` and ``timestamp.frac`` where a source has none.
    context
        A ZeroMQ context to use; by default the server makes (and later terminates) its own.

    Examples
    --------
    Serve three trains to any bridge client (ours or ``karabo_bridge.Client``):

    >>> import numpy as np
    >>> from kb_streams.server import BridgeServer
    >>> trains = (({'DET/0': {'image.data': np.zeros((4, 4), np.uint16)}},
    ...            {'DET/0': {'timestamp.tid': tid}}) for tid in range(10_000, 10_003))
    >>> with BridgeServer(sock='PUSH') as server:       # doctest: +SKIP
    ...     print(server.endpoint)
    ...     server.serve(trains, rate=10)
    tcp://127.0.0.1:40213
    3

    Re-publish results from a pipeline, one train at a time:

    >>> server = BridgeServer('tcp://127.0.0.1:45001', sock='PUB').start()   # doctest: +SKIP
    >>> result, meta = {'results': {'mean': 1.5}}, {'results': {'timestamp.tid': 10_000}}
    >>> server.feed(result, meta)                                            # doctest: +SKIP
    >>> server.stop()                                                        # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: str | int | None = None,
        sock: str = "REP",
        *,
        protocol_version: str = "2.2",
        hwm: int = 1,
        maxlen: int = 10,
        dummy_timestamps: bool = False,
        context: zmq.Context | None = None,
    ) -> None:
        sock_name = str(sock).upper()
        if sock_name not in SOCKET_TYPES:
            raise ValueError(f"unsupported server socket {sock!r}: use one of REP, PUB, PUSH")
        if protocol_version not in PROTOCOL_VERSIONS:
            raise ValueError(f"unsupported protocol version {protocol_version!r}: use 2.2 or 1.0")
        endpoint = normalise_endpoint(endpoint)
        self.sock = sock_name
        self.protocol_version = protocol_version
        self.dummy_timestamps = dummy_timestamps
        self.stats = ServerStats()
        self.error: BaseException | None = None

        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        try:
            self._asocket, self._socket, self._endpoint = bind_server_socket(
                self._context, sock_name, endpoint, hwm)
        except zmq.ZMQError:
            if self._own_context:
                self._context.term()
            raise

        self._queue: DropQueue[Any] = DropQueue(maxlen)
        self._state = ServingState(self._release)
        self._stopping = self._state.stopping
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- properties --------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint actually bound (with the real port when port 0 was asked for)."""
        return self._endpoint

    @property
    def running(self) -> bool:
        """Whether a serving loop is running (in any thread or task)."""
        return self._state.running

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` or :meth:`close` was called while serving.

        An iterable that waits for its next item (e.g. on a queue) should check it, so that the
        server can stop promptly.
        """
        return self._stopping.is_set()

    # -- feeding -----------------------------------------------------------------------------

    def feed(
        self,
        data: Mapping[str, Any] | list[Any],
        meta: Mapping[str, Any] | None = None,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Queue one train for sending (served when no iterable is given to ``serve``/``start``).

        Parameters
        ----------
        data
            ``{source: {key: value}}``, or a list of already encoded message parts.
        meta
            ``{source: {'timestamp.tid': ..., ...}}``; by default from ``data[src]['metadata']``.
        block, timeout
            As :meth:`queue.Queue.put`: raise :class:`queue.Full` if there is no room in time.

        Notes
        -----
        If nothing is serving yet, this starts a background thread serving the queue (as
        ``start()`` would). To serve the queue from asyncio, start ``serve_async()`` first.

        Examples
        --------
        >>> with BridgeServer(sock='PUSH') as server:        # doctest: +SKIP
        ...     server.feed({'src': {'value': 1}}, {'src': {'timestamp.tid': 1}}, timeout=5)
        """
        with self._start_lock:
            if not self.running:
                self.start()
            elif not self._state.feeding:
                raise RuntimeError(f"bridge server {self.endpoint} is serving an iterable, "
                                   "not the feed() queue")
        item = (data, meta) if isinstance(data, Mapping) else data
        self._queue.put(item, block=block, timeout=timeout)


    # -- preparing a train -------------------------------------------------------------------

    def _prepare(self, item: Any) -> Prepared | None:
        """Message parts and train ID for one item, or None (logged) if it cannot be sent."""
        try:
            return prepare(item, self.protocol_version, self.dummy_timestamps)
        except Unsendable as exc:  # a bad train must not take the server down
            self.stats.skipped += 1
            log.warning("Bridge server %s skipped %s", self.endpoint, exc)
            return None

    def _bad_request(self, request: list[bytes]) -> bytes:
        self.stats.bad_requests += 1
        text = b" ".join(request)[:200]
        log.warning("Bridge server %s: bad request %r (expected b'next')", self.endpoint, text)
        return b"Error: bad request " + text

    def _serving(self, trains: int | None, rate: float | None) -> Steps[int]:
        """The serving loop's steps (see :class:`kb_streams._serving.ServingLoop`)."""
        loop = ServingLoop(self.sock, self._stopping, self._prepare, self._bad_request,
                           self.stats)
        return loop.run(trains, rate)

    # -- serving in this thread --------------------------------------------------------------

    def serve(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        trains: int | None = None,
        rate: float | None = None,
    ) -> int:
        """Send trains from *iterable* (or the :meth:`feed` queue) in the calling thread.

        Returns when the iterable is exhausted, *trains* trains were sent, or :meth:`stop` is
        called from another thread.

        Parameters
        ----------
        iterable
            Items to send (see the module docstring); ``None`` serves what :meth:`feed` queues.
        trains
            Stop after sending this many trains.
        rate
            Pace sending at this many trains per second; ``None`` or 0 sends as fast as possible.

        Returns
        -------
        int
            The number of trains sent.

        Examples
        --------
        >>> server = BridgeServer(sock='PUSH')       # doctest: +SKIP
        >>> server.serve(simulate('AGIPD-modules'), trains=100, rate=10)   # doctest: +SKIP
        100
        """
        with self._state.serving(iterable is None, self.endpoint):
            return self._serve_loop(iterable, trains, rate)

    def _serve_loop(self, iterable: Iterable[Any] | None, trains: int | None,
                    rate: float | None) -> int:
        items = iter(iterable) if iterable is not None else self._queue.items(self._stopping)
        return drive(self._serving(trains, rate), self._socket, items, self._stopping)

    # -- serving in a background thread ------------------------------------------------------

    def start(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        trains: int | None = None,
        rate: float | None = None,
    ) -> BridgeServer:
        """Serve in a background thread (arguments as :meth:`serve`); returns the server.

        Examples
        --------
        >>> server = BridgeServer(sock='REP')                        # doctest: +SKIP
        >>> server.start(simulate('AGIPD-modules'), rate=10)         # doctest: +SKIP
        >>> server.stop()                                            # doctest: +SKIP
        """
        if self.running:
            raise RuntimeError(f"bridge server {self.endpoint} is already serving")
        self.error = None
        self._thread = self._state.start_thread(
            iterable is None, self.endpoint, lambda: self._serve_loop(iterable, trains, rate),
            self._thread_failed)
        return self

    def _thread_failed(self, exc: BaseException) -> None:
        self.error = exc
        log.exception("Bridge server stopped on an error")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background thread to finish; True if it has (re-raises its error)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            raise self.error
        return True

    def stop(self) -> None:
        """Stop serving (within ~20 ms, even while waiting for a client) and close the socket.

        Queued but unsent :meth:`feed` items are discarded.
        """
        self.close()

    # -- serving in an asyncio loop ----------------------------------------------------------

    async def serve_async(
        self,
        iterable: Iterable[Any] | AsyncIterable[Any] | None = None,
        *,
        trains: int | None = None,
        rate: float | None = None,
    ) -> int:
        """Like :meth:`serve`, but in an asyncio loop (zmq.asyncio); accepts async iterables.

        Cancelling the task, or calling :meth:`stop`, ends it promptly.

        Examples
        --------
        >>> async def main():                                   # doctest: +SKIP
        ...     server = BridgeServer(sock='PUB')
        ...     try:
        ...         await server.serve_async(simulate('AGIPD-modules'), rate=10)
        ...     finally:
        ...         server.close()
        """
        with self._state.serving(iterable is None, self.endpoint):
            if iterable is None:
                items: AsyncIterator[Any] = self._queue.aitems(self._stopping)
            elif isinstance(iterable, AsyncIterable):
                items = aiter(iterable)
            else:
                items = async_items(iterable)
            return await drive_async(self._serving(trains, rate), self._asocket, items)

    # -- closing -----------------------------------------------------------------------------

    def close(self, linger: float | None = 0) -> None:
        """Stop serving and release the socket (and the context, if the server made it).

        Parameters
        ----------
        linger
            Seconds to keep trying to deliver trains already handed to ZeroMQ (``None``: until
            delivered). Use a little linger after a finite ``serve`` with PUSH or REP, so the last
            train reaches its reader. Trains still in the :meth:`feed` queue are dropped.
        """
        if not self._state.close(-1 if linger is None else int(linger * 1000)):
            return
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._queue.close()  # drop queued references to (possibly large) trains

    def _release(self, linger_ms: int) -> None:
        self._asocket.close(linger=linger_ms)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._state.closed else ("serving" if self.running else "idle")
        return (f"<BridgeServer {self.sock} {self.protocol_version} "
                f"{self.endpoint} {state}, {self.stats.trains} trains sent>")
