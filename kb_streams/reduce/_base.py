"""What every online reduction shares: the update/merge/reset/result contract and its labels."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from ..train_id import train_id_of

__all__ = ["Reduction", "Template", "as_array", "chan_merge", "merge_all"]

R = TypeVar("R", bound="Reduction")

#: Per-train labels that do not describe an accumulated result.
_PER_TRAIN_COORDS = {"trainId"}
_PER_TRAIN_ATTRS = {"timestamp"}


@dataclass
class Template:
    """The labels of a result: dims, shape, coordinates (small copies), name and attrs.

    Built from the first input so results keep its coordinates, without holding on to the input
    itself (which may be a view on a 100 MB train).
    """

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict[Hashable, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)
    name: Hashable | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_input(cls, x: Any, keep_dims: Sequence[str], shape: tuple[int, ...]) -> Template:
        """Labels for an output with ``keep_dims`` (of input ``x``) and ``shape``."""
        if not isinstance(x, xr.DataArray):
            return cls(tuple(keep_dims), shape)
        coords = {
            name: (tuple(coord.dims), np.array(coord.values, copy=True))
            for name, coord in x.coords.items()
            if name not in _PER_TRAIN_COORDS and set(coord.dims) <= set(keep_dims)
        }
        attrs = {k: v for k, v in x.attrs.items() if k not in _PER_TRAIN_ATTRS}
        return cls(tuple(keep_dims), shape, coords, x.name, attrs)

    def check(self, shape: tuple[int, ...], what: str) -> None:
        """Raise when a later input does not match the first one."""
        if shape != self.shape:
            raise ValueError(f"{what}: shape {shape} differs from the first input's "
                             f"{self.shape} (dims {self.dims})")

    def data_array(self, values: np.ndarray, *, dims: Sequence[str] | None = None,
                   extra_coords: dict | None = None, name: Hashable | None = None,
                   attrs: dict | None = None) -> xr.DataArray:
        """A DataArray with these labels around ``values``."""
        dims = tuple(self.dims if dims is None else dims)
        coords = {k: v for k, v in self.coords.items() if set(v[0]) <= set(dims)}
        coords.update(extra_coords or {})
        return xr.DataArray(values, dims=dims, coords=coords,
                            name=self.name if name is None else name,
                            attrs={**self.attrs, **(attrs or {})})


def as_array(x: Any, dims: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(ndarray, dims)`` of an input; xarray input transposed (a view) to ``dims`` if given."""
    if isinstance(x, xr.DataArray):
        if dims is not None and x.dims != dims:
            if set(x.dims) != set(dims):
                raise ValueError(f"input dims {x.dims} differ from the first input's {dims}")
            x = x.transpose(*dims)
        return np.asarray(x.data), tuple(map(str, x.dims))
    if isinstance(x, xr.Dataset):
        raise TypeError("reductions take one array at a time; select a variable of the Dataset")
    arr = np.asarray(x)
    return arr, tuple(f"dim_{i}" for i in range(arr.ndim)) if dims is None else dims


def chan_merge(n_a: Any, mean_a: np.ndarray, m2_a: np.ndarray, n_b: Any, mean_b: Any,
               m2_b: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """Combine two (count, mean, sum of squared deviations) summaries (Chan et al., 1979).

    ``mean_a`` and ``m2_a`` are updated in place and returned. Counts may be scalars or arrays
    broadcasting against the means; where a count is 0 its mean must be finite (use 0).

    Examples
    --------
    >>> import numpy as np
    >>> a, b = np.array([1.0, 2.0]), np.array([3.0, 5.0, 7.0])
    >>> n, mean, m2 = chan_merge(2, np.array(a.mean()), np.array(a.var() * 2),
    ...                          3, b.mean(), b.var() * 3)
    >>> n, float(mean), bool(np.isclose(m2 / n, np.r_[a, b].var()))
    (5, 3.6, True)
    """
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n > 0, np.true_divide(n_b, n), 0.0) if np.ndim(n) else \
            (n_b / n if n else 0.0)
    delta = np.subtract(mean_b, mean_a)
    mean_a += delta * frac
    delta *= delta
    delta *= np.multiply(n_a, frac)
    m2_a += delta
    m2_a += m2_b
    return n, mean_a, m2_a


