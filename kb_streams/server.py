"""A Karabo bridge server: publishes trains over REP, PUB or PUSH for any bridge client to read.

Used by the simulator, by pipelines that re-publish their results, and by tests. Trains come from an
iterable (``serve``/``start``/``serve_async``) or are pushed in one by one with ``feed`` through a
bounded queue. Each item is a ``(data, meta)`` tuple, a bare ``data`` dict (metadata taken from
``data[src]['metadata']``), or a list of already encoded message parts, which is sent as it is.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from .endpoints import check_endpoint
from .protocol import encode

__all__ = ["BridgeServer", "ServerStats"]

log = logging.getLogger(__name__)

SOCKET_TYPES = {"REP": zmq.REP, "PUB": zmq.PUB, "PUSH": zmq.PUSH}
PROTOCOL_VERSIONS = ("2.2", "1.0")
DEFAULT_ENDPOINT = "tcp://127.0.0.1:0"

_POLL_MS = 20  # every wait wakes this often to notice stop(): stopping takes at most ~this long
_REP_SNDHWM = 64  # replies a REP socket may queue: bounded by the requests outstanding
_RATE_WINDOW = 2.0  # seconds of history behind ServerStats.rate
_STOP = object()


@dataclass
class ServerStats:
    """Counters of a :class:`BridgeServer`, updated as it sends.

    Attributes
    ----------
    trains
        Trains handed to ZeroMQ (with PUB, a train no subscriber could take is still counted).
    bytes
        Total size of the message parts of those trains.
    bad_requests
        REP requests other than ``b'next'``; each got an ``b'Error: bad request ...'`` reply.
    skipped
        Items that could not be encoded, or encoded to an empty message; each was logged.
    last_train_id
        Train ID of the last train sent, when it had one.

    Examples
    --------
    >>> stats = ServerStats()
    >>> stats.record(1_000_000, train_id=10_000_000_000, now=100.0)
    >>> stats.record(1_000_000, train_id=10_000_000_001, now=100.1)
    >>> stats.trains, stats.bytes, round(stats.rate(now=100.1), 1)
    (2, 2000000, 10.0)
    """

    trains: int = 0
    bytes: int = 0
    bad_requests: int = 0
    skipped: int = 0
    last_train_id: int | None = None

    def __post_init__(self) -> None:  # not fields: asdict() and copies see counters only
        self._history: deque[tuple[float, int]] = deque(maxlen=1024)  # (time, bytes so far)
        self._lock = threading.Lock()

    def record(self, nbytes: int, train_id: int | None = None, now: float | None = None) -> None:
        """Count one sent train of *nbytes* bytes."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.trains += 1
            self.bytes += nbytes
            if train_id is not None:
                self.last_train_id = train_id
            self._history.append((now, self.bytes))

    def _recent(self, now: float | None) -> list[tuple[float, int]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            return [entry for entry in self._history if entry[0] >= now - _RATE_WINDOW]

    def rate(self, now: float | None = None) -> float:
        """Trains per second over the last couple of seconds (0 when idle)."""
        recent = self._recent(now)
        if len(recent) < 2 or recent[-1][0] == recent[0][0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1][0] - recent[0][0])

    def byte_rate(self, now: float | None = None) -> float:
        """Bytes per second over the last couple of seconds (0 when idle)."""
        recent = self._recent(now)
        if len(recent) < 2 or recent[-1][0] == recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


