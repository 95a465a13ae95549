"""Serve a :class:`~kb_streams.web.Dashboard` with Bokeh's server, in a background thread.

The server has its own thread and event loop, apart from the graph's: browser traffic and the
reduction of images to screen size never run in the graph's loop. Scripts and styles are served
by this process (Bokeh's ``server`` resources): no CDN, the page works on a closed network.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

__all__ = ["DashboardServer"]

logger = logging.getLogger(__name__)


class DashboardServer:
    """A Bokeh server for one dashboard on ``http://ADDRESS:PORT/`` (``port=0``: a free port).

    Parameters
    ----------
    dashboard
        What to show.
    port, address
        Where to listen (loopback unless told otherwise).
    allow_origin
        Host patterns the browser's page may come from (default: the address and
        ``localhost`` on this port).
    """

    def __init__(self, dashboard: Any, *, port: int = 8050, address: str = "127.0.0.1",
                 allow_origin: list[str] | None = None) -> None:
        self.dashboard = dashboard
        self.port = port
        self.address = address
        self.allow_origin = allow_origin
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.address}:{self.port}/"

    def start(self, timeout: float = 20.0) -> None:
        """Start serving; raises ``OSError`` if the port is taken."""
        self._thread = threading.Thread(target=self._run, name="kb-streams-dashboard",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the dashboard server did not start within {timeout} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from bokeh.settings import settings
        from tornado.ioloop import IOLoop

        from .page import build_page

        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            if self.port == 0:
                self.port = _free_port(self.address)
            origins = self.allow_origin or [f"{host}:{self.port}" for host in
                                            dict.fromkeys((self.address, "localhost", "127.0.0.1"))]
            settings.resources.set_value("server")  # never a CDN
            app = Application(FunctionHandler(lambda doc: build_page(self.dashboard, doc)))
            self._server = Server({"/": app}, io_loop=IOLoop.current(), port=self.port,
                                  address=self.address,
                                  allow_websocket_origin=origins,
                                  # a closed page stops costing within ~3 s, not Bokeh's ~30
                                  check_unused_sessions_milliseconds=1000,
                                  unused_session_lifetime_milliseconds=2000)
            self._server.start()
            self.port = self._server.port
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        logger.info("dashboard at %s", self.url)
        self._ready.set()
        self._server.io_loop.start()
        self._server.io_loop.close(all_fds=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the server's thread."""
        if self._server is None or self._thread is None:
            return
        server = self._server

        def shutdown() -> None:
            server.stop()
            server.io_loop.stop()

        server.io_loop.add_callback(shutdown)
        self._thread.join(timeout)
        self._server = None


def _free_port(address: str) -> int:
    """A TCP port free on ``address`` now (Bokeh needs the port before it binds)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
