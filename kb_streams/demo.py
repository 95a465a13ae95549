"""The pump-probe demo: a delay scan's curve, live, from AGIPD modules, the XGM and a delay line.

Per train: stack the region of interest (ROI) on the pump-sensitive ring of every detector
module into one labelled array (``module``, ``pulse``, ``slow_scan``, ``fast_scan``), sum it per
pulse, divide by the XGM pulse energies, and compare pumped (even) with unpumped (odd) pulses.
The ratios are binned by the delay-line position: the pump-probe curve. On the simulator
(:mod:`kb_streams.simulate`) the curve is ``1 + 0.5 * S(delay)``: 1.0 before time zero, rising
to ~1.49 at 4 ps.

``kb-streams demo`` runs this graph against an embedded simulator; :func:`pump_probe_graph` is
the part to copy into your own pipelines. (xarray, streamz and the simulator are imported where
they are used, so that the ``kb-streams`` command starts fast.)

On a Dask cluster (``kb-streams demo --dask``) the graph is split where the data gets small:
:func:`pump_probe_on_workers` lets every worker receive whole trains from the bridge itself and
run :func:`ratio_of_train` there (:mod:`kb_streams.dask.on_workers`), so only a ``(delay, ratio)``
pair per train (a few hundred bytes) comes back to the graph, where :func:`bin_ratios` bins it.
Receiving trains in the graph and offloading them (:mod:`kb_streams.dask.offload`) would copy every
train once more between processes, about 100 ms per 100 MB on a 2-core machine: more than the
reduction itself, and the graph's process would then receive all trains alone. The binning stays
in the graph: it is tiny, and it needs every train's result in one place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client
    from streamz import Stream

    from .train import Train
    from .dask.on_workers import from_karabo_bridge_on_workers

__all__ = ["PumpProbeSetup", "PumpProbeCurve", "ScanNumber", "pump_probe_graph",
           "pump_probe_on_workers", "bin_ratios", "ratio_of_train", "curve_table"]

#: The simulator's pump-probe scan, also the demo's default: delays from -1 to 4 ps in 5 steps.
SCAN_DELAYS = np.linspace(-1.0, 4.0, 5)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Bin edges halfway between sorted bin centres."""
    half = np.diff(centres) / 2
    inner = centres[:-1] + half
    return np.concatenate([[centres[0] - half[0]], inner, [centres[-1] + half[-1]]])


@dataclass(frozen=True)
class PumpProbeSetup:
    """Where the demo finds its data, and how it bins it (defaults: SPB's AGIPD and devices).

    Attributes
    ----------
    detector_sources
        Glob of the detector's module sources (all are stacked).
    key
        Image key of the module sources.
    module, slow_scan, fast_scan
        The ROI on the pump-sensitive ring: module number and pixel ranges (the simulator's
        ring-1 ROI by default).
    xgm, xgm_key
        XGM pipeline source and its per-pulse energy key (pulse energies first).
    delay, delay_key
        Delay-line source and its position key (ps).
    bins
        Bin edges of the delay (ps).
    pump_every
        Pulse ``p`` is pumped when ``p % pump_every == 0``, unpumped otherwise.
    """

    detector_sources: str = "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf"
    key: str = "image.data"
    module: int = 0
    slow_scan: tuple[int, int] = (198, 230)
    fast_scan: tuple[int, int] = (57, 89)
    xgm: str = "SA1_XTD2_XGM/XGM/DOOCS:output"
    xgm_key: str = "data.intensityTD"
    delay: str = "SPB_AUXT_LIC/DOOCS/PPODL"
    delay_key: str = "actualPosition"
    bins: tuple[float, ...] = field(default_factory=lambda: tuple(_edges(SCAN_DELAYS)))
    pump_every: int = 2


def ratio_of_train(train: Train, setup: PumpProbeSetup) -> tuple[float, float]:
    """``(delay, pumped/unpumped ratio)`` of one train: the demo's per-train step.

    Examples
    --------
    >>> from kb_streams.train import Train
    >>> from kb_streams.simulate import simulate
    >>> sim = simulate('AGIPD-modules', pulses=4, pool_size=1, extras=('xgm', 'delay'))
    >>> delay, ratio = ratio_of_train(Train(*next(sim)), PumpProbeSetup())
    >>> round(delay, 1), round(ratio, 2)   # before time zero: no pump effect
    (-1.0, 1.0)
    """
    import xarray as xr

    # 1. the ROI of every module in one labelled array (copying only those pixels):
    #    (module, pulse, slow_scan, fast_scan)
    modules = train.stack_modules(setup.key, setup.detector_sources,
                                  roi={"slow_scan": slice(*setup.slow_scan),
                                       "fast_scan": slice(*setup.fast_scan)})
    if not modules.module_present.sel(module=setup.module):  # else its pixels are all NaN
        raise KeyError(f"train {train.train_id}: module {setup.module} is missing")
    # 2. per-pulse ROI intensity, normalised by the XGM pulse energies
    roi = modules.sel(module=setup.module)
    intensity = roi.sum(("slow_scan", "fast_scan"), dtype=np.float64)
    n_pulses = intensity.sizes["pulse"]
    energy = train[setup.xgm, setup.xgm_key].ndarray()[:n_pulses]
    normalised = intensity / xr.DataArray(energy, dims="pulse")
    # 3. pumped over unpumped pulses, at this train's delay
    pumped = np.arange(n_pulses) % setup.pump_every == 0
    ratio = normalised[pumped].mean() / normalised[~pumped].mean()
    delay = train[setup.delay, setup.delay_key].ndarray()
    return float(delay), float(ratio)


