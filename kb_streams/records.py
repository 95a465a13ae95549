"""The one error record every node of ours emits on its ``.errors`` stream.

A source that cannot decode a train, a graph node that raises, a sink that cannot encode a
result, a Dask task that fails or a train lost with its worker: each is one
:class:`ErrorRecord` on the node's ``errors`` stream (and a count in its ``stats``), so that a
live view, a log or a dashboard reads one shape. This module imports neither streamz nor Dask:
the Dask workers build records too.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass

__all__ = ["ErrorRecord", "detach"]


@dataclass(frozen=True)
class ErrorRecord:
    """One train (or item) a node could not handle.

    Attributes
    ----------
    train_id
        Train ID of the item, ``None`` if unknown.
    node
        What failed: the offloaded function's name, or the node's name
        (``'from_karabo_bridge'``, ``'to_karabo_bridge'``, ...).
    exception
        The exception (its ``__traceback__`` dropped so it pins no train; see ``traceback``);
        ``None`` when nothing raised (a train lost with its worker).
    traceback
        The formatted traceback (for Dask tasks including the worker-side frames); ``''`` if none.
    index
        Position of the item in an offload node's input (0 for the first item).
    attempts
        How many times the item was submitted.
    receiver
        For worker-side receive: the receiver (shard) name.
    reason
        What happened, in a few words, when no exception says it (``'lost with its worker'``).
    endpoint
        The bridge endpoint the train came from or went to, when the node has one.
    worker
        The Dask worker the item was on, when known.

    Examples
    --------
    >>> err = ErrorRecord(10042, "integrate", ValueError("no pulses"), "Traceback ...")
    >>> print(err)
    train 10042: integrate failed: ValueError: no pulses
    >>> print(ErrorRecord(10043, "integrate", None, reason="lost with its worker",
    ...                   worker="tcp://127.0.0.1:40001"))
    train 10043 (worker tcp://127.0.0.1:40001): integrate failed: lost with its worker
    """

    train_id: int | None
    node: str
    exception: BaseException | None
    traceback: str = ""
    index: int | None = None
    attempts: int = 1
    receiver: str | None = None
    reason: str = ""
    endpoint: str | None = None
    worker: str | None = None

    @property
    def func(self) -> str:
        """The failed function's (or node's) name: :attr:`node`."""
        return self.node

    def __str__(self) -> str:
        if self.train_id is not None:
            where = f"train {self.train_id}"
        elif self.index is not None:
            where = f"item {self.index}"
        else:
            where = "unknown train"
        if self.receiver is not None:
            where += f" (receiver {self.receiver})"
        elif self.exception is None and self.worker is not None:
            where += f" (worker {self.worker})"
        if self.exception is None:
            return f"{where}: {self.node} failed: {self.reason}"
        return f"{where}: {self.node} failed: {type(self.exception).__name__}: {self.exception}"


def detach(exc: BaseException) -> tuple[str, BaseException]:
    """The formatted traceback of ``exc``, and ``exc`` without the frames (which hold the train).

    Examples
    --------
    >>> try:
    ...     1 / 0
    ... except ZeroDivisionError as exc:
    ...     text, error = detach(exc)
    >>> text.splitlines()[-1], error.__traceback__
    ('ZeroDivisionError: division by zero', None)
    """
    text = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None
    return text, exc
