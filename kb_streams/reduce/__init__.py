"""Online reductions: small, mergeable, streamz-friendly.

Each reduction has ``update(x)`` (one item), ``merge(other)`` (fold in a partial result from
another worker: over any split of the data, merging the parts equals one pass), ``reset()``,
``copy()`` and ``result()`` (labelled xarray). State is the size of the result, never of the
inputs, so reductions pickle small and cheap.

| class | result |
|---|---|
| :class:`RunningStats` | mean/std/count over trains (per element, or pooling ``dim``) |
| :class:`RollingMean` | mean over the last N trains |
| :class:`Histogram` | counts in fixed bins, with under/overflow |
| :class:`BinnedStats` | count/mean/std/sem of values binned by a scalar (delay scans) |
| :class:`PumpProbe` | on/off/on-off by pulse pattern, fed into another reduction |

:class:`Segments` runs any of them segment by segment (reset on a signal, final result of each
segment kept). Importing this package registers the streamz node ``Stream.reduce_online(reduction,
emit=, every=, segment=, reset_on=)``.
"""

from __future__ import annotations

from ..train_id import train_id_of
from ._base import Reduction, merge_all
from .histogram import BinnedStats, Bins, Histogram
from .pumpprobe import PumpProbe
from .segments import Segments
from .stats import RollingMean, RunningStats
from .stream import reduce_online

__all__ = [
    "Bins",
    "BinnedStats",
    "Histogram",
    "PumpProbe",
    "Reduction",
    "RollingMean",
    "RunningStats",
    "Segments",
    "merge_all",
    "reduce_online",
    "train_id_of",
]