class ScanNumber:
    """The pass of a delay scan a ``(delay, ...)`` pair belongs to: a new pass starts each time
    the delay comes back into the first bin. The demo's curve starts afresh with each pass.

    Examples
    --------
    >>> scan = ScanNumber([-1.5, -0.5, 0.5, 1.5])
    >>> [scan((delay, 1.0)) for delay in [-1, 0, 1, 0, -1, -1, 0]]
    [0, 0, 0, 0, 1, 1, 1]
    """

    def __init__(self, edges: tuple[float, ...] | list[float]) -> None:
        self.first = (edges[0], edges[1])
        self.number = 0
        self._away = False

    def __call__(self, pair: tuple[float, Any]) -> int:
        at_start = self.first[0] <= pair[0] < self.first[1]
        if at_start and self._away:
            self.number += 1
        self._away = not at_start
        return self.number


class PumpProbeCurve:
    """The latest binned curve of a running graph (thread-safe to read from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: xr.Dataset | None = None
        self.trains = 0
        self.stream: Stream | None = None  # the binned curve's node (set by bin_ratios)

    def _store(self, result: xr.Dataset) -> None:
        if result.attrs.get("final"):
            return  # a closed scan pass: the result this train already stored
        with self._lock:
            self._result = result
            self.trains += 1

    @property
    def result(self) -> xr.Dataset | None:
        """``count``, ``mean``, ``std`` of the ratio per ``delay`` bin (None before a train)."""
        with self._lock:
            return self._result

    def table(self) -> str:
        """The curve as a text table with bars (what ``kb-streams demo`` shows)."""
        result = self.result
        if result is None:
            return "pump-probe curve: waiting for trains..."
        scan = f", scan pass {result.attrs['segment']}" if "segment" in result.attrs else ""
        return curve_table(result, title="pumped/unpumped ratio of ring-1 intensity per "
                           f"µJ{scan}")


def curve_table(result: xr.Dataset, *, title: str = "", width: int = 30) -> str:
    """A :class:`~kb_streams.reduce.BinnedStats` result as a text table, a bar per bin.

    Examples
    --------
    >>> from kb_streams.reduce import BinnedStats
    >>> curve = BinnedStats([0, 1, 2], dim='delay')
    >>> for delay, value in [(0.5, 1.0), (0.5, 1.2), (1.5, 1.4)]:
    ...     _ = curve.update(value, by=delay)
    >>> print(curve_table(curve.result(), width=10))
         delay      n        mean ± std
         0.500      2     1.100 ± 0.100   █
         1.500      1     1.400 ± 0.000   ██████████
    """
    dim = next(iter(result["count"].dims))
    lines = [title] if title else []
    mean = result["mean"].values.astype(float)
    std = result["std"].values.astype(float)
    count = result["count"].values
    filled = mean[count > 0]
    low, high = (filled.min(), filled.max()) if filled.size else (0.0, 1.0)
    lines.append(f"{dim:>10} {'n':>6} {'mean ± std':>17}")
    for x, n, m, s in zip(result[dim].values, count, mean, std, strict=True):
        if n:
            # bars span the lowest to the highest mean, so that the change stands out
            bar = "█" * (1 + round((width - 1) * (m - low) / (high - low))) if high > low else "█"
            lines.append(f"{x:10.3f} {n:6d} {m:9.3f} ± {s:<5.3f}   {bar}")
        else:
            lines.append(f"{x:10.3f} {n:6d} {'-':>9}")
    return "\n".join(lines)


def pump_probe_graph(
    source: Stream,
    setup: PumpProbeSetup | None = None,
    *,
    apply: Callable[[Stream, Callable[[Train], Any]], Stream] | None = None,
) -> PumpProbeCurve:
    """Build the demo graph on ``source``: per-train ratio, binned by delay, latest curve kept.

    Parameters
    ----------
    source
        A stream of :class:`~kb_streams.train.Train` (``Stream.from_karabo_bridge(...)``).
    setup
        Source names, ROI and bins (default: :class:`PumpProbeSetup`).
    apply
        How to run the per-train step: ``apply(stream, func) -> stream``. Default
        ``stream.map(func)`` in the graph's event loop; pass e.g. an offload to Dask workers.

    Returns
    -------
    PumpProbeCurve
        What :func:`bin_ratios` returns for the per-train ratios.

    Examples
    --------
    >>> from streamz import Stream
    >>> source = Stream.from_karabo_bridge('tcp://127.0.0.1:45000')   # doctest: +SKIP
    >>> curve = pump_probe_graph(source)                               # doctest: +SKIP
    >>> source.start()                                                 # doctest: +SKIP
    >>> print(curve.table())                                           # doctest: +SKIP
    """
    setup = setup or PumpProbeSetup()
    apply = apply or (lambda stream, func: stream.map(func))
    return bin_ratios(apply(source, lambda train: ratio_of_train(train, setup)), setup)


def bin_ratios(ratios: Stream, setup: PumpProbeSetup | None = None) -> PumpProbeCurve:
    """Bin a stream of ``(delay, ratio)`` pairs by delay: the second half of the demo graph.

    Parameters
    ----------
    ratios
        A stream of :func:`ratio_of_train` results.
    setup
        Where the bin edges come from (default: :class:`PumpProbeSetup`).

    Returns
    -------
    PumpProbeCurve
        Holds the latest curve, for display.

    Examples
    --------
    >>> from streamz import Stream
    >>> ratios = Stream()
    >>> curve = bin_ratios(ratios)
    >>> for pair in [(-1.0, 1.0), (4.0, 1.5), (4.0, 1.48)]:
    ...     ratios.emit(pair)
    >>> curve.trains, curve.result["count"].values.tolist()
    (3, [1, 0, 0, 0, 2])
    """
    from .reduce import BinnedStats

    setup = setup or PumpProbeSetup()
    curve = PumpProbeCurve()
    binned = ratios.reduce_online(BinnedStats(list(setup.bins), dim="delay"),
                                  segment=ScanNumber(setup.bins))
    binned.sink(curve._store)
    curve.stream = binned
    return curve


def pump_probe_on_workers(
    endpoint: str,
    client: Client,
    setup: PumpProbeSetup | None = None,
    *,
    sock: str = "REQ",
    **options: Any,
) -> from_karabo_bridge_on_workers:
    """A source whose Dask workers receive trains and emit ``(delay, ratio)`` in train order.

    Each worker opens its own bridge client on ``endpoint`` and runs :func:`ratio_of_train` on
    the trains it receives (:mod:`kb_streams.dask.on_workers`); whole trains never reach this
    process. Connect :func:`bin_ratios` to it for the curve; failed trains (e.g. the ROI's module
    missing) come out on ``source.errors``.

    Parameters
    ----------
    endpoint
        The bridge, as the *workers* reach it.
    client
        The :class:`distributed.Client` (:func:`kb_streams.cluster.connect`), created first.
    setup
        Source names, ROI and bins (default: :class:`PumpProbeSetup`).
    sock
        ``'REQ'`` (REP bridge) or ``'PULL'`` (PUSH bridge): one receiver per worker, the bridge
        spreads the trains over them; ``'SUB'`` (PUB bridge): a single receiver, since every
        subscriber gets every train.
    options
        More :class:`~kb_streams.dask.on_workers.from_karabo_bridge_on_workers` options.

    Examples
    --------
    >>> from kb_streams.cluster import connect
    >>> client = connect(n_workers=2)                                    # doctest: +SKIP
    >>> source = pump_probe_on_workers("tcp://10.0.0.1:45000", client)   # doctest: +SKIP
    >>> curve = bin_ratios(source)                                       # doctest: +SKIP
    >>> source.start()                                                   # doctest: +SKIP
    >>> print(curve.table())                                             # doctest: +SKIP
    """
    from streamz import Stream

    from .dask import on_workers  # noqa: F401 - registers Stream.from_karabo_bridge_on_workers

    sock = sock.upper()
    if sock == "SUB":
        options.setdefault("n", 1)
    return Stream.from_karabo_bridge_on_workers(endpoint, ratio_of_train, client, sock=sock,
                                                args=(setup or PumpProbeSetup(),), **options)


def __getattr__(name: str) -> Any:
    # embedded_simulator moved to kb_streams.simulate.embedded; imported on first use, so that
    # importing this module (as the ``kb-streams`` command does) does not load the simulator
    if name == "embedded_simulator":
        from .simulate.embedded import embedded_simulator

        return embedded_simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
