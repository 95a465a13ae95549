"""One browser session's page, in the web process: a Bokeh document fed from the :class:`Mirror`.

Each session has its own figures and data sources. A periodic callback (every 0.1 s) sends a
plot's data when the mirror holds a newer item and the browser has taken the last one; the
status lines (freshness badge, train, rate, counters) are refreshed every ``refresh`` s and
sent only when their text changed. A scalar plot sends only its new points. The controls
(pause, reset, the ROI box) go to the graph's process through the mirror, never into the
browser's copy alone.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import time
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.layouts import column, row
from bokeh.models import (BoxEditTool, Button, ColumnDataSource, CustomJS, Div,
                          LinearColorMapper, Toggle)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from .mirror import Mirror, PlotView
from .params import ROI

__all__ = ["build_page"]

_SESSIONS = itertools.count(1)
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
_TICK_MS = 100
_EMPTY = {"image": {"image": [], "x": [], "y": [], "dw": [], "dh": []},
          "curve": {"x": [], "y": [], "lower": [], "upper": []},
          "scalar": {"t": [], "y": []},
          "histogram": {"left": [], "right": [], "top": []}}


def _badge(text: str, ok: bool) -> str:
    colour = "#2e7d32" if ok else "#c62828"
    return (f'<span class="kb-fresh" data-fresh="{int(ok)}" style="background:{colour};'
            f'color:white;padding:1px 6px;border-radius:3px">{html.escape(text)}</span>')


def _set_text(div: Div, text: str) -> None:
    if div.text != text:  # an unchanged text costs no message and no relayout in the browser
        div.text = text


class _Card:
    """A plot's figure, data source, status line and reset button, for one session."""

    def __init__(self, plot: dict[str, Any], mirror: Mirror, session: str) -> None:
        self.name, self.kind, self.mirror = plot["name"], plot["kind"], mirror
        self.session = session
        self.version = -1
        self.source = ColumnDataSource(dict(_EMPTY[self.kind]), name=f"data: {self.name}")
        self.limits = ""  # an image's colour range, shown in the status line
        self.figure = self._figure()
        self.status = Div(text="waiting for data", name=f"status: {self.name}")
        self.rois: list[tuple[str, ColumnDataSource, int]] = []
        parts: list[Any] = [self.figure, self.status]
        if plot["resettable"]:
            button = Button(label=f"Reset {self.name}", button_type="warning", width=160,
                            name=f"reset: {self.name}")
            button.on_click(lambda: mirror.send({"type": "reset", "plot": self.name,
                                                 "by": f"browser session {session}"}))
            parts.append(button)
        self.layout = column(*parts)
        if self.kind == "image":
            for roi in (mirror.layout or {}).get("rois", ()):
                if roi["image"] in (None, self.name):
                    self._add_roi(roi["name"])

    def _figure(self) -> Any:
        kind, name = self.kind, self.name
        if kind == "image":
            fig = figure(title=name, width=460, height=460, tools=_TOOLS, match_aspect=True)
            fig.y_range.flipped = True  # row 0 (slow_scan 0) at the top, as detector images
            # the mirror holds images as colour indices (views.colour_image): 0 is no data
            mapper = LinearColorMapper(palette=Viridis256, low=1, high=255,
                                       low_color=(0, 0, 0, 0))
            fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                      color_mapper=mapper)
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

    def _add_roi(self, name: str) -> None:
        value = self.mirror.status.get("parameters", {}).get(name, {})
        boxes = ColumnDataSource(_roi_box(value.get("value")), name=f"roi: {name}")
        renderer = self.figure.rect("x", "y", "width", "height", source=boxes, fill_alpha=0.1,
                                    fill_color="red", line_color="red", line_width=2)
        self.figure.add_tools(BoxEditTool(renderers=[renderer], num_objects=1))

        def moved(attr: str, old: Any, new: Any) -> None:
            if not new.get("x"):
                return
            x, y, w, h = (float(new[k][0]) for k in ("x", "y", "width", "height"))
            box = ((y - h / 2, y + h / 2), (x - w / 2, x + w / 2))
            try:
                ROI(name, box)  # refuses an empty box here: the graph keeps its ROI
            except ValueError:
                return
            self.mirror.send({"type": "set", "name": name, "value": box,
                              "by": f"browser session {self.session}"})

        boxes.on_change("data", moved)
        self.rois.append((name, boxes, value.get("version", 0)))

    def send_data(self, view: PlotView) -> bool:
        """Send ``view``'s data if newer than the browser's; whether anything was sent."""
        if view.version == self.version:
            return False
        columns = view.columns
        if columns is None:
            self.source.data = dict(_EMPTY[self.kind])  # reset, or an item it cannot show
        elif self.kind == "image":
            self.limits = f"colours {columns['low']:.4g} to {columns['high']:.4g}"
            self.source.data = {"image": [columns["image"]], "x": columns["x"],
                                "y": columns["y"], "dw": columns["dw"], "dh": columns["dh"]}
        elif self.kind == "scalar":
            self._stream_points(columns)
        else:
            self.source.data = dict(columns)
        self.version = view.version
        return True

    def _stream_points(self, columns: dict[str, Any]) -> None:
        """Only the points newer than the browser's last go (all after a reset)."""
        times, values = columns["t"], columns["y"]
        shown = self.source.data["t"]
        last = shown[-1] if len(shown) else None
        if last is None or not len(times) or times[0] > last:
            self.source.data = {"t": times, "y": values}
            return
        new = int(np.searchsorted(times, last, side="right"))
        if new < len(times):
            self.source.stream({"t": times[new:], "y": values[new:]}, rollover=len(times))

    def update_status(self, now: float, view: PlotView | None, stale_after: float) -> None:
        parameters = self.mirror.status.get("parameters", {})
        for i, (name, boxes, version) in enumerate(self.rois):
            current = parameters.get(name, {})
            if current.get("version", version) != version:  # changed elsewhere
                boxes.data = _roi_box(current["value"])
                self.rois[i] = (name, boxes, current["version"])
        if view is None:
            return
        age = view.age(now)
        fresh = age <= stale_after
        words = [_badge("no data yet" if view.updated is None else f"age {age:.1f} s", fresh)]
        if view.train_id is not None:
            words.append(f"train {view.train_id}")
        words.append(f"{view.rate:.1f} trains/s")
        words.append(f"dropped {view.counters['dropped']} · errors {view.counters['errors']}")
        if view.error:
            words.append(f'<span style="color:#c62828">{html.escape(view.error)}</span>')
        if self.limits:
            words.append(self.limits)
        for name, _, _ in self.rois:
            value = parameters.get(name, {}).get("value")
            if value is not None:
                words.append(f"{html.escape(name)} {tuple(tuple(v) for v in value)}")
        _set_text(self.status, " · ".join(words))