class _Pacer:
    """Absolute schedule of send times at *rate* Hz, so pacing does not drift."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be >= 0 Hz, not {rate}")
        self.period = 1.0 / rate if rate else 0.0
        self.due: float | None = None

    def delay(self, now: float) -> float:
        """Seconds to wait before the next train; call once per train."""
        if not self.period:
            return 0.0
        if self.due is None or now - self.due > self.period:
            self.due = now  # first train, or fell behind: restart rather than burst to catch up
        wait = max(self.due - now, 0.0)
        self.due += self.period
        return wait


# The I/O steps the serving loop (BridgeServer._serving) yields; each says what its driver sends
# back. Every wait is at most _POLL_MS long, so the loop notices stop() in time.


@dataclass(frozen=True)
class _Sleep:
    """Sleep *seconds* (at most _POLL_MS); sent back: anything."""

    seconds: float


@dataclass(frozen=True)
class _Poll:
    """Poll the socket for *event* for at most _POLL_MS; sent back: whether it is ready."""

    event: int


@dataclass(frozen=True)
class _NextItem:
    """Take the next item to serve; sent back: the item, or _STOP when there is none."""


@dataclass(frozen=True)
class _Receive:
    """Receive a request (REP); sent back: its frames."""


@dataclass(frozen=True)
class _Reply:
    """Send a one-frame reply (REP); sent back: anything."""

    message: bytes


@dataclass(frozen=True)
class _Send:
    """Send a train without blocking; sent back: False if there was no room (zmq.Again)."""

    frames: list[Any]


_NEXT_ITEM = _NextItem()
_RECEIVE = _Receive()
_Step = _Sleep | _Poll | _NextItem | _Receive | _Reply | _Send
_T = TypeVar("_T")
_Steps = Generator[_Step, Any, _T]


def _normalise_endpoint(endpoint: str | int | None) -> str:
    if endpoint is None:
        return DEFAULT_ENDPOINT
    return check_endpoint(endpoint, bind=True)


def _train_id(data: Mapping[str, Any], meta: Mapping[str, Any] | None) -> int | None:
    if meta:
        sources = meta.values()
    else:
        sources = (values.get("metadata") for values in data.values()
                   if isinstance(values, Mapping))
    for source_meta in sources:
        if isinstance(source_meta, Mapping) and source_meta.get("timestamp.tid") is not None:
            try:
                return int(source_meta["timestamp.tid"])
            except (TypeError, ValueError):
                return None
    return None


def _nbytes(frames: list[Any]) -> int:
    return sum(memoryview(frame).nbytes for frame in frames)


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
        socket's send HWM is at least 64: it holds only replies readers asked for, and at 1 it
        would drop replies to a reader with several requests out (prefetch).
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
        endpoint = _normalise_endpoint(endpoint)
        self.sock = sock_name
        self.protocol_version = protocol_version
        self.dummy_timestamps = dummy_timestamps
        self.stats = ServerStats()
        self.error: BaseException | None = None

        self._linger_ms = 0
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        # One socket, two views: the asyncio socket owns it (closing it also unhooks it from an
        # event loop); serve() and start() use a plain shadow of it.
        self._asocket = zmq.asyncio.Socket(self._context, SOCKET_TYPES[sock_name])
        self._socket = zmq.Socket.shadow(self._asocket.underlying)
        try:
            self._socket.linger = 0
            self._socket.set_hwm(hwm)
            if sock_name == "REP":
                # REP answers only requests, so its send queue never holds more than the readers
                # have asked for; but at HWM 1 it silently drops a reply to a reader that asked
                # for more than one train at a time (a DEALER, or our Client with prefetch).
                self._socket.sndhwm = max(hwm, _REP_SNDHWM)
            self._socket.bind(_normalise_endpoint(endpoint))
        except zmq.ZMQError as exc:
            self._release()
            raise zmq.ZMQError(
                exc.errno, f"cannot bind {_normalise_endpoint(endpoint)}: {exc}") from None
        bound = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._endpoint = bound.replace("0.0.0.0", socket.gethostname())

        self._queue: queue.Queue = queue.Queue(maxsize=maxlen)
        self._stopping = threading.Event()
        self._state = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._loop_thread: int | None = None  # ident of the thread running a serving loop
        self._feeding = False  # the running loop serves the feed() queue
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._close_pending = False
        self._closed = False

    # -- properties --------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint actually bound (with the real port when port 0 was asked for)."""
        return self._endpoint

    @property
    def running(self) -> bool:
        """Whether a serving loop is running (in any thread or task)."""
        return self._loop_thread is not None

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
            elif not self._feeding:
                raise RuntimeError(f"bridge server {self.endpoint} is serving an iterable, "
                                   "not the feed() queue")
        item = (data, meta) if isinstance(data, Mapping) else data
        self._queue.put(item, block=block, timeout=timeout)

    def _queued_items(self) -> Iterator[Any]:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_MS / 1000)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            yield item
            del item  # not kept while waiting for the next one

    # -- preparing a train -------------------------------------------------------------------

    def _prepare(self, item: Any) -> tuple[list[Any], int | None] | None:
        """Message parts and train ID for one item, or None (logged) if it cannot be sent."""
        if isinstance(item, tuple):
            data, meta = (item + (None,))[:2]
        elif isinstance(item, Mapping):
            data, meta = item, None
        else:
            frames = list(item)
            if not frames:
                self._skip("an empty list of message parts")
                return None
            return frames, None
        train_id = _train_id(data, meta)
        try:
            frames = encode(data, meta, protocol_version=self.protocol_version,
                            dummy_timestamps=self.dummy_timestamps)
        except Exception as exc:  # a bad train must not take the server down
            self._skip(f"train {train_id}: cannot encode: {exc}")
            return None
        if not frames:
            self._skip(f"train {train_id}: no sources to send")
            return None
        return frames, train_id

    def _skip(self, why: str) -> None:
        self.stats.skipped += 1
        log.warning("Bridge server %s skipped %s", self.endpoint, why)

    def _bad_request(self, request: list[bytes]) -> bytes:
        self.stats.bad_requests += 1
        text = b" ".join(request)[:200]
        log.warning("Bridge server %s: bad request %r (expected b'next')", self.endpoint, text)
        return b"Error: bad request " + text

    # -- the serving decisions, free of I/O --------------------------------------------------

    def _serving(self, trains: int | None, rate: float | None) -> _Steps[int]:
        """The serving loop: yields each I/O step it needs and is sent back the outcome.

        It decides everything (pacing, waiting for a reader, taking, preparing, sending and
        counting trains, noticing :meth:`stop`); :meth:`_drive` and :meth:`_drive_async` only do
        the I/O. Returns the number of trains sent.
        """
        pacer = _Pacer(rate)
        sent = 0
        ready = False  # a reader can take a train now (REP: its b'next' is waiting)
        while (trains is None or sent < trains) and not self._stopping.is_set():
            if not (yield from self._pause(pacer.delay(time.monotonic()))):
                break
            # take a train only once a reader can have it, so it leaves fresh (REP, PUSH)
            if not ready and not (yield from self._await_reader()):
                break
            ready = True
            item = yield _NEXT_ITEM
            if item is _STOP:
                break
            prepared = self._prepare(item)
            if prepared is None:
                continue
            frames, train_id = prepared
            if not (yield from self._send(frames)):
                break
            ready = False
            self.stats.record(_nbytes(frames), train_id)
            sent += 1
            # ZeroMQ holds the frames until they are out; holding the train here too would keep
            # it alive while the producer makes (and the reader waits for) the next one
            del item, prepared, frames
        return sent

    def _pause(self, seconds: float) -> _Steps[bool]:
        """Let *seconds* pass; False if stopped first."""
        end = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            yield _Sleep(min(remaining, _POLL_MS / 1000))
        return False

    def _await_reader(self) -> _Steps[bool]:
        """Wait until a reader can take a train; False if stopped first.

        REP: until a ``b'next'`` request comes (any other request gets an error reply). PUSH:
        until there is room. PUB: no wait.
        """
        if self.sock == "PUSH":
            return (yield from self._poll(zmq.POLLOUT))
        if self.sock == "PUB":
            return True
        while (yield from self._poll(zmq.POLLIN)):
            request = yield _RECEIVE
            if request == [b"next"]:
                return True
            yield _Reply(self._bad_request(request))
        return False

    def _send(self, frames: list[Any]) -> _Steps[bool]:
        """Send one train; False if stopped while waiting for room (PUSH)."""
        while not (yield _Send(frames)):  # the PUSH reader went away since the poll
            if not (yield from self._poll(zmq.POLLOUT)):
                return False
        return True

    def _poll(self, event: int) -> _Steps[bool]:
        """Wait until the socket is ready for *event*; False if stopped first."""
        while not self._stopping.is_set():
            if (yield _Poll(event)):
                return True
        return False

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
        with _ServingGuard(self, feeding=iterable is None):
            return self._serve_loop(iterable, trains, rate)

    def _serve_loop(self, iterable: Iterable[Any] | None, trains: int | None,
                    rate: float | None) -> int:
        items = iter(iterable) if iterable is not None else self._queued_items()
        return self._drive(self._serving(trains, rate), items)

    def _drive(self, steps: _Steps[int], items: Iterator[Any]) -> int:
        """Perform the I/O *steps* ask for, in this thread; returns what they return."""
        sock = self._socket
        outcome: Any = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            match step:
                case _Sleep(seconds):
                    outcome = self._stopping.wait(seconds)
                case _Poll(event):
                    outcome = sock.poll(_POLL_MS, event)
                case _NextItem():
                    outcome = next(items, _STOP)
                case _Receive():
                    outcome = sock.recv_multipart()
                case _Reply(message):
                    outcome = sock.send(message)
                case _Send():  # not bound to a name here: it would keep the train alive
                    try:
                        sock.send_multipart(step.frames, copy=False, flags=zmq.NOBLOCK)
                        outcome = True
                    except zmq.Again:
                        outcome = False

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
        ready = threading.Event()
        refused: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run_thread, args=(iterable, trains, rate, ready, refused),
            name="BridgeServer", daemon=True,
        )
        self._thread.start()
        ready.wait()
        if refused:
            raise refused[0]
        return self

    def _run_thread(self, iterable: Iterable[Any] | None, trains: int | None,
                    rate: float | None, ready: threading.Event,
                    refused: list[BaseException]) -> None:
        guard = _ServingGuard(self, feeding=iterable is None)
        try:
            guard.__enter__()
        except BaseException as exc:
            refused.append(exc)
            return
        finally:
            ready.set()
        try:
            self._serve_loop(iterable, trains, rate)
        except BaseException as exc:
            self.error = exc
            log.exception("Bridge server stopped on an error")
        finally:
            guard.__exit__()

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
        with _ServingGuard(self, feeding=iterable is None):
            if iterable is None:
                items: AsyncIterator[Any] = self._queued_items_async()
            elif isinstance(iterable, AsyncIterable):
                items = aiter(iterable)
            else:
                items = _async_iter(iterable)
            return await self._drive_async(self._serving(trains, rate), items)

    async def _queued_items_async(self) -> AsyncIterator[Any]:
        while not self._stopping.is_set():
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                await asyncio.sleep(_POLL_MS / 1000)

    async def _drive_async(self, steps: _Steps[int], items: AsyncIterator[Any]) -> int:
        """Perform the I/O *steps* ask for, in this asyncio loop; returns what they return."""
        asock = self._asocket
        outcome: Any = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
            match step:
                case _Sleep(seconds):
                    outcome = await asyncio.sleep(seconds)
                case _Poll(event):
                    outcome = await asock.poll(_POLL_MS, event)
                case _NextItem():
                    outcome = await anext(items, _STOP)
                case _Receive():
                    outcome = await asock.recv_multipart()
                case _Reply(message):
                    outcome = await asock.send(message)
                case _Send():  # not bound to a name here: it would keep the train alive
                    try:
                        await asock.send_multipart(step.frames, copy=False, flags=zmq.NOBLOCK)
                        outcome = True
                    except zmq.Again:
                        outcome = False

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
        self._stopping.set()
        with self._state:
            if self._closed or self._close_pending:
                return
            self._close_pending = True
            self._linger_ms = -1 if linger is None else int(linger * 1000)
            release_here = self._loop_thread is None
            if release_here:
                self._closed = True
            elif self._loop_thread == threading.get_ident():
                return  # serve_async in this very thread: it releases the socket as it unwinds
        if release_here:
            self._release()
        else:
            self._idle.wait()  # the serving loop notices within _POLL_MS and releases the socket
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        while True:  # drop queued references to (possibly large) trains
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def _release(self) -> None:
        self._asocket.close(linger=self._linger_ms)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("serving" if self.running else "idle")
        return (f"<BridgeServer {self.sock} {self.protocol_version} "
                f"{self.endpoint} {state}, {self.stats.trains} trains sent>")


class _ServingGuard:
    """Marks the server busy for one serving loop; releases the socket if closed meanwhile."""

    def __init__(self, server: BridgeServer, feeding: bool) -> None:
        self.server = server
        self.feeding = feeding

    def __enter__(self) -> None:
        server = self.server
        with server._state:
            if server._closed or server._close_pending:
                raise RuntimeError("the bridge server is closed")
            if server._loop_thread is not None:
                raise RuntimeError(f"bridge server {server.endpoint} is already serving")
            server._loop_thread = threading.get_ident()
            server._feeding = self.feeding
            server._stopping.clear()
            server._idle.clear()

    def __exit__(self, *exc_info: object) -> None:
        server = self.server
        with server._state:
            server._loop_thread = None
            server._feeding = False
            release = server._close_pending and not server._closed
            if release:
                server._closed = True
        if release:
            server._release()
        server._idle.set()


async def _async_iter(iterable: Iterable[Any]) -> Any:
    for item in iterable:
        yield item
        del item  # not kept while the iterable makes the next one
