"""Everything :class:`~kb_streams.Client` and :class:`~kb_streams.AsyncClient` share.

The core owns the ZeroMQ sockets and does all socket I/O itself, always non-blocking. The only
thing a transport adds is *waiting* for the sockets to become readable: ``zmq.zmq_poll`` for the
sync client, ``zmq.asyncio.Poller`` for the async one. So requests, prefetch, recovery, decoding
and counters are written once (the httpx pattern: one core, two thin transports).

How 'REQ' works
---------------
The reference client uses a REQ socket. A REQ socket whose request was taken by a server that then
died stays in its "waiting for a reply" state forever: every later ``next()`` times out, even once a
healthy server is back (protocol.md §2). We speak the same wire protocol with a DEALER socket
instead. It sends ``[b'', b'next']``, exactly the bytes a REQ socket puts on the wire, so any REP
(or ROUTER) server answers it, and the reply comes back as ``[b'', part, ...]``. DEALER has no
lock-step state, so we count the requests in flight ourselves, which gives:

* **recovery**: when a wait times out, or the socket monitor reports that the connection dropped
  while requests were outstanding, those requests are abandoned: the socket is closed and a new one
  connected (``stats.reconnects``). A late reply to an abandoned request therefore can never be
  mistaken for the answer to a new one, and a restarted server gets a fresh request. This also
  works with ``timeout=None``: a server that dies holding the request is noticed by the monitor.
  Replies that had fully arrived before the disconnect (a server sends its last trains and
  exits) are taken off the old socket first and handed out in order: a reconnect never discards
  a complete train, and only requests still unanswered are abandoned.
  As the reference documents, a timeout shorter than the transfer time of one train means never
  getting data; with us the transfer is restarted rather than resumed.
* **prefetch**: with ``prefetch=N`` a new request is sent as soon as a train arrives, so N-1
  requests travel while the caller works on the train it got. At most ``max(1, N-1)`` requests are
  ever in flight, so at most N trains are held in memory at once (the caller's one included).
  Each REP server answers its requests one by one, in order, so replies cannot overtake each
  other. Should a reply ever be lost, the timeout recovers.

Keep-newest
-----------
``latest=True`` on a REQ client drains the replies already queued. On a SUB or PULL client the
first ``latest=True`` call hands the socket to a :class:`~kb_streams._newest.NewestReceiver`:
from then on a thread reads every train as it arrives and keeps only the newest, so the queues
upstream never fill with stale trains, and every call (``latest`` or not) gets that newest train.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._malloc import keep_for_trains_of, tune_malloc_once
from ._newest import NewestReceiver
from ._recv_bounded import TooManyParts, recv_parts
from .endpoints import check_endpoint
from .errors import ProtocolError
from .protocol import DEFAULT_LIMITS, Limits, Message, decode
from .stats import StreamStats

log = logging.getLogger(__name__)

SOCKET_TYPES = {"REQ": zmq.DEALER, "SUB": zmq.SUB, "PULL": zmq.PULL}
REQUEST = [b"", b"next"]
# Upper bound on replies drained by one REQ ``latest=True`` call.
MAX_DRAIN = 10_000

_monitor_ids = itertools.count()


class _Resources:
    """The ZeroMQ objects of one client: its sockets, and its context when it created it."""

    def __init__(self, context: zmq.Context | None) -> None:
        self.owns_context = context is None
        self.context = zmq.Context() if context is None else context
        self.socket: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.newest: NewestReceiver | None = None

    def close_sockets(self) -> None:
        if self.newest is not None:
            self.newest.close()  # first: its thread reads the data socket
            self.newest = None
        if self.monitor is not None:
            if self.socket is not None and not self.socket.closed:
                try:
                    self.socket.disable_monitor()
                except zmq.ZMQError:
                    pass
            self.monitor.close(linger=0)
            self.monitor = None
        if self.socket is not None:
            self.socket.close(linger=0)  # kept, closed: ``Client._socket.closed`` is public API

    def close(self) -> None:
        self.close_sockets()
        if self.owns_context and not self.context.closed:
            self.context.term()


class ClientCore:
    """Socket state machine behind both clients (not public; see the module docstring)."""

    def __init__(self, endpoint: str, sock: str, ser: str, timeout: float | None,
                 context: zmq.Context | None, prefetch: int, hwm: int,
                 limits: Limits | None) -> None:
        """The client's options, as :class:`~kb_streams.Client` takes them (defaults there)."""
        if ser != "msgpack":
            raise NotImplementedError(f"Only serialization supported is msgpack, not {ser!r}")
        if sock not in SOCKET_TYPES:
            raise NotImplementedError(f"Unsupported socket: {sock}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout!r}")
        if int(prefetch) != prefetch or prefetch < 1:
            raise ValueError(f"prefetch must be an integer >= 1, not {prefetch!r}")
        if int(hwm) != hwm or hwm < 0:
            raise ValueError(f"hwm must be an integer >= 0, not {hwm!r}")

        tune_malloc_once()
        self.endpoint = check_endpoint(endpoint)
        self.sock = sock
        self.timeout = timeout
        self.timeout_ms = None if timeout is None else int(timeout * 1000)
        self.prefetch = int(prefetch)
        self.hwm = int(hwm)
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self.stats = StreamStats()
        self.in_flight = 0
        # complete replies taken off a socket about to be replaced, oldest first
        self._arrived: deque[list[zmq.Frame]] = deque()
        self.closed = False
        self._zmq = _Resources(context)
        # Close the sockets (and our own context) even when the client is dropped unclosed in a
        # reference cycle: pyzmq's own finalizers would then hang in Context.term(). Not at exit,
        # where another (daemon) thread may still be using the socket.
        self._finalizer = weakref.finalize(self, self._zmq.close)
        self._finalizer.atexit = False
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @property
    def context(self) -> zmq.Context:
        return self._zmq.context

    @property
    def socket(self) -> zmq.Socket | None:
        return self._zmq.socket

    @property
    def monitor(self) -> zmq.Socket | None:
        return self._zmq.monitor

    # -- sockets -----------------------------------------------------------------------------

    def _open(self) -> None:
        res = self._zmq
        # zmq.Socket(...) rather than context.socket(...): always a plain socket, even when the
        # caller hands us a zmq.asyncio.Context.
        sock = res.socket = zmq.Socket(res.context, SOCKET_TYPES[self.sock])
        sock.linger = 0
        sock.rcvhwm = self.hwm
        # Requests are tiny; room for all of them means a request send never blocks.
        sock.sndhwm = max(self.hwm, self.prefetch + 1) if self.sock == "REQ" else self.hwm
        if self.sock == "SUB":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        if self.sock == "REQ":
            address = f"inproc://kb-streams-monitor-{next(_monitor_ids)}"
            sock.monitor(address, zmq.EVENT_DISCONNECTED)
            res.monitor = zmq.Socket(res.context, zmq.PAIR)
            res.monitor.linger = 0
            res.monitor.connect(address)
        sock.connect(self.endpoint)
        self.in_flight = len(self._arrived)  # answered, not yet handed out

    def reconnect(self, reason: str) -> None:
        """Abandon the requests in flight: close the socket and connect a new one.

        Replies already queued on the old socket are kept (see :meth:`_salvage`).
        """
        self._salvage()
        log.info("Reconnecting to %s (%s; %d request(s) abandoned)", self.endpoint, reason,
                 self.in_flight - len(self._arrived))
        self._zmq.close_sockets()
        self._open()
        self.stats.reconnects += 1

    def close(self) -> None:
        """Close the sockets, and the context if we created it. Safe to call twice."""
        self.closed = True
        self._finalizer()

    @property
    def poll_items(self) -> list[tuple[zmq.Socket, int]]:
        """What the transport waits on (changes after :meth:`reconnect`)."""
        if self._zmq.newest is not None:
            return [(self._zmq.newest.wake, zmq.POLLIN)]
        items = [(self.socket, zmq.POLLIN)]
        if self.monitor is not None:
            items.append((self.monitor, zmq.POLLIN))
        return items

    # -- one call to next() ------------------------------------------------------------------

    def begin(self) -> float | None:
        """Start a call: check the connection, make sure a request is out; return the deadline."""
        if self.closed:
            raise RuntimeError("Client is closed")
        self._check_monitor()
        if self.sock == "REQ" and self.in_flight == 0:
            self._send_requests(1)
        return None if self.timeout is None else time.monotonic() + self.timeout

    def remaining_ms(self, deadline: float | None) -> int:
        """Poll timeout in milliseconds until ``deadline`` (-1 to wait forever)."""
        if deadline is None:
            return -1
        return max(0, math.ceil((deadline - time.monotonic()) * 1000))

    def expired(self, deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def receive_or_time_out(self, latest: bool, deadline: float | None) -> Message | None:
        """A train if one is waiting; else ``None`` (wait, then call again) before *deadline*.

        Raises
        ------
        TimeoutError
            Once *deadline* has passed without a train (counted; see :meth:`timed_out`).
        ProtocolError
            As :meth:`try_receive`.
        """
        message = self.try_receive(latest)
        if message is None and self.expired(deadline):
            raise self.timed_out()
        return message

    def try_receive(self, latest: bool) -> Message | None:
        """Take a train if one is waiting (never blocks); ``None`` if there is none yet.

        With ``latest``, the trains waiting before the newest are dropped (``stats.dropped``);
        on SUB/PULL the keep-newest receiver starts (see the module docstring).

        Raises
        ------
        ProtocolError
            If the message received cannot be decoded (the next call proceeds normally).
        """
        if latest and self.sock != "REQ" and self._zmq.newest is None:
            self._zmq.newest = NewestReceiver(self.context, self.socket)
        if self._zmq.newest is not None:
            taken = self._zmq.newest.take()
            return None if taken is None else self._decode(*taken)
        frames = self._recv_nowait()
        if frames is None:
            return None
        dropped = 0
        if latest:
            for _ in range(MAX_DRAIN):
                newer = self._recv_nowait()
                if newer is None:
                    break
                frames = newer
                dropped += 1
        if self.sock == "REQ":
            self.in_flight = max(0, self.in_flight - 1 - dropped)
            # Prefetch: get the next request(s) on the wire before decoding this train.
            self._send_requests(max(0, self.prefetch - 1 - self.in_flight))
        return self._decode(frames, dropped)

    def after_poll(self, ready: Sequence[tuple[Any, int]]) -> None:
        """React to monitor events the poll reported (the data socket is read by try_receive)."""
        if self.monitor is not None and any(sock is self.monitor for sock, _ in ready):
            self._check_monitor()
            if self.sock == "REQ" and self.in_flight == 0:
                self._send_requests(1)

    def timed_out(self) -> TimeoutError:
        """Count a timeout, drop requests in flight, and return the error to raise."""
        self.stats.timeouts += 1
        if self.sock == "REQ":
            self.reconnect("timeout")
        return TimeoutError(
            f"No data received from {self.endpoint} in the last {self.timeout_ms} ms"
        )

    # -- internals ---------------------------------------------------------------------------

    def _check_monitor(self) -> None:
        """Read pending monitor events; reconnect if the connection dropped under a request."""
        if self.monitor is None:
            return
        disconnected = False
        while self.monitor.get(zmq.EVENTS) & zmq.POLLIN:
            event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                disconnected = True
        if disconnected and self.in_flight:
            self._salvage()
            if self.in_flight > len(self._arrived):
                self.reconnect("server disconnected")

    def _salvage(self) -> None:
        """Keep every complete reply queued on the socket, so a reconnect cannot discard it."""
        while self.in_flight > len(self._arrived) and self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            self._arrived.append(self.socket.recv_multipart(zmq.NOBLOCK, copy=False))

    def _send_requests(self, n: int) -> None:
        for _ in range(n):
            try:
                self.socket.send_multipart(REQUEST, zmq.NOBLOCK)
            except zmq.Again:
                log.debug("Request queue to %s full; not sending more now", self.endpoint)
                return
            self.in_flight += 1

    def _recv_nowait(self) -> list[zmq.Frame] | None:
        if self._arrived:
            return self._arrived.popleft()
        # Checking EVENTS is much cheaper than catching zmq.Again.
        if not self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            return None
        try:  # one more part than the codec allows: the REQ envelope delimiter
            return recv_parts(self.socket, self.limits.max_parts + 1)
        except TooManyParts:
            self.stats.decode_errors += 1
            self.reconnect("message over Limits.max_parts")  # drops the rest of it unread
            raise ProtocolError(f"message from {self.endpoint} has more than "
                                f"{self.limits.max_parts} parts (Limits.max_parts)") from None

    def _decode(self, frames: list[zmq.Frame], dropped: int) -> Message:
        try:
            if self.sock == "REQ":
                if len(frames) < 2 or len(frames[0]) != 0:
                    raise ProtocolError(
                        "reply does not start with an empty envelope delimiter", part=0
                    )
                frames = frames[1:]
            message = decode(frames, self.limits)
        except ProtocolError:
            self.stats.decode_errors += 1
            self.stats.dropped += dropped
            raise
        except Exception as exc:
            self.stats.decode_errors += 1
            self.stats.dropped += dropped
            raise ProtocolError(f"cannot decode message from {self.endpoint}: {exc!r}") from exc
        keep_for_trains_of(sum(map(len, frames)))
        self.stats.observe(message, dropped=dropped)
        return message
