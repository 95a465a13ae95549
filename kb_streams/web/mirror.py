"""The web process's copy of the dashboard: the newest of each plot, fetched from the graph's
process, and the controls going back to it.

A thread asks the graph's feeder (:mod:`kb_streams.web.server`) for the plots newer than it
holds, ten times a second while a page is open (once a second for the header otherwise), and
keeps only the newest reply: one request in flight, so nothing queues up on either side. The
pages (:mod:`.page`) read :attr:`Mirror.plots` from Bokeh's loop; controls they queue with
:meth:`Mirror.send` leave on the control channel at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import zmq

from . import views, wire

__all__ = ["Mirror", "PlotView"]

logger = logging.getLogger(__name__)

#: Seconds between two requests while a page is open, and while none is.
ACTIVE_PERIOD, IDLE_PERIOD = 0.1, 1.0


@dataclass(frozen=True)
class PlotView:
    """A plot as the web process holds it (replaced whole on each reply, never changed)."""

    version: int
    train_id: int | None
    updated: float | None  # time.monotonic() of this process when the item was put
    rate: float
    counters: dict[str, int]
    error: str | None
    columns: dict[str, Any] | None

    def age(self, now: float) -> float:
        """Seconds since the item was put in the graph's process (``inf``: none yet)."""
        return float("inf") if self.updated is None else now - self.updated


class Mirror:
    """Fetches the dashboard's plots and status from the graph's process; sends controls.

    Parameters
    ----------
    requests, controls
        The graph process's REP (updates) and PULL (controls) endpoints.
    """

    def __init__(self, requests: str, controls: str) -> None:
        self._endpoints = requests, controls
        self.layout: dict[str, Any] | None = None
        self.status: dict[str, Any] = {}
        self.plots: dict[str, PlotView] = {}
        self.rate = 0.0  # the sources' trains/s
        self.sessions = 0
        self.pulls: deque[float] = deque(maxlen=1000)  # CPU s of each page pull sending data
        self.colourings: deque[float] = deque(maxlen=1000)  # CPU s of colouring each image
        self.first_reply = threading.Event()
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        self._stopping = threading.Event()
        self._last_trains: tuple[float, int] | None = None
        self._hurry = False  # a page just opened: ask now, not at the idle period's end
        self._thread = threading.Thread(target=self._run, name="kb-streams-mirror", daemon=True)

    def start(self) -> None:
        """Start fetching."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop fetching (queued controls are sent first)."""
        self._stopping.set()
        self._thread.join(timeout)

    def send(self, message: dict[str, Any]) -> None:
        """Queue a control for the graph's process (from any thread)."""
        try:
            self._outbox.put_nowait(message)
        except queue.Full:
            logger.warning("dashboard control dropped, the graph's process is not reading: %r",
                           message)

    def session_opened(self) -> None:
        self.sessions += 1
        self._hurry = True
        self.send({"type": "sessions", "n": self.sessions})

    def session_closed(self) -> None:
        self.sessions -= 1
        self.send({"type": "sessions", "n": self.sessions})

    def _run(self) -> None:
        context = zmq.Context.instance()
        requests, controls = context.socket(zmq.REQ), context.socket(zmq.PUSH)
        for sock in (requests, controls):
            sock.linger = 1000
        requests.connect(self._endpoints[0])
        controls.connect(self._endpoints[1])
        due = 0.0
        try:
            while not self._stopping.is_set():
                self._send_controls(controls, wait=max(0.0, due - time.monotonic()))
                if time.monotonic() < due and not self._hurry:
                    continue
                self._hurry = False
                requests.send_multipart(wire.pack(self._request()), copy=False)
                while not requests.poll(20) and not self._stopping.is_set():
                    self._send_controls(controls, wait=0.0)  # controls never wait for data
                if self._stopping.is_set():
                    break
                self._take(wire.unpack(requests.recv_multipart(copy=False)))
                due = time.monotonic() + (ACTIVE_PERIOD if self.sessions else IDLE_PERIOD)
            self._send_controls(controls, wait=0.0)
        except Exception:
            logger.exception("the dashboard's link to the graph's process failed")
        finally:
            requests.close()
            controls.close()

    def _send_controls(self, sock: zmq.Socket, wait: float) -> None:
        """Send the queued controls, waiting at most ``wait`` s for the first."""
        with contextlib.suppress(queue.Empty):
            message = self._outbox.get(timeout=wait) if wait > 0 else self._outbox.get_nowait()
            for _ in range(1000):
                sock.send_multipart(wire.pack(message))
                message = self._outbox.get_nowait()

    def _request(self) -> dict[str, Any]:
        pulls = [self.pulls.popleft() for _ in range(len(self.pulls))]
        colourings = [self.colourings.popleft() for _ in range(len(self.colourings))]
        versions = ({name: view.version for name, view in self.plots.items()}
                    if self.sessions else None)
        return {"versions": versions, "pulls": pulls, "colourings": colourings}

    def _take(self, reply: dict[str, Any]) -> None:
        now = time.monotonic()
        self.layout = reply["layout"]
        self.status = reply["status"]
        self._count_rate(now, self.status.get("trains"))
        for name, update in reply.get("plots", {}).items():
            old = self.plots.get(name)
            columns = update["columns"]
            if columns is None and old is not None and old.version == update["version"]:
                columns = old.columns
            elif columns is not None and "image" in columns:
                columns = self._coloured(columns)
            age = update["age"]
            self.plots[name] = PlotView(update["version"], update["train_id"],
                                        None if age is None else now - age, update["rate"],
                                        update["counters"], update["error"], columns)
        self.first_reply.set()

    def _coloured(self, columns: dict[str, Any]) -> dict[str, Any]:
        """An image's columns with the image as colour indices: once per item, for every page."""
        start = time.thread_time()
        indices, low, high = views.colour_image(columns["image"])
        self.colourings.append(time.thread_time() - start)
        return {**columns, "image": indices, "low": low, "high": high}

    def _count_rate(self, now: float, trains: int | None) -> None:
        if trains is None:
            return
        if self._last_trains is None:
            self._last_trains = (now, trains)
        elif now - self._last_trains[0] >= 1.0:
            self.rate = (trains - self._last_trains[1]) / (now - self._last_trains[0])
            self._last_trains = (now, trains)
