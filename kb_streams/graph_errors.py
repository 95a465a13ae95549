"""A node of a streamz graph raised on a train: report it once, naming the node.

streamz's ``map``, ``filter`` and friends log every exception with its traceback before they
re-raise it, and the bridge source then catches it and logs the train ID: two records (10 to 18
lines) per failed train. Inside :func:`reported_by_caller` streamz's record is dropped, and
:func:`log_failure` writes the one record that says it all: train ID, endpoint, the node that
raised (:func:`failed_node`) and the traceback from that node down. The fields are also set on the
log record (``train_id``, ``endpoint``, ``node``, ``error_traceback``, ``exception``), named as
on the error records of ``.errors`` streams, so a live view can group failures without parsing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any

__all__ = ["failed_node", "log_failure", "node_name", "reported_by_caller"]

#: The logger streamz's nodes report their exceptions on.
STREAMZ_LOGGER = "streamz.core"

_state = threading.local()


class _DropWhileReported(logging.Filter):
    """Drops streamz's exception records in a thread inside :func:`reported_by_caller`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and getattr(_state, "depth", 0))


_FILTER = _DropWhileReported()
logging.getLogger(STREAMZ_LOGGER).addFilter(_FILTER)


@contextlib.contextmanager
def reported_by_caller() -> Iterator[None]:
    """Within: streamz does not log the exceptions its nodes raise (in this thread); the caller
    catches and reports them (:func:`log_failure`).

    See :func:`log_failure` for an example.
    """
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def node_name(node: Any) -> str:
    """A short name for a streamz node: its type and function, or its ``stream_name``.

    Examples
    --------
    >>> from streamz import Stream
    >>> def ratio(train): ...
    >>> node_name(Stream().map(ratio)), node_name(Stream(stream_name="xgm"))
    ('map(ratio)', 'xgm')
    """
    if getattr(node, "name", None):
        return str(node.name)
    func = getattr(node, "func", None) or getattr(node, "predicate", None)
    kind = type(node).__name__
    if func is None:
        return kind
    return f"{kind}({getattr(func, '__name__', type(func).__name__)})"


def _frames(exc: BaseException) -> list[TracebackType]:
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    return frames


def _node_frame(frames: list[TracebackType]) -> int | None:
    """Index of the innermost frame that is a method of a streamz node."""
    from streamz import Stream

    found = None
    for i, tb in enumerate(frames):
        if isinstance(tb.tb_frame.f_locals.get("self"), Stream):
            found = i
    return found


def failed_node(exc: BaseException) -> str:
    """Name (:func:`node_name`) of the innermost streamz node in ``exc``'s traceback; ``'graph'``
    if there is none."""
    frames = _frames(exc)
    i = _node_frame(frames)
    return "graph" if i is None else node_name(frames[i].tb_frame.f_locals["self"])


def node_traceback(exc: BaseException) -> str:
    """``exc``'s formatted traceback from the frame below the node that raised (the user's
    function), without streamz's and our frames above it."""
    frames = _frames(exc)
    i = _node_frame(frames)
    start = frames[i + 1] if i is not None and i + 1 < len(frames) else exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, start))


def log_failure(logger: logging.Logger, train_id: int | None, endpoint: str | None,
                exc: BaseException) -> None:
    """Log one ERROR record for a train ``exc`` was raised on: where, by which node, and why.

    Examples
    --------
    >>> import logging, sys
    >>> from streamz import Stream
    >>> log = logging.getLogger("example")
    >>> log.addHandler(logging.StreamHandler(sys.stdout)); log.propagate = False
    >>> source = Stream()
    >>> _ = source.map(lambda x: 1 / x)
    >>> with reported_by_caller():
    ...     try:
    ...         source.emit(0)
    ...     except ZeroDivisionError as exc:
    ...         log_failure(log, 10042, "tcp://exflonc12:45000", exc)  # doctest: +ELLIPSIS
    Train 10042: error in the graph (map(<lambda>), from tcp://exflonc12:45000): ZeroDivision...
    Traceback (most recent call last):
      File "<doctest ...>", line 1, in <lambda>
    ...
    ZeroDivisionError: division by zero
    """
    node = failed_node(exc)
    text = node_traceback(exc)
    origin = f", from {endpoint}" if endpoint else ""
    logger.error("Train %s: error in the graph (%s%s): %s: %s\n%s", train_id, node, origin,
                 type(exc).__name__, exc, text.rstrip("\n"),
                 extra={"train_id": train_id, "endpoint": endpoint, "node": node,
                        "error_traceback": text, "exception": exc})
