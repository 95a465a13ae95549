"""Keep-newest receiving for SUB and PULL clients: a thread empties the socket, keeping one train.

A consumer slower than the bridge cannot get fresh trains by draining its socket when it asks:
ZeroMQ stops reading from the network once one train waits in the socket (high-water mark 1), so
the backlog piles up in the kernel and in the sender's queue, which then drops the *newest*
trains (a PUB at its high-water mark discards what it is given). Draining at each call only
reaches the old trains at the head of that backlog, one transfer time each; at 50 MB, 10 Hz and
a 2 Hz consumer the trains got were ~1.4 s old.

So once keep-newest is asked for, :class:`NewestReceiver` reads every train as it arrives, in a
thread of its own, and keeps only the newest complete one in a one-train slot; each train it
replaces is counted as dropped. Nothing queues upstream, and the train handed out is never
older than one train period plus its own transfer time (while the link keeps up with the
sender). Frames are moved, never copied or decoded, in the thread; the client decodes the train
it takes, in the caller's thread. The thread wakes the caller through an ``inproc`` PAIR socket,
which both the sync (``zmq_poll``) and the asyncio transports can wait on.
"""

from __future__ import annotations

import itertools
import logging
import threading

import zmq

log = logging.getLogger(__name__)

_ids = itertools.count()
_JOIN_TIMEOUT = 5.0


class _Slot:
    """The newest complete train (its frames) and how many it replaced since the last take."""

    __slots__ = ("lock", "frames", "dropped")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[zmq.Frame] | None = None
        self.dropped = 0

    def put(self, frames: list[zmq.Frame]) -> None:
        with self.lock:
            if self.frames is not None:
                self.dropped += 1
            self.frames = frames

    def take(self) -> tuple[list[zmq.Frame], int] | None:
        with self.lock:
            if self.frames is None:
                return None
            taken = self.frames, self.dropped
            self.frames, self.dropped = None, 0
            return taken


def _receive_newest(data: zmq.Socket, peer: zmq.Socket, slot: _Slot) -> None:
    """Thread body: move every train arriving on ``data`` into ``slot`` until told to stop."""
    poller = zmq.Poller()
    poller.register(data, zmq.POLLIN)
    poller.register(peer, zmq.POLLIN)
    try:
        while True:
            ready = dict(poller.poll())
            if peer in ready:
                return  # stop
            while data.get(zmq.EVENTS) & zmq.POLLIN:
                slot.put(data.recv_multipart(zmq.NOBLOCK, copy=False))
            try:
                peer.send(b"", zmq.NOBLOCK)  # wake the caller
            except zmq.Again:
                pass  # it has wake-ups queued already
    except zmq.ZMQError as exc:  # e.g. the caller's context was terminated under us
        log.debug("Keep-newest receiver stopped: %s", exc)
    finally:
        peer.close(linger=0)


class NewestReceiver:
    """Own ``socket`` from now on: read it in a thread, keeping only the newest train.

    Parameters
    ----------
    context
        The context of ``socket`` (the wake-up sockets are made in it).
    socket
        A connected SUB or PULL socket; the caller must not use it until :meth:`close`.
    """

    def __init__(self, context: zmq.Context, socket: zmq.Socket) -> None:
        address = f"inproc://kb-streams-newest-{next(_ids)}"
        self._slot = _Slot()
        self.wake = zmq.Socket(context, zmq.PAIR)
        self.wake.linger = 0
        self.wake.bind(address)
        peer = zmq.Socket(context, zmq.PAIR)
        peer.linger = 0
        peer.connect(address)
        self._thread = threading.Thread(target=_receive_newest, args=(socket, peer, self._slot),
                                        name="kb-streams-newest", daemon=True)
        self._thread.start()

    def take(self) -> tuple[list[zmq.Frame], int] | None:
        """The newest train's frames and the number of trains dropped before it, if one came."""
        while self.wake.get(zmq.EVENTS) & zmq.POLLIN:
            self.wake.recv(zmq.NOBLOCK)
        return self._slot.take()

    def close(self) -> None:
        """Stop the thread (the socket is the caller's again) and drop the train held."""
        if self.wake.closed:
            return
        try:
            self.wake.send(b"stop", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT)
        self.wake.close(linger=0)
        self._slot.take()
