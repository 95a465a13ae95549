"""Fixed-bin reductions: a 1-D histogram, and count/mean/std of values binned by a scalar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._base import Reduction, Template, as_array, chan_merge

__all__ = ["Bins", "Histogram", "BinnedStats"]


class Bins:
    """Fixed bin edges: ``bins`` edges, or ``bins`` equal bins over ``range``.

    As :func:`numpy.histogram`: bins are half-open ``[low, high)`` except the last, which
    includes its upper edge. Values below the first edge are underflow, above the last
    overflow (``-inf``/``+inf`` included), NaN counted apart.

    Examples
    --------
    >>> bins = Bins(4, (0, 2))
    >>> bins.edges.tolist(), bins.index(0.5), bins.index(2.0), bins.index(-1), bins.index(9)
    ([0.0, 0.5, 1.0, 1.5, 2.0], 1, 3, -1, 4)
    """

    def __init__(self, bins: int | Sequence[float] | np.ndarray,
                 range: tuple[float, float] | None = None) -> None:  # noqa: A002 - numpy's name
        if np.ndim(bins) == 0:
            if range is None:
                raise ValueError("give bin edges, or a number of bins with range=(low, high)")
            low, high = map(float, range)
            if not low < high:
                raise ValueError(f"range must have low < high, not {range}")
            self.edges = np.linspace(low, high, int(bins) + 1)
            self.uniform = True
        else:
            self.edges = np.asarray(bins, dtype=np.float64)
            if self.edges.ndim != 1 or self.edges.size < 2 or np.any(np.diff(self.edges) <= 0):
                raise ValueError("bin edges must be a 1-D, strictly increasing sequence of at "
                                 "least 2 values")
            self.uniform = False

    @property
    def n(self) -> int:
        """Number of bins."""
        return self.edges.size - 1

    @property
    def centres(self) -> np.ndarray:
        """Bin centres."""
        return (self.edges[:-1] + self.edges[1:]) / 2

    def index(self, value: float) -> int:
        """Bin of ``value``: ``-1`` underflow, ``n`` overflow, ``-2`` NaN."""
        if np.isnan(value):
            return -2
        if value < self.edges[0]:
            return -1
        if value > self.edges[-1]:
            return self.n
        return min(int(np.searchsorted(self.edges, value, side="right")) - 1, self.n - 1)

    def counts(self, values: np.ndarray) -> tuple[np.ndarray, int, int, int]:
        """``(counts per bin, underflow, overflow, nan)`` of the values of an array."""
        values = values.ravel()
        nan = np.isnan(values) if values.dtype.kind in "fc" else None
        n_nan = int(nan.sum()) if nan is not None else 0
        if n_nan:
            values = values[~nan]
        low, high = self.edges[0], self.edges[-1]
        bins = (self.n, (low, high)) if self.uniform else (self.edges, None)
        counts, _ = np.histogram(values, bins=bins[0], range=bins[1])
        return counts, int((values < low).sum()), int((values > high).sum()), n_nan

    def coords(self, dim: str) -> dict[str, tuple[str, np.ndarray]]:
        """Coordinates for a binned dimension: centres, and ``<dim>_low``/``<dim>_high`` edges."""
        return {dim: (dim, self.centres), f"{dim}_low": (dim, self.edges[:-1].copy()),
                f"{dim}_high": (dim, self.edges[1:].copy())}

    def key(self) -> tuple:
        """Identity for merge checks."""
        return tuple(self.edges.tolist())


class Histogram(Reduction):
    """Counts of values in fixed bins, accumulated over trains, with under/overflow.

    Every value of each item is counted (an image, a vector of per-pulse intensities, a
    number).

    Parameters
    ----------
    bins, range
        Bin edges, or a number of equal bins over ``range=(low, high)``.
    dim
        Name of the binned dimension in the result (default ``'bin'``).

    Examples
    --------
    >>> import numpy as np
    >>> hist = Histogram(4, range=(0, 4)).update(np.array([0.5, 1.5, 1.7, 9.0, np.nan]))
    >>> res = hist.result()
    >>> res.values.tolist(), res.attrs['overflow'], res.attrs['nan']
    ([1, 2, 0, 0], 1, 1)
    """

    def __init__(self, bins: int | Sequence[float] | np.ndarray,
                 range: tuple[float, float] | None = None, *,  # noqa: A002
                 dim: str = "bin") -> None:
        super().__init__()
        self.bins = Bins(bins, range)
        self.dim = dim
        self._reset_state()

    def _config(self) -> tuple:
        return (self.bins.key(), self.dim)

    def _reset_state(self) -> None:
        self.counts = np.zeros(self.bins.n, np.int64)
        self.underflow = self.overflow = self.nan = 0

    def update(self, x: Any) -> Histogram:
        """Count the values of one item."""
        arr, _ = as_array(x, None)
        counts, under, over, nan = self.bins.counts(arr)
        if self.template is None:
            self.template = Template.from_input(x, (), ())
        self.counts += counts
        self.underflow += under
        self.overflow += over
        self.nan += nan
        self._count(x)
        return self

    def _merge_state(self, other: Reduction) -> None:
        assert isinstance(other, Histogram)
        self.counts += other.counts
        self.underflow += other.underflow
        self.overflow += other.overflow
        self.nan += other.nan

    def result(self) -> xr.DataArray:
        """Counts per bin; attrs ``underflow``, ``overflow``, ``nan``, ``n_trains``."""
        template = self._require_data()
        attrs = {**self._result_attrs(), "underflow": self.underflow,
                 "overflow": self.overflow, "nan": self.nan}
        return template.data_array(self.counts.copy(), dims=(self.dim,),
                                   extra_coords=self.bins.coords(self.dim),
                                   name=template.name if template.name is not None
                                   else "histogram", attrs=attrs)


class BinnedStats(Reduction):
    """Count, mean and std of values binned by a scalar (e.g. a delay): a pump-probe curve.

    Each item is a value (number, vector such as per-pulse intensities, or any array of fixed
    shape) and the scalar it is binned by: ``update(value, by=delay)``, or ``update((delay,
    value))`` (the form a stream node passes). Per bin: Welford mean and variance, merged with
    Chan's formula across workers. Scalars outside the bins are counted as under/overflow and
    the value dropped; NaN scalars are counted apart.

    Parameters
    ----------
    bins, range
        Bin edges of the scalar, or a number of equal bins over ``range``.
    dim
        Name of the binned dimension (e.g. ``'delay'``); coordinates ``<dim>`` (centres),
        ``<dim>_low`` and ``<dim>_high``.
    skipna
        Ignore NaN values (counts become per element).
    ddof
        Delta degrees of freedom of ``std``.

    Examples
    --------
    >>> curve = BinnedStats([0, 1, 2], dim='delay')
    >>> for delay, signal in [(0.2, 1.0), (0.4, 3.0), (1.5, 10.0), (7.0, 0.0)]:
    ...     _ = curve.update(signal, by=delay)
    >>> res = curve.result()
    >>> res['mean'].values.tolist(), res['count'].values.tolist(), res.attrs['overflow']
    ([2.0, 10.0], [2, 1], 1)
    """

    def __init__(self, bins: int | Sequence[float] | np.ndarray,
                 range: tuple[float, float] | None = None, *,  # noqa: A002
                 dim: str = "bin", skipna: bool = False, ddof: int = 0) -> None:
        super().__init__()
        self.bins = Bins(bins, range)
        self.dim = dim
        self.skipna = skipna
        self.ddof = ddof
        self._reset_state()

    def _config(self) -> tuple:
        return (self.bins.key(), self.dim, self.skipna)

    def _reset_state(self) -> None:
        self.count: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._in_dims: tuple[str, ...] | None = None
        self.underflow = self.overflow = self.nan = 0

    def update(self, x: Any, by: Any = None) -> BinnedStats:
        """Add ``x`` to the bin of ``by`` (or ``x = (by, value)``)."""
        if by is None:
            if not (isinstance(x, tuple) and len(x) == 2):
                raise TypeError("BinnedStats.update needs by=<scalar>, or a (scalar, value) "
                                f"pair; got {type(x).__name__}")
            by, x = x
        by_value = float(np.asarray(by.data if isinstance(by, xr.DataArray) else by))
        arr, dims = as_array(x, self._in_dims)
        if self.template is None:
            if self.dim in dims:
                raise ValueError(f"the binned dimension {self.dim!r} is also a dimension of "
                                 f"the values {dims}; choose another dim=")
            self.template, self._in_dims = Template.from_input(x, dims, arr.shape), dims
            self._allocate(arr.shape)
        else:
            self.template.check(arr.shape, "BinnedStats.update")
        index = self.bins.index(by_value)
        if index == -2:
            self.nan += 1
        elif index == -1:
            self.underflow += 1
        elif index == self.bins.n:
            self.overflow += 1
        else:
            values = arr.astype(np.float64)[np.newaxis]
            n_b: Any = 1
            if self.skipna:
                finite = ~np.isnan(values)
                n_b = finite.astype(np.int64)
                values = np.where(finite, values, 0.0)
            row = slice(index, index + 1)
            n_a = self.count[row]
            n, _, _ = chan_merge(n_a.reshape(n_a.shape + (1,) * (values.ndim - n_a.ndim)),
                                 self._mean[row], self._m2[row], n_b, values, 0.0)
            self.count[row] = np.reshape(n, n_a.shape)
        self._count(x)
        return self

    def _allocate(self, shape: tuple[int, ...]) -> None:
        full = (self.bins.n,) + shape
        self.count = np.zeros(full if self.skipna else (self.bins.n,), np.int64)
        self._mean = np.zeros(full, np.float64)
        self._m2 = np.zeros(full, np.float64)

    def _merge_state(self, other: Reduction) -> None:
        assert isinstance(other, BinnedStats)
        extra = (1,) * (self._mean.ndim - self.count.ndim)
        n_a = self.count.reshape(self.count.shape + extra)
        n_b = other.count.reshape(other.count.shape + extra)
        n, self._mean, self._m2 = chan_merge(n_a, self._mean, self._m2, n_b, other._mean,
                                             other._m2)
        self.count = np.asarray(n).reshape(self.count.shape)
        self.underflow += other.underflow
        self.overflow += other.overflow
        self.nan += other.nan

    def result(self) -> xr.Dataset:
        """Dataset with ``count``, ``mean``, ``std`` and ``sem`` (std / sqrt(count)) per bin."""
        template = self._require_data()
        extra = (1,) * (self._mean.ndim - self.count.ndim)
        n = self.count.reshape(self.count.shape + extra)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, self._mean, np.nan)
            std = np.sqrt(np.where(n > self.ddof, self._m2 / np.maximum(n - self.ddof, 1),
                                   np.nan))
            sem = std / np.sqrt(np.where(n > 0, n, np.nan))
        dims = (self.dim,) + template.dims
        coords = self.bins.coords(self.dim)

        def labelled(values: np.ndarray, var_dims: tuple[str, ...]) -> xr.DataArray:
            return template.data_array(values, dims=var_dims, extra_coords=coords, name="",
                                       attrs={})

        attrs = {**template.attrs, **self._result_attrs(), "underflow": self.underflow,
                 "overflow": self.overflow, "nan": self.nan, "ddof": self.ddof}
        return xr.Dataset({"count": labelled(self.count, dims[:self.count.ndim]),
                           "mean": labelled(mean, dims), "std": labelled(std, dims),
                           "sem": labelled(sem, dims)}, attrs=attrs)

