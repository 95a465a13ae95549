"""The :class:`Dashboard`: which plots a page shows, fed by which nodes, and its parameters.

Shared by every browser session. The graph writes into the plots' slots (:mod:`.slot`); the
feeder (:mod:`.server`) reads them through :meth:`Plot.frame`, which reduces a new item once for
all sessions (:mod:`.views`), and sends it to the web process. Counters of the feeding nodes are read duck-typed: any node with a
``stats`` (``dropped``, ``errors``), an ``n_errors`` count or an ``errors`` stream is shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..train_id import train_id_of
from . import views
from .params import ROI, Box, Parameter
from .slot import Slot, SlotState

__all__ = ["Dashboard", "Plot", "Frame", "default_dashboard"]

logger = logging.getLogger(__name__)


def upstream_nodes(node: Any) -> Iterator[Any]:
    """``node`` and every node upstream of it, each once (nearest first)."""
    seen: set[int] = set()
    todo = [node]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(getattr(current, "upstreams", ()))


def _count(stats: Any, name: str) -> int:
    value = getattr(stats, name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def feed_counters(node: Any) -> dict[str, int]:
    """Dropped trains and errors counted by ``node`` and the nodes upstream of it.

    Examples
    --------
    >>> from streamz import Stream
    >>> source = Stream()
    >>> node = source.map(abs)
    >>> node.n_errors = 2
    >>> feed_counters(node)
    {'dropped': 0, 'errors': 2}
    """
    dropped = errors = 0
    for upstream in upstream_nodes(node):
        stats = getattr(upstream, "stats", None)
        dropped += _count(stats, "dropped")
        errors += _count(stats, "errors") or _count(upstream, "n_errors")
    return {"dropped": dropped, "errors": errors}


@dataclass(frozen=True)
class Frame:
    """What a page draws for a plot: the slot's state and its columns (``None``: nothing yet)."""

    state: SlotState
    columns: dict[str, Any] | None
    error: str | None


class Plot:
    """One plot of a dashboard: its slot, how items become columns, the node feeding it.

    Made by :meth:`Dashboard.add` (or ``stream.to_dashboard``); the graph calls :meth:`put`.
    """

    def __init__(self, name: str, kind: str, *, node: Any = None, history: int = 600,
                 geometry: Any = None, bins: Any = 50, max_size: int = 512) -> None:
        if kind not in views.KINDS:
            raise ValueError(f"kind must be one of {views.KINDS}, not {kind!r}")
        self.name, self.kind, self.node = name, kind, node
        self.geometry, self.bins, self.max_size = geometry, bins, max_size
        self.slot = Slot(history if kind == "scalar" else 0)
        self._lock = threading.Lock()
        self._cached: Frame | None = None
        self.last_cost = 0.0  # CPU seconds the last reduction of an item took (server side)

    def put(self, item: Any, train_id: int | None = None) -> None:
        """Make ``item`` the plot's newest (a scalar is converted now: its history is kept)."""
        value = views.scalar_value(item) if self.kind == "scalar" else item
        self.slot.put(value, train_id_of(item) if train_id is None else train_id)

    def _columns(self, state: SlotState) -> dict[str, Any] | None:
        if self.kind == "scalar":
            if not state.history:
                return None
            times, values = zip(*state.history, strict=True)
            return {"t": [t * 1000.0 for t in times], "y": list(values)}
        if state.value is None:
            return None
        if self.kind == "image":
            return views.image_columns(state.value, geometry=self.geometry,
                                       max_size=self.max_size)
        if self.kind == "curve":
            return views.curve_columns(state.value)
        return views.histogram_columns(state.value, bins=self.bins)

    def frame(self) -> Frame:
        """The newest item as columns, reduced once per item whatever the number of readers."""
        with self._lock:
            state = self.slot.state()
            cached = self._cached
            if cached is not None and cached.state.version == state.version:
                return Frame(state, cached.columns, cached.error)
            start = time.thread_time()
            try:
                columns, error = self._columns(state), None
            except Exception as exc:  # a bad item shows on the plot; the page goes on
                columns, error = None, f"{type(exc).__name__}: {exc}"
                logger.warning("dashboard plot %r cannot show train %s: %s", self.name,
                               state.train_id, error)
            self.last_cost = time.thread_time() - start
            self._cached = Frame(state, columns, error)
            return self._cached

    def counters(self) -> dict[str, int]:
        """Dropped trains and errors of the node feeding the plot (and upstream of it)."""
        return feed_counters(self.node) if self.node is not None else {"dropped": 0, "errors": 0}

    def resettable(self) -> list[Any]:
        """The accumulators upstream of the plot that :meth:`reset` resets."""
        found = []
        for node in upstream_nodes(self.node) if self.node is not None else ():
            reduction = getattr(node, "reduction", None)
            if callable(getattr(reduction, "reset", None)):
                found.append((node, reduction.reset))
            elif callable(getattr(node, "reset", None)):
                found.append((node, node.reset))
        return found

    def reset(self) -> None:
        """Reset the accumulators feeding this plot, in their graph's event loop."""
        for node, reset in self.resettable():
            loop = getattr(node, "loop", None)
            if loop is not None:
                loop.add_callback(reset)
            else:
                reset()
        self.slot.clear()
        logger.info("dashboard plot %r: accumulators reset", self.name)


