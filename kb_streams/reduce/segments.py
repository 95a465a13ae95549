"""Segments of a reduction: reset on a signal, keeping the final result of each closed segment.

A *segment* is the stretch of items between two resets: one scan step, one run, one
configuration. :class:`Segments` drives any :class:`~kb_streams.reduce.Reduction` and closes
the current segment when the label an item carries changes (``key=``), or when told
(:meth:`Segments.close`, e.g. on an event from another stream); it returns the closed segment's
final result, labelled, before it resets. :func:`kb_streams.reduce.reduce_online` is the streamz
face of it (``segment=``, ``reset_on=``, ``node.reset()``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import xarray as xr

from ._base import Reduction

__all__ = ["Segments", "label_result"]

def label_result(result: Any, segment: Hashable, final: bool) -> Any:
    """``result`` with its segment: xarray ``attrs['segment']``/``['final']``, else attributes.

    Examples
    --------
    >>> label_result(xr.DataArray(1.0), 3, True).attrs
    {'segment': 3, 'final': 1}
    """
    if isinstance(result, xr.DataArray | xr.Dataset):
        attrs = {} if segment is None else {"segment": segment}
        return result.assign_attrs(attrs, final=int(final))  # netCDF keeps no bools
    if isinstance(result, Reduction):
        result.segment, result.final = segment, final
    return result


class Segments:
    """Run a reduction segment by segment.

    Parameters
    ----------
    reduction
        The reduction; it holds the current segment's state.
    key
        ``key(item) -> label``: a change of label closes the segment (a scan step, a run
        number). ``None``: segments close only through :meth:`close`.
    label
        The first segment's label (with ``key``, the first item's label replaces it).
    snapshot
        Final results are copies of the reduction (mergeable, picklable) instead of its
        ``result()``.

    Examples
    --------
    >>> from kb_streams.reduce import RunningStats
    >>> seg = Segments(RunningStats(), key=lambda x: int(x.attrs['step']))
    >>> closed = []
    >>> for step, value in [(0, 1.0), (0, 3.0), (1, 10.0), (1, 20.0)]:
    ...     closed += seg.update(xr.DataArray(value, attrs={'step': step}))
    >>> [(r.attrs['segment'], float(r['mean'])) for r in closed]
    [(0, 2.0)]
    >>> r = seg.close(label=2)
    >>> r.attrs['segment'], float(r['mean']), seg.label
    (1, 15.0, 2)
    """

    def __init__(self, reduction: Reduction, *, key: Callable[[Any], Hashable] | None = None,
                 label: Hashable = None, snapshot: bool = False) -> None:
        self.reduction = reduction
        self.snapshot = snapshot
        self.key = key
        self.label = label
        self._keyed = False
        self.closed = 0

    def update(self, item: Any) -> list[Any]:
        """Feed one item (a partial result of the same kind is merged).

        Returns the final result of the segment this item closed (``[]`` if none). Raises what
        the key or the reduction raise (a segment the item's label closed stays closed).
        """
        out: list[Any] = []
        if self.key is not None:
            label = self.key(item)
            if not self._keyed:
                self.label, self._keyed = label, True
            elif label != self.label:
                final = self.close(label)
                out = [] if final is None else [final]
        if isinstance(item, type(self.reduction)):
            self.reduction.merge(item)
        else:
            self.reduction.update(item)
        return out

    def close(self, label: Hashable = None) -> Any:
        """End the segment: its final result (``None`` if it had no items); start ``label``."""
        final = None
        if self.reduction.n_updates:
            final = self.reduction.copy() if self.snapshot else self.reduction.result()
            final = label_result(final, self.label, True)
            self.closed += 1
        self.reduction.reset()
        self.label = label
        return final

    def result(self) -> Any:
        """The current segment's result so far, labelled (``final`` 0)."""
        return label_result(self.reduction.result(), self.label, False)
