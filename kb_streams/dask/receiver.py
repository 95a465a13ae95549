"""The worker side of :mod:`kb_streams.dask.on_workers`: bridge clients inside Dask workers.

Each receiver is a bridge client in its own thread of a worker process, kept open between tasks
and ``prefetch`` trains ahead. A task (:func:`receive_and_apply`) takes the receiver's next
train, applies the user's function where the train landed and returns a small
:class:`TaskResult`. The receiver numbers the trains it hands out, so that the graph can tell
which are still on their way back (:mod:`kb_streams.dask.order`). This module imports no graph
node: a worker needs only the bridge client, the train record and :mod:`kb_streams.records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import zmq

from ..client import Client as BridgeClient
from ..records import detach
from ..train import Train

__all__ = ["ReceiverSpec", "TaskResult", "Receiver", "receive_and_apply", "close_receivers",
           "close_receivers_async", "receiver_states", "STATE_PROBE"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiverSpec:
    """What a worker needs to receive for one receiver (sent with every task; small)."""

    session: str
    name: str
    endpoint: str
    sock: str
    select: Any
    poll: float
    receive_timeout: float
    prefetch: int
    hwm: int


@dataclass
class TaskResult:
    receiver: str
    kind: str  # 'train' | 'idle' | 'error' | 'failed' | 'closed' | 'abandoned'
    train_id: int | None = None
    value: Any = None
    error: tuple[str, BaseException] | None = None
    nbytes: int = 0
    worker: str | None = None
    epoch: str | None = None  # the receiver instance that handed out the train (or idled)
    seq: int | None = None  # the train's number in that receiver's hand-out order
    taken: int | None = None  # idle: trains that receiver had handed out by then


#: A receiver nobody has asked for a train for this long closes itself (its graph is gone).
IDLE_CLOSE = 60.0


class Receiver:
    """A bridge client in its own thread of a worker process, ``prefetch`` trains ahead of the
    tasks that take them.

    The thread owns the ZeroMQ socket. Tasks wait for a train with a short timeout (and report
    "idle"), so the bridge client itself can wait long for large trains without giving up its
    request. Trains are handed out in arrival order and numbered (``seq``) per instance
    (``epoch``), so the graph knows which trains are still on their way back. :meth:`close` wakes
    the waiting tasks and terminates the ZeroMQ context, which interrupts a pending receive.
    """

    def __init__(self, spec: ReceiverSpec, key: tuple[str, str]) -> None:
        self.spec = spec
        self.key = key
        self.epoch = uuid.uuid4().hex[:12]
        self.context = zmq.Context()
        self.changed = threading.Condition()
        self.ready: deque[tuple[str, Any]] = deque()  # ('train', message) or ('error', exception)
        self.taken = 0
        self.closing = threading.Event()
        self.last_used = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=f"kb-receiver-{spec.name}",
                                       daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self.closing.is_set()

    def _run(self) -> None:
        spec = self.spec
        client = None
        try:
            client = BridgeClient(spec.endpoint, sock=spec.sock, timeout=spec.receive_timeout,
                                  context=self.context, hwm=spec.hwm)
            while self._wait_for_room():
                item = self._receive(client)
                if item is None:
                    return
                self._put(item)
                # the task that takes the train frees it: were it still referenced here while
                # the next one arrives, every train would land in fresh, page-faulting memory
                del item
        except Exception as exc:  # cannot connect: the tasks report it
            if not self.closing.is_set():
                self._put(("error", exc))
        finally:
            self.closing.set()
            with self.changed:
                self.changed.notify_all()
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            with _registry:
                if _receivers.get(self.key) is self:
                    del _receivers[self.key]

    def _wait_for_room(self) -> bool:
        """Until fewer than ``prefetch`` trains wait for a task; False to stop receiving."""
        with self.changed:
            while len(self.ready) >= max(self.spec.prefetch, 1) and not self.closing.is_set():
                if not self.changed.wait(0.2) and time.monotonic() - self.last_used > IDLE_CLOSE:
                    logger.info("bridge receiver %s unused for %s s: closing", self.spec.name,
                                IDLE_CLOSE)
                    return False
        return not self.closing.is_set()

    def _receive(self, client: BridgeClient) -> tuple[str, Any] | None:
        """The next train or receive error; None once closing."""
        while not self.closing.is_set():
            try:
                return "train", client.next_message()
            except TimeoutError:
                continue  # nothing yet (a REQ client has renewed its request)
            except zmq.ContextTerminated:
                return None
            except Exception as exc:
                return None if self.closing.is_set() else ("error", exc)
        return None

    def _put(self, item: tuple[str, Any]) -> None:
        with self.changed:
            self.ready.append(item)
            self.changed.notify_all()

    def get(self, timeout: float) -> tuple[str, int, Any]:
        """Hand out the next item, numbered: ``('train', seq, message)`` or ``('error', seq,
        exception)``; ``('idle', taken, None)`` after ``timeout`` with trains handed out so far;
        ``('closed', taken, None)`` once closing."""
        with self.changed:
            self.last_used = time.monotonic()
            self.changed.wait_for(lambda: self.ready or self.closing.is_set(), timeout)
            if self.ready:
                kind, payload = self.ready.popleft()
                self.taken += 1
                self.changed.notify_all()
                return kind, self.taken - 1, payload
            return ("closed" if self.closing.is_set() else "idle"), self.taken, None

    def state(self) -> tuple[str, int, int]:
        """``(epoch, trains handed out, trains waiting for a task)``."""
        with self.changed:
            return self.epoch, self.taken, len(self.ready)

    def close(self) -> None:
        self.closing.set()
        with self.changed:
            self.changed.notify_all()  # waiting tasks return 'closed' at once
        self.context.term()  # returns once the thread has closed its sockets
        self.thread.join(timeout=5)


_receivers: dict[tuple[str, str], Receiver] = {}
_closed_sessions: deque[str] = deque(maxlen=1000)
_registry = threading.Lock()


def receiver_states(session: str, names: Sequence[str]) -> dict[str, tuple[str, int, int] | None]:
    """``{name: (epoch, handed out, waiting) or None}`` of this worker's receivers of a source.

    None: no receiver of that name runs here (not started yet, or gone).
    """
    with _registry:
        receivers = {name: _receivers.get((session, name)) for name in names}
    return {name: r.state() if r is not None and r.alive else None
            for name, r in receivers.items()}


def _state_probe() -> Callable[[str, Sequence[str]], dict]:
    """A function for ``Client.run`` that returns :func:`receiver_states` on a worker.

    It is pickled by value and imports nothing: a worker still importing this module (its first
    task starting) answers at once that it runs no receiver yet.
    """
    module_name = __name__

    def probe(session: str, names: Sequence[str]) -> dict:
        states = getattr(sys.modules.get(module_name), "receiver_states", None)
        return states(session, names) if states is not None else dict.fromkeys(names)

    return probe


STATE_PROBE = _state_probe()


def worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return None


def _error(spec: ReceiverSpec, exc: BaseException, train_id: int | None = None,
           epoch: str | None = None, seq: int | None = None) -> TaskResult:
    text, exc = detach(exc)
    try:
        cloudpickle.dumps(exc)
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return TaskResult(spec.name, "error", train_id=train_id, error=(text, exc),
                   worker=worker_address(), epoch=epoch, seq=seq)


def _receiver_for(spec: ReceiverSpec) -> Receiver | None:
    """This worker's receiver for ``spec``, started if needed; None once its source stopped."""
    with _registry:
        if spec.session in _closed_sessions:
            return None
        key = (spec.session, spec.name)
        receiver = _receivers.get(key)
        if receiver is None or not receiver.alive:
            receiver = _receivers[key] = Receiver(spec, key)
        return receiver


