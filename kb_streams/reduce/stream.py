"""The streamz node that drives a reduction: ``stream.reduce_online(reduction)``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from streamz import Stream

from ..train_id import train_id_of
from ._base import Reduction
from .segments import Segments, label_result

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
    segment
        ``segment(item) -> label`` (a scan step, a run number, a configuration generation):
        when the label changes, the reduction emits the final result of the segment that
        ended, labelled with its label, and starts afresh with the new one.
    reset_on
        A stream of events: each one ends the current segment the same way (its final result
        is emitted, then the reduction resets); the event becomes the new segment's label.
        User code can do the same with :meth:`reset`.

    Attributes
    ----------
    finals
        A stream of the final results of the segments only.

    Notes
    -----
    With ``segment``, ``reset_on`` or after a :meth:`reset`, results carry ``segment`` (the
    label, when not ``None``) and ``final`` (1 for the last result of a segment, else 0) in
    their ``attrs`` (a snapshot: as attributes).

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> from streamz import Stream
    >>> from kb_streams.reduce import RunningStats
    >>> source = Stream()
    >>> out = source.reduce_online(RunningStats(), every=2).sink_to_list()
    >>> for x in [1.0, 2.0, 'not a number', 3.0, 6.0]:
    ...     source.emit(x)
    >>> [float(res['mean']) for res in out]
    [1.5, 3.0]

    Reset the curve when the scan step changes, keeping each step's final result:

    >>> steps = Stream()
    >>> node = steps.reduce_online(RunningStats(), segment=lambda x: int(x.attrs['step']))
    >>> finals = node.finals.sink_to_list()
    >>> for step, value in [(1, 1.0), (1, 3.0), (2, 10.0)]:
    ...     steps.emit(xr.DataArray(value, attrs={'step': step}))
    >>> [(r.attrs['segment'], float(r['mean'])) for r in finals]
    [(1, 2.0)]
    >>> float(node.reset(label=3)['mean']), node.label
    (10.0, 3)
    """

    _graphviz_shape = "box"

    def __init__(self, upstream: Stream, reduction: Reduction, *, emit: str = "result",
                 every: int = 1, segment: Callable[[Any], Hashable] | None = None,
                 reset_on: Stream | None = None, **kwargs: Any) -> None:
        if emit not in _EMIT:
            raise ValueError(f"emit must be one of {_EMIT}, not {emit!r}")
        if int(every) < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        self.reduction = reduction
        self.segments = Segments(reduction, key=segment, snapshot=emit != "result")
        self._segmented = segment is not None or reset_on is not None
        self._lock = threading.RLock()
        self.finals = Stream(stream_name="finals")
        self.finals.node = self  # a graph that only uses .finals keeps this node alive
        self.emit_mode = emit
        self.every = int(every)
        self.n_items = 0
        self.n_errors = 0
        self.last_error: BaseException | None = None
        Stream.__init__(self, upstream, **kwargs)
        if reset_on is not None:
            reset_on.sink(self.reset)

    @property
    def label(self) -> Hashable:
        """The current segment's label."""
        return self.segments.label

    def reset(self, label: Hashable = None) -> Any:
        """End the current segment: emit its final result (and return it; ``None`` if the
        segment had no items), reset the reduction and start a segment labelled ``label``."""
        with self._lock:
            self._segmented = True
            try:
                final = self.segments.close(label)
            except Exception as exc:
                self._failed(exc, None, "final result")
                return None
            if final is not None:
                final = self._emit_final(final)
            return final

    def _emit_final(self, final: Any) -> Any:
        self.finals.emit(final)
        self._emit(final)
        return final

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> Any:
        with self._lock:
            return self._update(x, metadata)

    def _update(self, x: Any, metadata: Any) -> Any:
        try:
            for final in self.segments.update(x):
                self._emit_final(final)
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
            if self._segmented:
                out = label_result(out, self.segments.label, False)
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
