"""The bridge server's serving loop, free of I/O, and the two drivers that perform its I/O.

:class:`ServingLoop` decides everything a :class:`~kb_streams.server.BridgeServer` does while
serving (pacing, waiting for a reader, taking, preparing, sending and counting trains, noticing a
stop) as a generator that yields one I/O step at a time and is sent back its outcome, as h11 keeps
its state machine apart from any socket. :func:`drive` performs those steps in a thread,
:func:`drive_async` in an asyncio loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from .errors import Unsendable
from .protocol import encode, find_train_id
from .stats import ServerStats

__all__ = ["Pacer", "ServingLoop", "Unsendable", "prepare", "async_items", "drive",
           "drive_async", "POLL_MS", "STOP"]

POLL_MS = 20  # every wait wakes this often to notice a stop: stopping takes at most ~this long
STOP = object()  # sent back for NextItem when there is no next item


class Pacer:
    """Absolute schedule of send times at *rate* Hz, so pacing does not drift.

    Examples
    --------
    >>> pacer = Pacer(10)
    >>> pacer.delay(0.0), round(pacer.delay(0.0), 3), round(pacer.delay(0.05), 3)
    (0.0, 0.1, 0.15)
    """

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


# The I/O steps the serving loop yields; each says what its driver sends back. Every wait is at
# most POLL_MS long, so the loop notices a stop in time.


@dataclass(frozen=True)
class Sleep:
    """Sleep *seconds* (at most POLL_MS); sent back: anything."""

    seconds: float


@dataclass(frozen=True)
class Poll:
    """Poll the socket for *event* for at most POLL_MS; sent back: whether it is ready."""

    event: int


@dataclass(frozen=True)
class NextItem:
    """Take the next item to serve; sent back: the item, or STOP when there is none."""


@dataclass(frozen=True)
class Receive:
    """Receive a request (REP); sent back: its frames."""


@dataclass(frozen=True)
class Reply:
    """Send a one-frame reply (REP); sent back: anything."""

    message: bytes


@dataclass(frozen=True)
class Send:
    """Send a train without blocking; sent back: False if there was no room (zmq.Again)."""

    frames: list[Any]


_NEXT_ITEM = NextItem()
_RECEIVE = Receive()
Step = Sleep | Poll | NextItem | Receive | Reply | Send
_T = TypeVar("_T")
Steps = Generator[Step, Any, _T]
Prepared = tuple[list[Any], int | None]


def prepare(item: Any, protocol_version: str, dummy_timestamps: bool) -> Prepared:
    """Message parts and train ID for one item (see :mod:`kb_streams.server`), or Unsendable."""
    if isinstance(item, tuple):
        data, meta = (item + (None,))[:2]
    elif isinstance(item, Mapping):
        data, meta = item, None
    else:
        frames = list(item)
        if not frames:
            raise Unsendable("an empty list of message parts")
        return frames, None
    train_id = find_train_id(data, meta)
    try:
        frames = encode(data, meta, protocol_version=protocol_version,
                        dummy_timestamps=dummy_timestamps)
    except Exception as exc:
        raise Unsendable(f"train {train_id}: cannot encode: {exc}") from None
    if not frames:
        raise Unsendable(f"train {train_id}: no sources to send")
    return frames, train_id


async def async_items(iterable: Iterable[Any]) -> AsyncIterator[Any]:
    """*iterable*'s items, asynchronously."""
    for item in iterable:
        yield item
        del item  # not kept while the iterable makes the next one


def _nbytes(frames: list[Any]) -> int:
    return sum(memoryview(frame).nbytes for frame in frames)


