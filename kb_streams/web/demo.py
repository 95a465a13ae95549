"""The pump-probe demo on a dashboard: the detector, the ROI, the curve filling in, the XGM.

:func:`demo_dashboard` builds :func:`kb_streams.demo.pump_probe_graph`'s analysis with its ROI
read from the page (a box drawn on the module image changes the curve from the next train on),
gated by the page's pause switch, and puts its results on a :class:`Dashboard`.
``kb-streams demo`` serves it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..demo import PumpProbeCurve, PumpProbeSetup, bin_ratios, ratio_of_train
from .dashboard import Dashboard

if TYPE_CHECKING:
    from streamz import Stream

    from ..train import Train

__all__ = ["demo_dashboard", "detector_image", "DEMO_TITLE"]

DEMO_TITLE = "kb-streams demo: pump-probe delay scan"


def _module_number(source: str) -> int:
    match = re.search(r"/(\d+)CH", source)
    return int(match.group(1)) if match else -1


def detector_image(train: Train, setup: PumpProbeSetup, pulse: int = 0) -> np.ndarray:
    """One pulse of every detector module, ``(module, slow_scan, fast_scan)`` in module order
    (copies only that pulse: 1 Mpx for AGIPD-1M)."""
    sources = sorted(train.select(setup.detector_sources, setup.key).sources,
                     key=_module_number)
    views = (train[src].xarray(keys=[setup.key])[setup.key] for src in sources)
    return np.stack([np.asarray(view.isel(pulse=pulse).values, dtype=np.float32)
                     for view in views])


def module_image(train: Train, setup: PumpProbeSetup, pulse: int = 0) -> Any:
    """One pulse of the ROI's module, ``(slow_scan, fast_scan)``."""
    for src in train.select(setup.detector_sources, setup.key).sources:
        if _module_number(src) == setup.module:
            module = train[src].xarray(keys=[setup.key])[setup.key]
            return module.isel(pulse=pulse).assign_attrs(n_pulses=module.sizes["pulse"])
    raise KeyError(f"train {train.train_id}: module {setup.module} is missing")


def xgm_energy(train: Train, setup: PumpProbeSetup) -> float:
    """Mean XGM pulse energy of the train's pulses (the XGM pads its array past them)."""
    n_pulses = module_image(train, setup).attrs.get("n_pulses")
    energies = train[setup.xgm, setup.xgm_key].ndarray()
    return float(np.mean(energies[:n_pulses]))


def at_most(per_second: float, dashboard: Dashboard):
    """A filter passing items at most ``per_second`` times a second while a page is open:
    a preview image need not be made per train, nor for no one."""
    last = [float("-inf")]

    def due(_: Any) -> bool:
        if not dashboard.sessions:
            return False
        now = time.monotonic()
        if now - last[0] < 1.0 / per_second:
            return False
        last[0] = now
        return True

    return due


def demo_dashboard(source: Stream, setup: PumpProbeSetup | None = None,
                   dashboard: Dashboard | None = None) -> tuple[Dashboard, PumpProbeCurve]:
    """The demo's graph on ``source``, with its results on ``dashboard`` (a new one if None).

    Plots: the assembled detector (pulse 0, modules tiled), the ROI's module with the ROI box,
    the pump-probe curve (mean ± std per delay bin; its Reset button restarts it), the XGM
    pulse energy over time. The ROI is the page's ``ROI`` parameter; Pause stops the trains
    before the analysis (the curve stops accumulating).

    Examples
    --------
    >>> from streamz import Stream
    >>> dashboard, curve = demo_dashboard(Stream())
    >>> sorted(dashboard.plots), dashboard.parameters["ROI"].value
    (['Detector (pulse 0)', 'Module 0 (pulse 0)', 'Pump-probe ratio by delay', 'XGM pulse \
energy'], ((198, 230), (57, 89)))
    """
    setup = setup or PumpProbeSetup()
    dashboard = dashboard or Dashboard(DEMO_TITLE)
    module_plot = f"Module {setup.module} (pulse 0)"
    roi = dashboard.roi("ROI", (setup.slow_scan, setup.fast_scan), image=module_plot)
    trains = dashboard.gate(source)

    def ratio(train: Train) -> tuple[float, float]:
        (ss, fs) = roi.value  # read per train: a box drawn in the browser applies from now on
        return ratio_of_train(train, dataclasses.replace(setup, slow_scan=ss, fast_scan=fs))

    curve = bin_ratios(trains.map(ratio), setup)
    curve.stream.to_dashboard("Pump-probe ratio by delay", kind="curve", dashboard=dashboard)
    # one pulse of 16 modules is a 13 ms gather: made twice a second while a page is open
    images = trains.filter(at_most(2.0, dashboard))
    images.map(detector_image, setup).to_dashboard("Detector (pulse 0)", kind="image",
                                                   dashboard=dashboard)
    images.map(module_image, setup).to_dashboard(module_plot, kind="image", dashboard=dashboard)
    trains.map(xgm_energy, setup).to_dashboard("XGM pulse energy", kind="scalar",
                                               dashboard=dashboard)
    return dashboard, curve