def _roi_box(value: Any) -> dict[str, list[float]]:
    if not value:
        return {"x": [], "y": [], "width": [], "height": []}
    (ss0, ss1), (fs0, fs1) = value
    return {"x": [(fs0 + fs1) / 2], "y": [(ss0 + ss1) / 2], "width": [fs1 - fs0],
            "height": [ss1 - ss0]}


class _Pacer:
    """New data goes to a session only once its browser has taken the last (or after
    ``timeout`` s): a slow browser gets fewer updates, never a backlog in its websocket."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        # until the browser's document is ready, changes go with the document it pulls: no ack
        self.live = False
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


class _Header:
    """Title, endpoints, overall rate, parameters, pause switch and the error records."""

    def __init__(self, mirror: Mirror, title: str, session: str) -> None:
        self.mirror, self.title = mirror, title
        self.text = Div(text=f"<h2>{html.escape(title)}</h2>", name="header")
        self.paused = paused = bool(mirror.status.get("paused"))  # as the graph last said
        self.pause = Toggle(label="Resume" if paused else "Pause", active=paused, width=100,
                            button_type="primary", name="pause")
        self.pause.on_change("active", lambda attr, old, new: mirror.send(
            {"type": "set", "name": "paused", "value": bool(new),
             "by": f"browser session {session}"}))
        self.errors = Div(text="", name="errors", width=940)
        # the switch first: the text beside it changes length every pull, the switch stays put
        self.layout = column(row(self.pause, self.text), self.errors)

    def update(self) -> None:
        m, status = self.mirror, self.mirror.status
        parts = [f"<b>{html.escape(self.title)}</b>"]
        endpoints = status.get("endpoints") or []
        if endpoints:
            parts.append("from " + ", ".join(html.escape(e) for e in endpoints))
        if status.get("trains") is not None:
            parts.append(f"{status['trains']} trains · {m.rate:.1f} trains/s")
        parts.append(f"{m.sessions} page{'s' if m.sessions != 1 else ''} open")
        paused = bool(status.get("paused"))
        if paused:
            parts.append('<b style="color:#c62828">paused</b>')
        params = [f"{html.escape(name)} = {html.escape(_shown(p['value']))}"
                  for name, p in status.get("parameters", {}).items()]
        _set_text(self.text, " · ".join(parts) + ("<br>" + " · ".join(params) if params else ""))
        if paused != self.paused:  # the graph's value changed (a click here, another page)
            self.paused = paused
            self.pause.update(active=paused, label="Resume" if paused else "Pause")
        records = list(status.get("errors", ()))[-8:][::-1]
        _set_text(self.errors, "".join(
            f'<div style="color:#c62828">{time.strftime("%H:%M:%S", time.localtime(t))} '
            f"{html.escape(text)}</div>" for t, text in records))


def _shown(value: Any) -> str:
    if isinstance(value, list):  # an ROI's box, as the graph's Python shows it
        return str(tuple(tuple(v) if isinstance(v, list) else v for v in value))
    return str(value)


def build_page(mirror: Mirror, doc: Document) -> None:
    """Fill ``doc`` (one browser session) with the dashboard's header, plots and controls."""
    session = str(next(_SESSIONS))
    layout = mirror.layout or {"title": "kb_streams", "plots": [], "refresh": 0.25,
                               "stale_after": 3.0}
    mirror.session_opened()
    doc.on_session_destroyed(lambda _: mirror.session_closed())
    header = _Header(mirror, layout["title"], session)
    cards = [_Card(plot, mirror, session) for plot in layout["plots"]]
    rows = [row(*(c.layout for c in cards[i:i + 2])) for i in range(0, len(cards), 2)]
    doc.title = layout["title"]
    pacer = _Pacer()
    doc.add_root(column(header.layout, *rows, pacer.model))
    status_every = max(1, round(layout["refresh"] * 1000 / _TICK_MS))
    ticks = itertools.count()

    def tick() -> None:
        start = time.thread_time()  # CPU time: what a pull costs, not the waits for the GIL
        now = time.monotonic()
        views = [mirror.plots.get(card.name) for card in cards]
        sent = False
        if pacer.ready(now):
            sent = any([card.send_data(view) for card, view in zip(cards, views, strict=True)
                        if view is not None])
            if sent and pacer.live:
                pacer.request_ack(now)
        if next(ticks) % status_every == 0:
            header.update()
            for card, view in zip(cards, views, strict=True):
                card.update_status(now, view, layout["stale_after"])
        if sent:
            mirror.pulls.append(time.thread_time() - start)

    def ready(_: Any) -> None:
        pacer.live = True

    doc.on_event(DocumentReady, ready)
    tick()
    doc.add_periodic_callback(tick, _TICK_MS)
