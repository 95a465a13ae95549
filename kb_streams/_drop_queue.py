"""One bounded queue between a producer and a serving thread, for the server and the sink.

:meth:`BridgeServer.feed() <kb_streams.server.BridgeServer.feed>` puts with back-pressure (wait
for room, or :class:`queue.Full`); the re-publishing sink (:mod:`kb_streams.sinks`) never waits
and drops the oldest item instead. Both are served by :meth:`DropQueue.take`, which can also hand
out the newest item and drop the older ones (a REP reader wants the latest result).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["DropQueue"]

T = TypeVar("T")
WAKE_S = 0.02  # a waiting take() checks this often whether it should stop


class DropQueue(Generic[T]):
    """A bounded FIFO that can drop its oldest item to make room.

    Parameters
    ----------
    maxlen
        Items it holds at most.

    Examples
    --------
    >>> q = DropQueue(2)
    >>> q.put("a", block=False); q.push("b"), q.push("c")
    (0, 1)
    >>> q.take(), q.take(newest=True)
    (('b', 0), ('c', 0))
    >>> q.take(timeout=0)
    (None, 0)
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen!r}")
        self._items: deque[T] = deque()
        self._maxlen = maxlen
        self._changed = threading.Condition()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Queue *item*, waiting for room as :meth:`queue.Queue.put` does (:class:`queue.Full`).

        A closed queue has no room.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self.closed or len(self._items) >= self._maxlen:
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or self.closed or (remaining is not None and remaining <= 0):
                    raise queue.Full
                self._changed.wait(remaining)
            self._items.append(item)
            self._changed.notify_all()

    def push(self, item: T) -> int:
        """Queue *item* without waiting; returns how many items were dropped (0 or 1).

        When full, the oldest item is dropped; when closed, *item* itself is.
        """
        with self._changed:
            if self.closed:
                return 1
            dropped = 0
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                dropped = 1
            self._items.append(item)
            self._changed.notify_all()
        return dropped

    def take(self, *, newest: bool = False, stopping: Callable[[], bool] = lambda: False,
             timeout: float | None = None) -> tuple[T | None, int]:
        """The next item (the newest if *newest*, dropping the older ones), and how many dropped.

        Waits for an item; returns ``(None, 0)`` once the queue is closed, ``stopping()`` is
        true, or *timeout* seconds passed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if self.closed or stopping() or (remaining is not None and remaining <= 0):
                    return None, 0
                self._changed.wait(WAKE_S if remaining is None else min(remaining, WAKE_S))
            dropped = 0
            if newest:
                dropped = len(self._items) - 1
                while len(self._items) > 1:
                    self._items.popleft()
            item = self._items.popleft()
            self._changed.notify_all()
            return item, dropped

    def close(self) -> int:
        """Drop what is queued and refuse more; waiting calls return. Returns how many dropped."""
        with self._changed:
            self.closed = True
            dropped = len(self._items)
            self._items.clear()
            self._changed.notify_all()
        return dropped

    def items(self, stopping: threading.Event) -> Iterator[T]:
        """Take items, in order, until *stopping* is set or the queue is closed."""
        while True:
            item, _ = self.take(stopping=stopping.is_set)
            if item is None:
                return
            yield item
            del item  # not kept while waiting for the next one

    async def aitems(self, stopping: threading.Event) -> AsyncIterator[T]:
        """:meth:`items` for an asyncio loop (checks every WAKE_S seconds, never blocking it)."""
        while not stopping.is_set() and not self.closed:
            item, _ = self.take(timeout=0)
            if item is None:
                await asyncio.sleep(WAKE_S)
            else:
                yield item
            del item
