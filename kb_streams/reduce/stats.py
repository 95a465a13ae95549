"""Running mean/variance over trains, and a rolling mean over the last N trains."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..train_id import train_id_of
from ._base import Reduction, Template, as_array, chan_merge

__all__ = ["RunningStats", "RollingMean"]


def _axes(dims: tuple[str, ...], dim: str | Sequence[str] | None) -> tuple[int, ...]:
    if dim is None:
        return ()
    names = (dim,) if isinstance(dim, str) else tuple(dim)
    missing = [d for d in names if d not in dims]
    if missing:
        raise ValueError(f"cannot reduce over {missing}: the input has dims {dims}")
    return tuple(dims.index(d) for d in names)


def _nanmean(values: np.ndarray, **kwargs: Any) -> np.ndarray:
    """:func:`numpy.nanmean` giving NaN for all-NaN slices without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, **kwargs)


def _dims_tuple(dim: str | Sequence[str] | None) -> tuple[str, ...] | None:
    return None if dim is None else (dim,) if isinstance(dim, str) else tuple(dim)


class RunningStats(Reduction):
    """Running count, mean and variance over trains (Welford; Chan's merge across workers).

    Parameters
    ----------
    dim
        Dimension(s) of each item to pool as well, e.g. ``'pulse'`` for per-pixel statistics
        over all pulses of all trains, or ``('slow_scan', 'fast_scan')`` for per-pulse
        statistics over pixels and trains. Default: none (per element, over trains). For numpy
        input the dims are ``dim_0``, ``dim_1``, ...
    skipna
        Ignore NaN (e.g. missing modules): counts become per element. Default False (NaN
        propagates).
    ddof
        Delta degrees of freedom for :meth:`var`/:meth:`std` (0: population, 1: sample).
    dtype
        Accumulator dtype (float64; float32 halves the memory for full-detector images).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> stats = RunningStats(dim='pulse')
    >>> for tid in range(10000, 10003):
    ...     x = xr.DataArray(np.full((4, 2), tid - 10000.0), dims=('pulse', 'slow_scan'),
    ...                      coords={'trainId': tid, 'pulse': [0, 2, 4, 6]})
    ...     _ = stats.update(x)
    >>> res = stats.result()
    >>> res['mean'].dims, res['mean'].values.tolist(), float(res['count'])
    (('slow_scan',), [1.0, 1.0], 12.0)
    >>> res.attrs['first_train_id'], res.attrs['last_train_id']
    (10000, 10002)
    """

    def __init__(self, dim: str | Sequence[str] | None = None, *, skipna: bool = False,
                 ddof: int = 0, dtype: Any = np.float64) -> None:
        super().__init__()
        self.dim = _dims_tuple(dim)
        self.skipna = skipna
        self.ddof = ddof
        self.dtype = np.dtype(dtype)
        self._reset_state()

    def _config(self) -> tuple:
        return (self.dim, self.skipna, self.dtype)

    def _reset_state(self) -> None:
        self.count: Any = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._in_dims: tuple[str, ...] | None = None

    def update(self, x: Any) -> RunningStats:
        """Add one item (array, DataArray or number)."""
        arr, dims = as_array(x, self._in_dims)
        axes = _axes(dims, self.dim)
        keep = tuple(d for i, d in enumerate(dims) if i not in axes)
        shape = tuple(s for i, s in enumerate(arr.shape) if i not in axes)
        if self.template is None:
            template = Template.from_input(x, keep, shape)
        else:
            self.template.check(shape, "RunningStats.update")
            template = None
        values = arr.astype(self.dtype, copy=False)
        if self.skipna:
            finite = ~np.isnan(values)
            n_b: Any = finite.sum(axis=axes) if axes else finite.astype(np.int64)
            total = np.where(finite, values, 0).sum(axis=axes) if axes else \
                np.where(finite, values, 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(n_b > 0, total / np.maximum(n_b, 1), 0).astype(self.dtype)
            if axes:
                dev = np.where(finite, values - np.expand_dims(mean_b, axes), 0)
                m2_b: Any = np.square(dev).sum(axis=axes)
            else:
                m2_b = 0.0
        elif axes:
            n_b = int(np.prod([arr.shape[i] for i in axes]))
            mean_b = values.mean(axis=axes, dtype=self.dtype)
            m2_b = np.square(values - np.expand_dims(mean_b, axes)).sum(axis=axes)
        else:
            n_b, mean_b, m2_b = 1, values, 0.0
        if self._mean is None:
            self._mean = np.zeros(shape, self.dtype)
            self._m2 = np.zeros(shape, self.dtype)
        self.count, self._mean, self._m2 = chan_merge(self.count, self._mean, self._m2,
                                                      n_b, mean_b, m2_b)
        if template is not None:
            self.template, self._in_dims = template, dims
        self._count(x)
        return self

    def _merge_state(self, other: Reduction) -> None:
        assert isinstance(other, RunningStats)
        self.count, self._mean, self._m2 = chan_merge(self.count, self._mean, self._m2,
                                                      other.count, other._mean, other._m2)

    def _masked(self, values: np.ndarray, min_count: int) -> np.ndarray:
        return np.where(np.asarray(self.count) > min_count, values, np.nan)

    def mean(self) -> xr.DataArray:
        """Mean so far (NaN where nothing was counted)."""
        template = self._require_data()
        return template.data_array(self._masked(self._mean, 0), attrs=self._result_attrs())

    def var(self, ddof: int | None = None) -> xr.DataArray:
        """Variance so far, with ``ddof`` (default: the one given at construction)."""
        template = self._require_data()
        ddof = self.ddof if ddof is None else ddof
        with np.errstate(invalid="ignore", divide="ignore"):
            var = self._m2 / np.maximum(np.asarray(self.count) - ddof, 1)
        return template.data_array(self._masked(var, ddof), attrs=self._result_attrs())

    def std(self, ddof: int | None = None) -> xr.DataArray:
        """Standard deviation so far."""
        return np.sqrt(self.var(ddof))

    def result(self) -> xr.Dataset:
        """Dataset with ``mean``, ``std`` and ``count`` (per element when ``skipna``)."""
        template = self._require_data()
        count = np.asarray(self.count)
        count_da = template.data_array(count) if count.ndim else xr.DataArray(count)
        return xr.Dataset({"mean": self.mean(), "std": self.std(), "count": count_da},
                          attrs={**template.attrs, **self._result_attrs(), "ddof": self.ddof})


class RollingMean(Reduction):
    """Mean over the last ``window`` trains: a bounded deque of the (reduced) items.

    Memory is ``window`` x item size: reduce items first (``dim=`` or upstream) for images.
    Merging keeps the ``window`` newest items of both parts, ordered by train ID when every
    item has one (a ``trainId`` coordinate), else ``other``'s items count as newer.

    Parameters
    ----------
    window
        Number of trains averaged.
    dim
        Dimension(s) to average within each item before storing it.
    skipna
        Ignore NaN.

    Examples
    --------
    >>> roll = RollingMean(3)
    >>> for value in [1.0, 2.0, 3.0, 4.0]:
    ...     _ = roll.update(value)
    >>> float(roll.result()), roll.result().attrs['n_items']
    (3.0, 3)
    """

    def __init__(self, window: int, *, dim: str | Sequence[str] | None = None,
                 skipna: bool = False) -> None:
        super().__init__()
        if int(window) < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.window = int(window)
        self.dim = _dims_tuple(dim)
        self.skipna = skipna
        self._reset_state()

    def _config(self) -> tuple:
        return (self.window, self.dim, self.skipna)

    def _reset_state(self) -> None:
        self.items: deque[tuple[int | None, np.ndarray]] = deque(maxlen=self.window)
        self._in_dims: tuple[str, ...] | None = None

    def update(self, x: Any) -> RollingMean:
        """Add one item; the oldest drops out once ``window`` items are held."""
        arr, dims = as_array(x, self._in_dims)
        axes = _axes(dims, self.dim)
        keep = tuple(d for i, d in enumerate(dims) if i not in axes)
        mean = _nanmean if self.skipna else np.mean
        value = np.array(mean(arr, axis=axes, dtype=np.float64) if axes else arr,
                         dtype=np.float64, copy=True)
        if self.template is None:
            self.template, self._in_dims = Template.from_input(x, keep, value.shape), dims
        else:
            self.template.check(value.shape, "RollingMean.update")
        self.items.append((train_id_of(x), value))
        self._count(x)
        return self

    def _merge_state(self, other: Reduction) -> None:
        assert isinstance(other, RollingMean)
        items = list(self.items) + [(tid, value.copy()) for tid, value in other.items]
        if all(tid is not None for tid, _ in items):
            items.sort(key=lambda item: item[0])
        self.items = deque(items[-self.window:], maxlen=self.window)

    def result(self) -> xr.DataArray:
        """Mean of the items in the window, with ``n_items`` and the window's train IDs."""
        template = self._require_data()
        stack = np.stack([value for _, value in self.items])
        values = _nanmean(stack, axis=0) if self.skipna else stack.mean(axis=0)
        tids = [tid for tid, _ in self.items if tid is not None]
        attrs = {**self._result_attrs(), "window": self.window, "n_items": len(self.items)}
        if tids:
            attrs["window_first_train_id"], attrs["window_last_train_id"] = min(tids), max(tids)
        return template.data_array(values, attrs=attrs)
