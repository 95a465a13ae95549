"""Pump-probe: split each train's pulses into pumped (on) and unpumped (off), then reduce."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._base import Reduction
from .stats import RunningStats

__all__ = ["PumpProbe"]

Pattern = slice | Sequence[int] | Sequence[bool] | np.ndarray

SIGNALS = ["on", "off", "on-off"]


def _describe(pattern: Pattern) -> Any:
    if isinstance(pattern, slice):
        return ("slice", pattern.start, pattern.stop, pattern.step)
    arr = np.asarray(pattern)
    return (arr.dtype.kind, tuple(arr.ravel().tolist()))


class PumpProbe(Reduction):
    """On/off split of pulses by a pattern, feeding another reduction with on, off and on-off.

    Each item is per-pulse data (e.g. intensities ``('pulse',)``, or ROI images
    ``('pulse', 'slow_scan', 'fast_scan')``). The ``on`` and ``off`` pulses are averaged (or
    summed) per train into a DataArray with a ``signal`` dimension ``['on', 'off', 'on-off']``,
    which is passed to ``into``: by default a :class:`RunningStats` (mean/std over trains); a
    :class:`BinnedStats` over a delay gives the pump-probe curve (``update(x, by=delay)``).

    Parameters
    ----------
    on, off
        The pulses of each group: a slice of positions (``slice(0, None, 2)``), a boolean mask
        over the pulses, or a list of pulse IDs (looked up in the ``dim`` coordinate of xarray
        input; numpy input has positions as IDs, as xarray's default index).
    dim
        The pulse dimension (``'pulse'``; ``'cell'`` for cell-labelled data). For numpy input,
        axis 0 is the pulse axis.
    statistic
        ``'mean'`` or ``'sum'`` over the selected pulses.
    into
        The reduction fed with the split signals (default ``RunningStats()``).

    Examples
    --------
    >>> import numpy as np
    >>> pp = PumpProbe(on=slice(0, None, 2), off=slice(1, None, 2))
    >>> _ = pp.update(np.array([3.0, 1.0, 5.0, 1.0]))
    >>> pp.result()['mean'].sel(signal='on-off').item()
    3.0
    >>> from kb_streams.reduce import BinnedStats
    >>> curve = PumpProbe(on=[0, 2], off=[1, 3], into=BinnedStats([0, 1, 2], dim='delay'))
    >>> _ = curve.update(np.array([3.0, 1.0, 5.0, 1.0]), by=0.5)
    >>> curve.result()['mean'].sel(signal='on-off').values.tolist()
    [3.0, nan]
    """

    def __init__(self, on: Pattern, off: Pattern, *, dim: str = "pulse",
                 statistic: str = "mean", into: Reduction | None = None) -> None:
        super().__init__()
        if statistic not in ("mean", "sum"):
            raise ValueError(f"statistic must be 'mean' or 'sum', not {statistic!r}")
        self.on, self.off = on, off
        self.dim = dim
        self.statistic = statistic
        self.into = RunningStats() if into is None else into

    def _config(self) -> tuple:
        return (_describe(self.on), _describe(self.off), self.dim, self.statistic,
                type(self.into).__name__, self.into._config())

    def _reset_state(self) -> None:
        self.into.reset()

    def _select(self, x: xr.DataArray, pattern: Pattern, which: str) -> xr.DataArray:
        if isinstance(pattern, slice):
            picked = x.isel({self.dim: pattern})
        else:
            arr = np.asarray(pattern)
            if arr.dtype == bool:
                if arr.shape != (x.sizes[self.dim],):
                    raise ValueError(f"{which} mask has {arr.size} entries but the data has "
                                     f"{x.sizes[self.dim]} {self.dim}s")
                picked = x.isel({self.dim: arr})
            elif self.dim in x.indexes:
                try:
                    picked = x.sel({self.dim: arr})
                except KeyError as exc:
                    raise KeyError(f"{which} pulse IDs not in the data's {self.dim!r} "
                                   f"coordinate: {exc}") from None
            else:
                picked = x.isel({self.dim: arr})
        if picked.sizes[self.dim] == 0:
            raise ValueError(f"the {which} pattern selects no {self.dim}s out of "
                             f"{x.sizes[self.dim]}")
        return picked

    def split(self, x: Any) -> xr.DataArray:
        """One train's on, off and on-off (dim ``signal``), other dims and coords kept.

        Examples
        --------
        >>> PumpProbe(on=[True, False], off=[False, True]).split([2.0, 0.5]).values.tolist()
        [2.0, 0.5, 1.5]
        """
        if not isinstance(x, xr.DataArray):
            arr = np.asarray(x)
            x = xr.DataArray(arr, dims=(self.dim,) + tuple(f"dim_{i}"
                                                         for i in range(arr.ndim - 1)))
        if self.dim not in x.dims:
            raise ValueError(f"no {self.dim!r} dimension in the data (dims {x.dims})")
        reduce = "mean" if self.statistic == "mean" else "sum"
        on = getattr(self._select(x, self.on, "on"), reduce)(self.dim)
        off = getattr(self._select(x, self.off, "off"), reduce)(self.dim)
        coords = {name: coord.variable for name, coord in on.coords.items()
                  if name in off.coords and coord.equals(off.coords[name])}
        coords["signal"] = ("signal", SIGNALS)
        values = np.stack([on.values, off.values, on.values - off.values])
        return xr.DataArray(values, dims=("signal",) + on.dims, coords=coords, name=x.name,
                            attrs=dict(x.attrs))

    def update(self, x: Any, by: Any = None) -> PumpProbe:
        """Split one train and feed ``into`` (``by`` is passed on, e.g. the delay to bin by)."""
        if by is None and isinstance(x, tuple) and len(x) == 2:
            by, x = x
        signals = self.split(x)
        if by is None:
            self.into.update(signals)
        else:
            self.into.update(signals, by=by)
        self._count(signals)
        self.template = self.into.template
        return self

    def _merge_state(self, other: Reduction) -> None:
        assert isinstance(other, PumpProbe)
        self.into.merge(other.into)

    def merge(self, other: PumpProbe) -> PumpProbe:  # type: ignore[override]
        """Merge the inner reductions (see :meth:`Reduction.merge`)."""
        super().merge(other)
        self.template = self.into.template
        return self

    def result(self) -> xr.DataArray | xr.Dataset:
        """The inner reduction's result (with a ``signal`` dimension)."""
        return self.into.result()
