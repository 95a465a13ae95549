"""One browser session's page: a Bokeh document that pulls the dashboard's plots a few Hz.

Each session has its own figures and data sources; a periodic callback (every
``dashboard.refresh`` s) reads each plot's :meth:`~kb_streams.web.dashboard.Plot.frame` and
sends only what changed. The controls (pause, reset, the ROI box) write into the dashboard,
never into the browser's copy alone.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import time
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (BoxEditTool, Button, ColumnDataSource, CustomJS, Div,
                          LinearColorMapper, Toggle)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from .dashboard import Dashboard, Plot
from .params import ROI

__all__ = ["build_page"]

_SESSIONS = itertools.count(1)
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
_EMPTY = {"image": {"image": [], "x": [], "y": [], "dw": [], "dh": []},
          "curve": {"x": [], "y": [], "lower": [], "upper": []},
          "scalar": {"t": [], "y": []},
          "histogram": {"left": [], "right": [], "top": []}}


def _badge(text: str, ok: bool) -> str:
    colour = "#2e7d32" if ok else "#c62828"
    return (f'<span class="kb-fresh" data-fresh="{int(ok)}" style="background:{colour};'
            f'color:white;padding:1px 6px;border-radius:3px">{html.escape(text)}</span>')


class _Card:
    """A plot's figure, data source, status line and reset button, for one session."""

    def __init__(self, plot: Plot, dashboard: Dashboard, session: str) -> None:
        self.plot, self.dashboard = plot, dashboard
        self.version = -1
        self.source = ColumnDataSource(dict(_EMPTY[plot.kind]), name=f"data: {plot.name}")
        self.mapper: LinearColorMapper | None = None  # an image's colours
        self.figure = self._figure()
        self.status = Div(text="waiting for data", name=f"status: {plot.name}")
        self.rois: list[tuple[ROI, ColumnDataSource, int]] = []
        parts: list[Any] = [self.figure, self.status]
        if plot.resettable():
            button = Button(label=f"Reset {plot.name}", button_type="warning", width=160,
                            name=f"reset: {plot.name}")
            button.on_click(lambda: plot.reset())
            parts.append(button)
        self.layout = column(*parts)
        if plot.kind == "image":
            for roi in dashboard.parameters.values():
                if isinstance(roi, ROI) and roi.image in (None, plot.name):
                    self._add_roi(roi, session)

    def _figure(self) -> Any:
        kind, name = self.plot.kind, self.plot.name
        if kind == "image":
            fig = figure(title=name, width=460, height=460, tools=_TOOLS, match_aspect=True)
            fig.y_range.flipped = True  # row 0 (slow_scan 0) at the top, as detector images
            self.mapper = LinearColorMapper(palette=Viridis256, nan_color=(0, 0, 0, 0))
            fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                      color_mapper=self.mapper)
            fig.xaxis.axis_label, fig.yaxis.axis_label = "fast_scan", "slow_scan"
        elif kind == "scalar":
            fig = figure(title=name, width=460, height=300, tools=_TOOLS, x_axis_type="datetime")
            fig.line("t", "y", source=self.source)
        elif kind == "histogram":
            fig = figure(title=name, width=460, height=300, tools=_TOOLS)
            fig.quad(left="left", right="right", top="top", bottom=0, source=self.source)
        else:
            fig = figure(title=name, width=460, height=300, tools=_TOOLS)
            fig.segment("x", "lower", "x", "upper", source=self.source, color="gray")
            fig.line("x", "y", source=self.source)
            fig.scatter("x", "y", source=self.source, size=5)
        return fig

    def _add_roi(self, roi: ROI, session: str) -> None:
        boxes = ColumnDataSource(_roi_box(roi), name=f"roi: {roi.name}")
        renderer = self.figure.rect("x", "y", "width", "height", source=boxes, fill_alpha=0.1,
                                    fill_color="red", line_color="red", line_width=2)
        self.figure.add_tools(BoxEditTool(renderers=[renderer], num_objects=1))

        def moved(attr: str, old: Any, new: Any) -> None:
            if not new.get("x"):
                return
            x, y, w, h = (float(new[k][0]) for k in ("x", "y", "width", "height"))
            try:
                roi.set(((y - h / 2, y + h / 2), (x - w / 2, x + w / 2)),
                        by=f"browser session {session}")
            except ValueError:
                pass  # an empty box: keep the ROI

        boxes.on_change("data", moved)
        self.rois.append((roi, boxes, roi.version))

    def update(self, now: float, send: bool = True) -> bool:
        """Refresh the status; with ``send``, also the data if new. Whether data was sent."""
        frame = self.plot.frame() if send else None
        state = frame.state if frame is not None else self.plot.slot.state()
        sent = False
        if frame is not None and state.version != self.version and frame.columns is not None:
            columns = dict(frame.columns)
            if self.mapper is not None:
                self.mapper.update(low=columns.pop("low"), high=columns.pop("high"))
            self.source.data = columns
            self.version = state.version
            sent = True
        for i, (roi, boxes, version) in enumerate(self.rois):
            if roi.version != version:  # changed elsewhere: another session, or Python
                boxes.data = _roi_box(roi)
                self.rois[i] = (roi, boxes, roi.version)
        age = state.age(now)
        counts = self.plot.counters()
        fresh = age <= self.dashboard.stale_after
        words = [_badge("no data yet" if state.updated is None else f"age {age:.1f} s", fresh)]
        if state.train_id is not None:
            words.append(f"train {state.train_id}")
        words.append(f"{state.rate:.1f} trains/s")
        words.append(f"dropped {counts['dropped']} · errors {counts['errors']}")
        if frame is not None and frame.error:
            words.append(f'<span style="color:#c62828">{html.escape(frame.error)}</span>')
        for roi, _, _ in self.rois:
            words.append(f"{html.escape(roi.name)} {roi.value}")
        self.status.text = " · ".join(words)
        return sent


