"""The failures of a live run, grouped: the first of each kind in full, the rest counted.

Failures arrive two ways: as error records on the graph's ``.errors`` streams (offload, worker-side
receive), and as the one log record the bridge source writes per train a node raised on
(:func:`kb_streams.graph_errors.log_failure`), caught here by a handler on the ``kb_streams``
logger. Failures of the same node, exception type and raising line are one kind; the live view
prints the first of each kind with its traceback and shows the others as ``× 84 more``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamz import Stream

#: Characters of an exception's text shown in a summary line.
MAX_TEXT = 200
#: Kinds of error listed in the live panel.
SHOWN_KINDS = 5


@dataclass
class ErrorKind:
    """Failures alike: same node, exception type and raising line."""

    node: str
    text: str
    traceback: str
    first_train: int | None
    endpoint: str | None = None
    count: int = 1
    printed: bool = False

    def line(self) -> str:
        """E.g. ``map(ratio): ZeroDivisionError: division by zero (train 10042, × 84 more)``.

        Examples
        --------
        >>> kind = ErrorKind("map(ratio)", "ZeroDivisionError: division by zero", "", 10042)
        >>> kind.count = 85
        >>> kind.line()
        'map(ratio): ZeroDivisionError: division by zero (train 10042, × 84 more)'
        """
        parts = [] if self.first_train is None else [f"train {self.first_train}"]
        if self.count > 1:
            parts.append(f"× {self.count - 1} more")
        return f"{self.node}: {self.text}" + (f" ({', '.join(parts)})" if parts else "")

    def full(self) -> str:
        """The first occurrence, as printed once: where, then the traceback."""
        where = "error" + ("" if self.first_train is None else f" in train {self.first_train}")
        if self.endpoint:
            where += f" from {self.endpoint}"
        head = f"{where}: {self.node} failed: {self.text}"
        tail = "(more errors of this kind are counted in the status, not shown)"
        return "\n".join(part for part in (head, self.traceback.rstrip(), tail) if part)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _raising_line(traceback: str) -> str:
    """The last ``File ..., line N`` of a formatted traceback ('' if none)."""
    files = [line.strip() for line in traceback.splitlines() if line.startswith("  File ")]
    return files[-1] if files else ""


class ErrorDigest:
    """Failures of a running graph by kind, from ``.errors`` streams and the source's log.

    Parameters
    ----------
    streams
        ``.errors`` streams whose records are failures.
    logger
        Name of the logger whose failure records (those with a ``node`` field) are taken;
        its other records of level WARNING and up go to stderr as Python's default would.

    Examples
    --------
    >>> from streamz import Stream
    >>> errors = Stream()
    >>> digest = ErrorDigest([errors])
    >>> for train_id in (7, 8, 9):
    ...     errors.emit(f"train {train_id}: f failed: KeyError: 'x'")
    >>> digest.count, digest.failed_trains
    (3, 3)
    >>> digest.close()
    """

    def __init__(self, streams: Iterable[Stream] = (), logger: str = "kb_streams") -> None:
        self.kinds: dict[tuple[str, str, str], ErrorKind] = {}
        self._failed_ids: set[int] = set()
        self._failed_unknown = 0
        # the last exceptions taken: the same failure may come both on a stream and in the log
        self._seen: deque[BaseException] = deque(maxlen=64)
        self._lock = threading.Lock()
        # a stream reached twice (nodes sharing one) is read once, else its records count twice
        unique = {id(stream): stream for stream in streams}.values()
        self._sinks = [stream.sink(self._from_stream) for stream in unique]
        self._logger = logging.getLogger(logger)
        self._handler = _FailureHandler(self)
        self._logger.addHandler(self._handler)

    @property
    def failed_trains(self) -> int:
        """Trains with at least one failure (each failure of an unknown train counts as one)."""
        return len(self._failed_ids) + self._failed_unknown

    @property
    def total(self) -> int:
        """All failures, of every kind, each counted once however many ways it was reported."""
        return sum(kind.count for kind in self.kinds.values())

    count = total

    def _from_stream(self, record: Any) -> None:
        exception = getattr(record, "exception", None)
        node = getattr(record, "node", None) or getattr(record, "func", None) or "graph"
        text = (f"{type(exception).__name__}: {exception}" if exception is not None
                else getattr(record, "reason", "") or str(record))
        self.add(getattr(record, "train_id", None), str(node), text,
                 getattr(record, "traceback", "") or "", exception,
                 getattr(record, "endpoint", None))

    def add(self, train_id: int | None, node: str, text: str, traceback: str = "",
            exception: BaseException | None = None, endpoint: str | None = None) -> None:
        """Count one failure (thread-safe); one already taken (the same exception: a stream's
        record and the log's) is skipped."""
        with self._lock:
            if exception is not None:
                if any(seen is exception for seen in self._seen):
                    return
                self._seen.append(exception)
            if train_id is None:
                self._failed_unknown += 1
            else:
                self._failed_ids.add(int(train_id))
            kind_text = text.split(":", 1)[0] if traceback else text
            key = (node, kind_text, _raising_line(traceback))
            kind = self.kinds.get(key)
            if kind is None:
                self.kinds[key] = ErrorKind(node, _short(text), traceback, train_id, endpoint)
            else:
                kind.count += 1

    def take_new(self) -> list[ErrorKind]:
        """Kinds not yet printed (marked printed)."""
        with self._lock:
            new = [kind for kind in self.kinds.values() if not kind.printed]
            for kind in new:
                kind.printed = True
        return new

    def lines(self, limit: int = SHOWN_KINDS) -> list[str]:
        """One line per kind, the most frequent first."""
        with self._lock:
            kinds = sorted(self.kinds.values(), key=lambda kind: -kind.count)
        lines = [kind.line() for kind in kinds[:limit]]
        if len(kinds) > limit:
            lines.append(f"… and {len(kinds) - limit} more kinds of error")
        return lines

    def close(self) -> None:
        """Detach from the streams and the logger."""
        for sink in self._sinks:
            sink.destroy()
        self._sinks.clear()
        self._logger.removeHandler(self._handler)


class _FailureHandler(logging.Handler):
    """Failure records into the digest; other warnings to stderr (when nothing else logs)."""

    def __init__(self, digest: ErrorDigest) -> None:
        super().__init__(logging.WARNING)
        self.digest = digest

    def emit(self, record: logging.LogRecord) -> None:
        node = getattr(record, "node", None)
        if node is not None:
            exception = getattr(record, "exception", None)
            text = (f"{type(exception).__name__}: {exception}" if exception is not None
                    else record.getMessage().splitlines()[0])
            self.digest.add(getattr(record, "train_id", None), node, text,
                            getattr(record, "error_traceback", ""), exception,
                            getattr(record, "endpoint", None))
        elif not logging.getLogger().handlers:  # as Python's last-resort handler would
            print(record.getMessage(), file=sys.stderr, flush=True)


def error_streams(source: Stream) -> list[Stream]:
    """The ``.errors`` streams of ``source`` and of every node downstream of it.

    Examples
    --------
    >>> from streamz import Stream
    >>> source = Stream()
    >>> node = source.map(abs)
    >>> node.errors = Stream()
    >>> error_streams(source) == [node.errors]
    True
    """
    from streamz import Stream

    found: list[Stream] = []
    seen: set[int] = set()
    todo = [source]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        errors = getattr(node, "errors", None)
        if isinstance(errors, Stream) and errors is not node and errors not in found:
            found.append(errors)
        todo.extend(d for d in node.downstreams if d is not None)
    return found
