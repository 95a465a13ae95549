"""What the web process needs from a :class:`~kb_streams.web.Dashboard`, as plain data, and
the controls it sends back.

Graph side, no sockets: :func:`layout` (which plots and controls a page has), :func:`status`
(header, parameters, error records), :func:`plot_updates` (each plot's state, with its columns
only when its item is newer than the web process has) and :func:`apply_control` (a button,
switch or ROI box from a page, applied to the dashboard and logged).

Examples
--------
>>> from streamz import Stream
>>> from kb_streams.web import Dashboard
>>> dashboard = Dashboard("demo")
>>> source = Stream()
>>> _ = source.to_dashboard("mean", kind="scalar", dashboard=dashboard)
>>> source.emit(2.0)
>>> [p["name"] for p in layout(dashboard)["plots"]]
['mean']
>>> update = plot_updates(dashboard, {})["mean"]
>>> update["version"], update["columns"]["y"].tolist()
(1, [2.0])
>>> plot_updates(dashboard, {"mean": 1})["mean"]["columns"] is None  # nothing new: no data
True
>>> apply_control(dashboard, {"type": "set", "name": "paused", "value": True, "by": "test"})
>>> dashboard.paused.value
True
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .params import ROI

__all__ = ["layout", "status", "plot_updates", "apply_control"]

logger = logging.getLogger(__name__)


def layout(dashboard: Any) -> dict[str, Any]:
    """The page's shape: title, refresh, plots (name, kind, resettable) and ROI boxes."""
    return {
        "title": dashboard.title,
        "refresh": dashboard.refresh,
        "stale_after": dashboard.stale_after,
        "plots": [{"name": p.name, "kind": p.kind, "resettable": bool(p.resettable())}
                  for p in dashboard.plots.values()],
        "rois": [{"name": r.name, "image": r.image} for r in dashboard.parameters.values()
                 if isinstance(r, ROI)],
    }


def _parameter(parameter: Any) -> dict[str, Any]:
    value = parameter.value
    if isinstance(parameter, ROI):
        shown: Any = [list(part) for part in value]
    elif isinstance(value, (bool, int, float, str)) or value is None:
        shown = value
    else:
        shown = str(value)
    return {"value": shown, "version": parameter.version}


def status(dashboard: Any) -> dict[str, Any]:
    """Header data: endpoints, source trains, pause, parameters, the last error records."""
    trains = [getattr(getattr(s, "stats", None), "trains", None) for s in dashboard.sources]
    counts = [t for t in trains if isinstance(t, int) and not isinstance(t, bool)]
    return {
        "endpoints": dashboard.endpoints(),
        "trains": sum(counts) if counts else None,
        "paused": bool(dashboard.paused.value),
        "parameters": {name: _parameter(p) for name, p in dashboard.parameters.items()},
        "errors": [[t, text] for t, text in list(dashboard.errors)[-8:]],
    }


def _columns(columns: dict[str, Any] | None) -> dict[str, Any] | None:
    """Columns as arrays and numbers only (lists of numbers become float64 arrays)."""
    if columns is None:
        return None
    out: dict[str, Any] = {}
    for key, value in columns.items():
        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            out[key] = value[0]  # an image column holds one image
        elif isinstance(value, (list, np.ndarray)):
            out[key] = np.asarray(value, dtype=np.float64) if not isinstance(
                value, np.ndarray) or value.dtype.kind not in "biuf" else value
        else:
            out[key] = value
    return out


def plot_updates(dashboard: Any, known: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each plot's state; its columns only if its version differs from ``known[name]``.

    A plot's item is reduced once however often this is called (:meth:`Plot.frame` caches).
    """
    now = time.monotonic()
    updates = {}
    for name, plot in dashboard.plots.items():
        frame = plot.frame()  # cached: a new item only is reduced
        state = frame.state
        columns = None if known.get(name) == state.version else _columns(frame.columns)
        updates[name] = {
            "version": state.version,
            "train_id": state.train_id,
            "age": None if state.updated is None else now - state.updated,
            "rate": state.rate,
            "counters": plot.counters(),
            "error": frame.error,
            "columns": columns,
        }
    return updates


def apply_control(dashboard: Any, message: dict[str, Any]) -> None:
    """Apply a page's control: ``set`` a parameter (``paused`` too) or ``reset`` a plot."""
    kind, by = message.get("type"), str(message.get("by", "browser"))
    logger.debug("dashboard control from %s: %r", by, message)
    if kind == "set":
        name = message.get("name")
        parameter = dashboard.paused if name == "paused" else dashboard.parameters.get(name)
        if parameter is None:
            logger.warning("dashboard control for an unknown parameter %r ignored", name)
            return
        value = message.get("value")
        if parameter is dashboard.paused:
            value = bool(value)
        try:
            parameter.set(value, by=by)
        except (ValueError, TypeError) as exc:
            logger.warning("dashboard control %r refused: %s", message, exc)
    elif kind == "reset":
        plot = dashboard.plots.get(message.get("plot"))
        if plot is not None:
            logger.info("dashboard plot %r reset by %s", plot.name, by)
            plot.reset()
    else:
        logger.warning("unknown dashboard control %r ignored", message)