class Reduction(ABC):
    """An online reduction: fed one item at a time, mergeable across workers.

    Subclasses keep state proportional to the result (never the inputs), so they pickle small
    and cheap, and ``a.merge(b)`` over partial results from any split of the data equals one
    pass over all of it (within float rounding).

    The shared bookkeeping: ``n_updates`` (items accumulated), ``first_train_id`` and
    ``last_train_id`` (from the items' ``trainId`` coordinates, when present), reported in the
    result's attrs as ``n_trains``, ``first_train_id`` and ``last_train_id``.
    """

    def __init__(self) -> None:
        self.n_updates = 0
        self.first_train_id: int | None = None
        self.last_train_id: int | None = None
        self.template: Template | None = None

    # --- the contract ---------------------------------------------------------------------
    @abstractmethod
    def update(self: R, x: Any) -> R:
        """Accumulate one item; returns self."""

    @abstractmethod
    def _merge_state(self, other: Reduction) -> None:
        """Fold ``other``'s state into this one (both non-empty, compatible)."""

    @abstractmethod
    def _reset_state(self) -> None:
        """Forget the accumulated state."""

    @abstractmethod
    def _config(self) -> tuple:
        """Parameters that must match for two reductions to merge."""

    @abstractmethod
    def result(self) -> xr.DataArray | xr.Dataset:
        """The labelled result so far."""

    # --- shared behaviour -----------------------------------------------------------------
    def merge(self: R, other: R) -> R:
        """Fold ``other`` (a partial result of the same kind) into this one; returns self.

        Raises
        ------
        TypeError, ValueError
            When ``other`` is another kind of reduction or has other parameters (bins, dim...).
        """
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if self._config() != other._config():
            raise ValueError(f"cannot merge {type(self).__name__}s with different parameters: "
                             f"{self._config()} != {other._config()}")
        if other.n_updates == 0:
            return self
        if self.n_updates == 0:
            self._take(other)
            return self
        if other.template is not None and self.template is not None:
            self.template.check(other.template.shape, f"merging {type(self).__name__}")
        self._merge_state(other)
        self.n_updates += other.n_updates
        self.first_train_id = _min(self.first_train_id, other.first_train_id)
        self.last_train_id = _max(self.last_train_id, other.last_train_id)
        return self

    def _take(self, other: Reduction) -> None:
        self.__dict__.update(copy.deepcopy(other.__dict__))

    def reset(self: R) -> R:
        """Forget everything accumulated (parameters stay); returns self."""
        self._reset_state()
        self.n_updates = 0
        self.first_train_id = self.last_train_id = None
        self.template = None
        return self

    def copy(self: R) -> R:
        """An independent copy (a snapshot to send elsewhere while this one keeps going)."""
        return copy.deepcopy(self)

    def __add__(self: R, other: R) -> R:
        return self.copy().merge(other)

    def _count(self, x: Any) -> None:
        self.n_updates += 1
        tid = train_id_of(x)
        if tid is not None:
            self.first_train_id = _min(self.first_train_id, tid)
            self.last_train_id = _max(self.last_train_id, tid)

    def _result_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"n_trains": self.n_updates}
        if self.first_train_id is not None:
            attrs["first_train_id"] = self.first_train_id
            attrs["last_train_id"] = self.last_train_id
        return attrs

    def _require_data(self) -> Template:
        if self.template is None:
            raise ValueError(f"{type(self).__name__} has no data yet")
        return self.template

    def __repr__(self) -> str:
        shape = self.template.shape if self.template else None
        return f"<{type(self).__name__} n_trains={self.n_updates} shape={shape}>"


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def merge_all(reductions: Iterable[R]) -> R:
    """Merge partial results into a new reduction (the inputs are left unchanged).

    Examples
    --------
    >>> from kb_streams.reduce import RunningStats
    >>> parts = [RunningStats().update(1.0), RunningStats().update(3.0)]
    >>> float(merge_all(parts).mean())
    2.0
    """
    items = iter(reductions)
    try:
        total = next(items).copy()
    except StopIteration:
        raise ValueError("merge_all() needs at least one reduction") from None
    for item in items:
        total.merge(item)
    return total