def receive_and_apply(spec: ReceiverSpec, func: Callable[..., Any], args: tuple = (),
                      kwargs: Mapping[str, Any] | None = None) -> TaskResult:
    """Worker task: take the next train of this receiver in this worker process, apply ``func``.

    The receiver (a bridge client in its own thread) stays open between tasks. Never raises for a
    bad train: errors come back as a result with the train ID.
    """
    try:
        receiver = _receiver_for(spec)
        if receiver is None:
            return TaskResult(spec.name, "closed")
        kind, number, payload = receiver.get(spec.poll)
    except Exception as exc:
        return _error(spec, exc)
    epoch = receiver.epoch
    if kind in ("idle", "closed"):
        return TaskResult(spec.name, kind, epoch=epoch, taken=number, worker=worker_address())
    if kind == "error":
        return _error(spec, payload, getattr(payload, "train_id", None), epoch, number)
    train = Train.from_message(payload)
    nbytes = payload.nbytes
    del payload
    try:
        if spec.select is not None:
            train = train.select(spec.select)
        value = func(train, *args, **(kwargs or {}))
    except Exception as exc:
        return _error(spec, exc, train.train_id, epoch, number)
    return TaskResult(spec.name, "train", train_id=train.train_id, value=value, nbytes=nbytes,
                   worker=worker_address(), epoch=epoch, seq=number)


def close_receivers(session: str) -> int:
    """Close this worker's bridge clients of one source (``session``); returns how many."""
    with _registry:
        _closed_sessions.append(session)
        receivers = [_receivers.pop(key) for key in list(_receivers) if key[0] == session]
    for receiver in receivers:
        receiver.close()
    return len(receivers)


async def close_receivers_async(session: str) -> int:
    return await asyncio.to_thread(close_receivers, session)
