"""``stream.to_dashboard(name, kind=...)``: put a stream's items on a browser dashboard.

Registered on :class:`streamz.Stream` here and through the ``streamz.sinks`` entry point. Each
item only replaces the plot's newest (:class:`~kb_streams.web.slot.Slot`): the graph never waits
for a browser.
"""

from __future__ import annotations

import logging
from typing import Any

from streamz import Stream
from streamz.sinks import Sink

from ..train_id import train_id_of
from .dashboard import Dashboard, default_dashboard, upstream_nodes

__all__ = ["to_dashboard"]

logger = logging.getLogger(__name__)


@Stream.register_api()
class to_dashboard(Sink):
    """Show the stream's newest item as a plot of a browser :class:`Dashboard`.

    Parameters
    ----------
    upstream
        The stream to show.
    name
        The plot's title (unique on its dashboard).
    kind
        ``'image'`` (a camera or a module: 2D; a detector: ``(module, ss, fs)``, assembled by
        ``geometry``), ``'curve'`` (a per-pulse vector, ``(x, y)``, or a binned result with
        error bars), ``'scalar'`` (a number per train, plotted over time) or ``'histogram'``
        (values, a :class:`~kb_streams.reduce.Histogram` result or ``(counts, edges)``).
    dashboard
        Where to show it (default: :func:`~kb_streams.web.default_dashboard`).
    options
        ``history`` (scalar points kept, 600), ``geometry`` (extra_geom detector geometry),
        ``bins`` (histogram of values), ``max_size`` (image pixels a side sent to browsers, 512).

    Examples
    --------
    >>> import numpy as np
    >>> from streamz import Stream
    >>> from kb_streams.web import Dashboard
    >>> dashboard = Dashboard()
    >>> source = Stream()
    >>> sink = source.map(np.mean).to_dashboard("mean", kind="scalar", dashboard=dashboard)
    >>> source.emit(np.arange(5.0))
    >>> sink.plot.slot.state().value
    2.0
    """

    def __init__(self, upstream: Stream, name: str, kind: str = "curve", *,
                 dashboard: Dashboard | None = None, **options: Any) -> None:
        self.dashboard = dashboard if dashboard is not None else default_dashboard()
        self.plot = self.dashboard.add(name, kind, node=upstream, **options)
        self.n_errors = 0
        # where a train ID comes from when an item carries none (an image, a number)
        self._sources = [s for s in upstream_nodes(upstream) if not getattr(s, "upstreams", ())]
        Sink.__init__(self, upstream, stream_name=f"to_dashboard({name!r})")

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> None:
        if self.dashboard.paused.value:
            return None
        try:
            self.plot.put(x, self._train_id(x))
        except Exception as exc:  # a bad item must not stop the graph
            self.n_errors += 1
            self.dashboard.record_error(f"{self.plot.name}: {type(exc).__name__}: {exc}")
            logger.warning("dashboard plot %r: cannot take an item: %s", self.plot.name, exc)
        return None

    def _train_id(self, x: Any) -> int | None:
        tid = train_id_of(x)
        for source in self._sources if tid is None else ():
            tid = getattr(getattr(source, "stats", None), "last_train_id", None)
            if tid is not None:
                break
        return tid