class ServingLoop:
    """What a server serving on a *sock* socket does, as steps (see the module docstring).

    Parameters
    ----------
    sock
        ``'REP'``, ``'PUB'`` or ``'PUSH'``.
    stopping
        Set to stop serving.
    prepare
        Item -> ``(frames, train_id)``, or ``None`` to skip it (the callee logs and counts).
    bad_request
        REP request other than ``b'next'`` -> the one-frame reply to send.
    stats
        Counts each train sent.
    """

    def __init__(self, sock: str, stopping: threading.Event,
                 prepare: Callable[[Any], Prepared | None],
                 bad_request: Callable[[list[bytes]], bytes], stats: ServerStats) -> None:
        self.sock = sock
        self.stopping = stopping
        self.prepare = prepare
        self.bad_request = bad_request
        self.stats = stats

    def run(self, trains: int | None, rate: float | None) -> Steps[int]:
        """Serve *trains* trains (``None``: until stopped or out of items), paced at *rate* Hz.

        A train is taken only once a reader can have it (REP: its ``b'next'`` is waiting; PUSH:
        there is room), so it leaves fresh. Returns the number of trains sent.
        """
        pacer = Pacer(rate)
        sent = 0
        ready = False  # a reader can take a train now (REP: its b'next' is waiting)
        while (trains is None or sent < trains) and not self.stopping.is_set():
            if not (yield from self._pause(pacer.delay(time.monotonic()))):
                break
            if not ready and not (yield from self._await_reader()):
                break
            ready = True
            item = yield _NEXT_ITEM
            if item is STOP:
                break
            prepared = self.prepare(item)
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

    def _pause(self, seconds: float) -> Steps[bool]:
        """Let *seconds* pass; False if stopped first."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            yield Sleep(min(remaining, POLL_MS / 1000))
        return False

    def _await_reader(self) -> Steps[bool]:
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
            yield Reply(self.bad_request(request))
        return False

    def _send(self, frames: list[Any]) -> Steps[bool]:
        """Send one train; False if stopped while waiting for room (PUSH)."""
        while not (yield Send(frames)):  # the PUSH reader went away since the poll
            if not (yield from self._poll(zmq.POLLOUT)):
                return False
        return True

    def _poll(self, event: int) -> Steps[bool]:
        """Wait until the socket is ready for *event*; False if stopped first."""
        while not self.stopping.is_set():
            if (yield Poll(event)):
                return True
        return False


class _ThreadIO:
    """How :func:`drive` performs the steps: blocking calls in the serving thread."""

    def __init__(self, sock: zmq.Socket, items: Any, stopping: threading.Event | None) -> None:
        self.sock = sock
        self.items = items
        self.stopping = stopping

    def perform(self, step: Step) -> Awaitable[Any]:
        """Do *step* now; its outcome, as an awaitable that is already done."""
        return _Ready(_perform(step, self))

    def sleep(self, seconds: float) -> Any:
        return self.stopping.wait(seconds)  # type: ignore[union-attr]

    def poll(self, event: int) -> Any:
        return self.sock.poll(POLL_MS, event)

    def next_item(self) -> Any:
        return next(self.items, STOP)

    def receive(self) -> Any:
        return self.sock.recv_multipart()

    def reply(self, message: bytes) -> Any:
        return self.sock.send(message)

    def send(self, frames: list[Any]) -> Any:
        try:
            self.sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True


class _AsyncIO(_ThreadIO):
    """How :func:`drive_async` performs the steps: each call returns an awaitable.

    Polling, receiving and replying are inherited: the asyncio socket's methods of those names
    already return awaitables.
    """

    def perform(self, step: Step) -> Awaitable[Any]:
        """Start *step*; its outcome, to await in the asyncio loop."""
        return _perform(step, self)

    def sleep(self, seconds: float) -> Any:
        return asyncio.sleep(seconds)

    def next_item(self) -> Any:
        return anext(self.items, STOP)

    async def send(self, frames: list[Any]) -> bool:
        try:
            await self.sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True


class _Ready:
    """An awaitable already done: awaiting it gives *value* without ever suspending."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # unreachable: makes this a generator that returns at once


def _perform(step: Step, io: _ThreadIO) -> Any:
    """Do the I/O *step* asks for through *io*; its outcome (awaitable from :class:`_AsyncIO`)."""
    match step:
        case Sleep(seconds):
            return io.sleep(seconds)
        case Poll(event):
            return io.poll(event)
        case NextItem():
            return io.next_item()
        case Receive():
            return io.receive()
        case Reply(message):
            return io.reply(message)
        case Send(frames):
            return io.send(frames)
    raise TypeError(f"not a serving step: {step!r}")


async def _drive(steps: Steps[int], io: _ThreadIO) -> int:
    """Perform the I/O *steps* ask for through *io*, sending each outcome back; their result."""
    outcome: Any = None
    while True:
        try:
            step = steps.send(outcome)
        except StopIteration as done:
            return done.value
        outcome = await io.perform(step)


def drive(steps: Steps[int], sock: zmq.Socket, items: Iterator[Any],
          stopping: threading.Event) -> int:
    """Perform the I/O *steps* ask for, in this thread; returns what they return.

    The thread's I/O is done before :func:`_drive` awaits it, so the coroutine never suspends:
    one ``send`` runs it to its end.
    """
    driving = _drive(steps, _ThreadIO(sock, items, stopping))
    try:
        driving.send(None)
    except StopIteration as done:
        return done.value
    driving.close()
    raise RuntimeError("the thread driver of a serving loop suspended")


async def drive_async(steps: Steps[int], asock: zmq.asyncio.Socket,
                      items: AsyncIterator[Any]) -> int:
    """Perform the I/O *steps* ask for, in this asyncio loop; returns what they return."""
    return await _drive(steps, _AsyncIO(asock, items, None))
