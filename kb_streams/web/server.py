"""Serve a :class:`~kb_streams.web.Dashboard` from a web process of its own.

The graph's process keeps only the slots and one thread, the *feeder*: it answers the web
process's requests for the plots newer than it has (each item reduced to screen size once,
sent once, whatever the number of pages) and applies the controls the pages send back (ROI,
pause, reset). Bokeh, tornado, the websockets and their encoding run in the web process
(:mod:`kb_streams.web.app`), so browsers cost the analysis no GIL and no CPU of its own.

Two ZeroMQ channels on 127.0.0.1 join the processes: requests and replies (REQ/REP: one reply
in flight, so updates never queue up) and controls (PUSH/PULL). Messages are msgpack with raw
array frames (:mod:`.wire`). The web process reads its stdin, a pipe from this process: when
this process ends, however it ends, the pipe closes and the web process exits.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import zmq

from . import snapshot, wire

__all__ = ["DashboardServer"]

logger = logging.getLogger(__name__)

_POLL_MS = 100


class DashboardServer:
    """The web process serving one dashboard on ``http://ADDRESS:PORT/`` and its feeder.

    Parameters
    ----------
    dashboard
        What to show.
    port, address
        Where the web process listens (loopback unless told otherwise; ``port=0``: a free one).
    allow_origin
        Host patterns the browser's page may come from (default: the address and
        ``localhost`` on this port).
    nice
        Niceness added to the web process: the analysis gets the CPU first (default 5).
    """

    def __init__(self, dashboard: Any, *, port: int = 8050, address: str = "127.0.0.1",
                 allow_origin: list[str] | None = None, nice: int = 5) -> None:
        self.dashboard = dashboard
        self.port = port
        self.address = address
        self.allow_origin = allow_origin
        self.nice = nice
        self.process: subprocess.Popen | None = None
        #: the feeder's request (REP) and control (PULL) endpoints, once started
        self.endpoints: tuple[str, str] | None = None
        #: CPU seconds the feeder spent per reply that carried a new image (pack and send)
        self.send_seconds: deque[float] = deque(maxlen=1000)
        #: CPU seconds the web process spent colouring each new image (once for all pages)
        self.colour_seconds: deque[float] = deque(maxlen=1000)
        self._context: zmq.Context | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._started: dict[str, Any] = {}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.address}:{self.port}/"

    @property
    def pid(self) -> int | None:
        """The web process's ID while it runs."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 60.0) -> None:
        """Start the web process and the feeder; raises ``OSError`` if the port is taken."""
        self._context = zmq.Context()
        requests = self._context.socket(zmq.REP)
        controls = self._context.socket(zmq.PULL)
        for sock in (requests, controls):
            sock.linger = 0
        request_port = requests.bind_to_random_port("tcp://127.0.0.1")
        control_port = controls.bind_to_random_port("tcp://127.0.0.1")
        self.endpoints = (f"tcp://127.0.0.1:{request_port}", f"tcp://127.0.0.1:{control_port}")
        command = [sys.executable, "-m", "kb_streams.web.app",
                   "--requests", self.endpoints[0], "--controls", self.endpoints[1],
                   "--port", str(self.port), "--address", self.address,
                   "--nice", str(self.nice)]
        for origin in self.allow_origin or ():
            command += ["--allow-origin", origin]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE)
        self._thread = threading.Thread(target=self._feed, args=(requests, controls),
                                        name="kb-streams-dashboard-feeder", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the dashboard's web process did not start")
        if "error" in self._started:
            self.stop()
            raise OSError(self._started.get("errno") or 0, self._started["error"])
        self.port = int(self._started["port"])
        logger.info("dashboard at %s (web process %d)", self.url, self.process.pid)

    def _feed(self, requests: zmq.Socket, controls: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(requests, zmq.POLLIN)
        poller.register(controls, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll(_POLL_MS))
                for _ in range(100) if controls in events else ():
                    try:
                        self._control(wire.unpack(controls.recv_multipart(zmq.NOBLOCK)))
                    except zmq.Again:
                        break
                if requests in events:
                    self._reply(requests, wire.unpack(requests.recv_multipart()))
        except Exception:  # the graph goes on without its dashboard
            logger.exception("the dashboard feeder failed")
        finally:
            requests.close()
            controls.close()

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("ready", "error"):
            self._started = message
            self._ready.set()
        elif kind == "sessions":
            self.dashboard.sessions = int(message.get("n", 0))
        else:
            snapshot.apply_control(self.dashboard, message)

    def _reply(self, sock: zmq.Socket, request: dict[str, Any]) -> None:
        self.dashboard.pull_seconds.extend(request.get("pulls", ()))
        self.colour_seconds.extend(request.get("colourings", ()))
        reply: dict[str, Any] = {"status": snapshot.status(self.dashboard),
                                 "layout": snapshot.layout(self.dashboard)}
        known = request.get("versions")
        if known is not None:  # reduces the new items (Plot.last_cost)
            reply["plots"] = snapshot.plot_updates(self.dashboard, known)
        start = time.thread_time()
        sock.send_multipart(wire.pack(reply), copy=False)
        if any(p["columns"] is not None and "image" in p["columns"]
               for p in reply.get("plots", {}).values()):
            self.send_seconds.append(time.thread_time() - start)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the web process and the feeder."""
        self._stopping.set()
        if self.process is not None:
            process, self.process = self.process, None
            try:
                process.stdin.close()  # the web process exits when its stdin closes
                process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._context is not None:
            self._context.term()
            self._context = None
        self.dashboard.sessions = 0