class Dashboard:
    """A browser page of live plots fed by a streamz graph, with controls back into it.

    Parameters
    ----------
    title
        The page's title.
    refresh
        Seconds between two pulls of every browser session (a few Hz).
    stale_after
        A plot's freshness badge turns red when its newest item is older than this (s).

    Examples
    --------
    >>> import numpy as np
    >>> from streamz import Stream
    >>> dashboard = Dashboard("ROI monitor")
    >>> source = Stream()
    >>> roi = dashboard.roi("ROI", ((0, 2), (0, 2)), image="Camera")
    >>> _ = source.to_dashboard("Camera", kind="image", dashboard=dashboard)
    >>> total = source.map(lambda image: float(image[roi.slices].sum()))
    >>> _ = total.to_dashboard("ROI sum", kind="scalar", dashboard=dashboard)
    >>> source.emit(np.ones((4, 4)))
    >>> dashboard.plots["ROI sum"].slot.state().value
    4.0
    >>> url = dashboard.serve(port=0)                     # doctest: +SKIP
    """

    def __init__(self, title: str = "kb_streams", *, refresh: float = 0.25,
                 stale_after: float = 3.0) -> None:
        self.title = title
        self.refresh = refresh
        self.stale_after = stale_after
        self.plots: dict[str, Plot] = {}
        self.parameters: dict[str, Parameter] = {}
        self.paused: Parameter[bool] = Parameter("paused", False)
        self.errors: deque[tuple[float, str]] = deque(maxlen=50)
        self.sources: list[Any] = []
        # CPU time of each page pull that sent data, in the web process
        self.pull_seconds: deque[float] = deque(maxlen=1000)
        self.sessions = 0  # browser pages open now (as the web process reports)
        self._watched: dict[int, Any] = {}  # errors stream id -> our sink on it (held here)
        self._server: Any = None

    def add(self, name: str, kind: str = "curve", *, node: Any = None, **options: Any) -> Plot:
        """A new plot ``name`` of ``kind`` (``'image'``, ``'curve'``, ``'scalar'``,
        ``'histogram'``), fed by ``node``'s items (see :class:`Plot` for ``options``)."""
        if name in self.plots:
            raise ValueError(f"the dashboard has a plot {name!r} already")
        plot = Plot(name, kind, node=node, **options)
        self.plots[name] = plot
        if node is not None:
            self.watch(node)
        return plot

    def watch(self, node: Any) -> None:
        """Show the ``errors`` records and the endpoints of ``node`` and its upstream nodes."""
        from streamz import Stream

        for upstream in upstream_nodes(node):
            errors = getattr(upstream, "errors", None)
            if isinstance(errors, Stream) and errors is not upstream and \
                    id(errors) not in self._watched:
                self._watched[id(errors)] = errors.sink(self.record_error)
            if not getattr(upstream, "upstreams", None) and upstream not in self.sources:
                self.sources.append(upstream)

    def record_error(self, record: Any) -> None:
        """Show ``record`` (an error record of a node's ``errors`` stream) on the page."""
        self.errors.append((time.time(), str(record)))

    def parameter(self, name: str, default: Any) -> Parameter:
        """A :class:`Parameter` the graph reads (``param.value``) and the page shows."""
        return self._register(Parameter(name, default))

    def roi(self, name: str, default: Box, *, image: str | None = None) -> ROI:
        """An :class:`ROI` drawn as a box on the image plot ``image`` (on every image plot if
        not given): the graph reads ``roi.value`` or ``roi.slices`` per train."""
        return self._register(ROI(name, default, image=image))

    def _register(self, parameter: Parameter) -> Any:
        if parameter.name in self.parameters:
            raise ValueError(f"the dashboard has a parameter {parameter.name!r} already")
        self.parameters[parameter.name] = parameter
        return parameter

    def gate(self, stream: Any) -> Any:
        """``stream`` filtered by the page's pause switch: nothing passes while paused."""
        return stream.filter(lambda _: not self.paused.value)

    def endpoints(self) -> list[str]:
        """The bridge endpoints feeding the plots."""
        return [str(s.endpoint) for s in self.sources if getattr(s, "endpoint", None)]

    def serve(self, port: int = 8050, address: str = "127.0.0.1", **options: Any) -> str:
        """Serve the page from a web process of its own; returns its URL (``port=0``: a free
        one).

        Browsers, Bokeh and the websockets cost this process nothing: it only reduces each
        new item to screen size and sends it once to the web process, which exits with this
        one. Every script, style and font comes from the web process (no CDN): the page works
        on a closed network. ``options`` go to
        :class:`~kb_streams.web.server.DashboardServer` (``nice``, ``allow_origin``).
        """
        from .server import DashboardServer

        if self._server is None:
            self._server = DashboardServer(self, port=port, address=address, **options)
            self._server.start()
        return self._server.url

    @property
    def url(self) -> str | None:
        """The page's URL while served."""
        return self._server.url if self._server is not None else None

    @property
    def web_pid(self) -> int | None:
        """The ID of the web process serving the page, while served."""
        return self._server.pid if self._server is not None else None

    def stop(self) -> None:
        """Stop serving (the graph is not touched)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


_default: Dashboard | None = None
_default_lock = threading.Lock()


def default_dashboard() -> Dashboard:
    """The process's dashboard that ``stream.to_dashboard(...)`` uses unless given another
    (``kb-streams run`` serves it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Dashboard()
        return _default
