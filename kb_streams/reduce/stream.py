"""The streamz node that drives a reduction: ``stream.reduce_online(reduction)``."""

from __future__ import annotations

import logging
from typing import Any

from streamz import Stream

from ..train import train_id_of
from ._base import Reduction

__all__ = ["reduce_online"]

logger = logging.getLogger(__name__)

_EMIT = ("result", "snapshot", "self")


@Stream.register_api()
class reduce_online(Stream):
    """Update a :class:`~kb_streams.reduce.Reduction` with every item and emit its state.

    Items that are themselves reductions of the same kind (partial results, e.g. gathered
    from Dask workers) are merged instead of added. An item that makes the reduction raise is
    logged with its train ID, counted in ``n_errors`` (the exception kept in ``last_error``)
    and skipped: the stream goes on.

    Parameters
    ----------
    upstream
        The stream feeding items (arrays, DataArrays, numbers; ``(scalar, value)`` pairs for
        :class:`BinnedStats`).
    reduction
        The reduction to drive; reachable as ``node.reduction`` (e.g. to ``reset()`` it).
    emit
        ``'result'``: the labelled result (default); ``'snapshot'``: a copy of the reduction
        (small, picklable, mergeable: send it to other processes); ``'self'``: the live
        reduction itself (changes under the consumer's feet; for same-thread use only).
    every
        Emit after every ``every`` successful updates (1: after each).

    Examples
    --------
    >>> import numpy as np
    >>> from streamz import Stream
    >>> from kb_streams.reduce import RunningStats
    >>> source = Stream()
    >>> out = source.reduce_online(RunningStats(), every=2).sink_to_list()
    >>> for x in [1.0, 2.0, 'not a number', 3.0, 6.0]:
    ...     source.emit(x)
    >>> [float(res['mean']) for res in out]
    [1.5, 3.0]
    """

    _graphviz_shape = "box"

    def __init__(self, upstream: Stream, reduction: Reduction, *, emit: str = "result",
                 every: int = 1, **kwargs: Any) -> None:
        if emit not in _EMIT:
            raise ValueError(f"emit must be one of {_EMIT}, not {emit!r}")
        if int(every) < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        self.reduction = reduction
        self.emit_mode = emit
        self.every = int(every)
        self.n_items = 0
        self.n_errors = 0
        self.last_error: BaseException | None = None
        Stream.__init__(self, upstream, **kwargs)

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> Any:
        try:
            if isinstance(x, type(self.reduction)):
                self.reduction.merge(x)
            else:
                self.reduction.update(x)
        except Exception as exc:
            self._failed(exc, x, "update")
            return None
        self.n_items += 1
        if self.n_items % self.every:
            return None
        try:
            if self.emit_mode == "result":
                out = self.reduction.result()
            elif self.emit_mode == "snapshot":
                out = self.reduction.copy()
            else:
                out = self.reduction
        except Exception as exc:
            self._failed(exc, x, "result")
            return None
        return self._emit(out, metadata=metadata)

    def _failed(self, exc: BaseException, x: Any, what: str) -> None:
        self.n_errors += 1
        self.last_error = exc
        tid = train_id_of(x)
        logger.error("%s %s failed for train %s: %s: %s", type(self.reduction).__name__, what,
                     tid if tid is not None else "(unknown)", type(exc).__name__, exc,
                     exc_info=exc)