class _Pacer:
    """New data goes to a session only once its browser has taken the last (or after
    ``timeout`` s): a slow browser gets fewer updates, never a backlog in its websocket."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sent = self.acked = 0
        self.sent_at = float("-inf")
        # the browser copies each request number into the text, which syncs back: the ack
        self.model = Div(text="0", visible=False, name="sync")
        self.model.js_on_change("tags", CustomJS(code="cb_obj.text = String(cb_obj.tags[0])"))
        self.model.on_change("text", self._acked)

    def _acked(self, attr: str, old: Any, new: Any) -> None:
        with contextlib.suppress(ValueError):
            self.acked = int(new)

    def ready(self, now: float) -> bool:
        return self.acked >= self.sent or now - self.sent_at > self.timeout

    def request_ack(self, now: float) -> None:
        self.sent += 1
        self.sent_at = now
        self.model.tags = [self.sent]


def _roi_box(roi: ROI) -> dict[str, list[float]]:
    (ss0, ss1), (fs0, fs1) = roi.value
    return {"x": [(fs0 + fs1) / 2], "y": [(ss0 + ss1) / 2], "width": [fs1 - fs0],
            "height": [ss1 - ss0]}


class _Header:
    """Title, endpoints, overall rate, parameters, pause switch and the error records."""

    def __init__(self, dashboard: Dashboard, session: str) -> None:
        self.dashboard = dashboard
        self.text = Div(text=f"<h2>{html.escape(dashboard.title)}</h2>", name="header")
        self.pause = Toggle(label="Pause", active=dashboard.paused.value, width=100,
                            button_type="primary", name="pause")
        self.pause.on_change("active", lambda attr, old, new: dashboard.paused.set(
            bool(new), by=f"browser session {session}"))
        self.errors = Div(text="", name="errors", width=940)
        # the switch first: the text beside it changes length every pull, the switch stays put
        self.layout = column(row(self.pause, self.text), self.errors)
        self._last: tuple[float, int] | None = None
        self.rate = 0.0

    def _source_rate(self, now: float) -> tuple[int | None, float]:
        trains = [getattr(getattr(s, "stats", None), "trains", None)
                  for s in self.dashboard.sources]
        counts = [t for t in trains if isinstance(t, int)]
        if not counts:
            return None, 0.0
        total = sum(counts)
        if self._last is not None and now - self._last[0] >= 1.0:
            self.rate = (total - self._last[1]) / (now - self._last[0])
            self._last = (now, total)
        elif self._last is None:
            self._last = (now, total)
        return total, self.rate

    def update(self, now: float) -> None:
        d = self.dashboard
        trains, rate = self._source_rate(now)
        parts = [f"<b>{html.escape(d.title)}</b>"]
        endpoints = d.endpoints()
        if endpoints:
            parts.append("from " + ", ".join(html.escape(e) for e in endpoints))
        if trains is not None:
            parts.append(f"{trains} trains · {rate:.1f} trains/s")
        parts.append(f"{d.sessions} page{'s' if d.sessions != 1 else ''} open")
        if d.paused.value:
            parts.append('<b style="color:#c62828">paused</b>')
        params = [f"{html.escape(p.name)} = {html.escape(str(p.value))}"
                  for p in d.parameters.values()]
        self.text.text = " · ".join(parts) + ("<br>" + " · ".join(params) if params else "")
        self.pause.update(active=d.paused.value, label="Resume" if d.paused.value else "Pause")
        records = list(d.errors)[-8:][::-1]
        self.errors.text = "".join(
            f'<div style="color:#c62828">{time.strftime("%H:%M:%S", time.localtime(t))} '
            f"{html.escape(text)}</div>" for t, text in records)


def build_page(dashboard: Dashboard, doc: Document) -> None:
    """Fill ``doc`` (one browser session) with the dashboard's header, plots and controls."""
    session = str(next(_SESSIONS))
    dashboard.sessions += 1

    def closed(_: Any) -> None:
        dashboard.sessions -= 1

    doc.on_session_destroyed(closed)
    header = _Header(dashboard, session)
    cards = [_Card(plot, dashboard, session) for plot in dashboard.plots.values()]
    rows = [row(*(c.layout for c in cards[i:i + 2])) for i in range(0, len(cards), 2)]
    doc.title = dashboard.title
    pacer = _Pacer()
    doc.add_root(column(header.layout, *rows, pacer.model))

    def pull() -> None:
        start = time.thread_time()  # CPU time: what a pull costs, not the waits for the GIL
        now = time.monotonic()
        header.update(now)
        send = pacer.ready(now)
        sent = [card.update(now, send) for card in cards]
        if any(sent):
            pacer.request_ack(now)
        dashboard.pull_seconds.append(time.thread_time() - start)

    pull()
    doc.add_periodic_callback(pull, max(50, int(dashboard.refresh * 1000)))
