"""The dashboard's web process: Bokeh's server and the :class:`~kb_streams.web.mirror.Mirror`.

Started by :class:`~kb_streams.web.server.DashboardServer` as ``python -m kb_streams.web.app``;
not a command for users. It serves the pages on ``--address``:``--port`` with every script and
style from this process (Bokeh's ``server`` resources: no CDN), reports ``ready`` (with its
port) or the error that stopped it on the control channel, and exits when its stdin closes:
the graph's process holds the other end, so this process never outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from .mirror import Mirror

logger = logging.getLogger(__name__)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kb_streams.web.app")
    parser.add_argument("--requests", required=True, help="the graph process's REP endpoint")
    parser.add_argument("--controls", required=True, help="the graph process's PULL endpoint")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--allow-origin", action="append", default=[])
    parser.add_argument("--nice", type=int, default=0)
    return parser.parse_args(argv)


def exit_with_parent() -> None:
    """Exit this process as soon as stdin (a pipe from the graph's process) closes."""

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="kb-streams-parent-watch", daemon=True).start()


def _free_port(address: str) -> int:
    """A TCP port free on ``address`` now (Bokeh needs the port before it binds)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _bokeh_server(mirror: Mirror, args: argparse.Namespace) -> Any:
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from bokeh.settings import settings
    from tornado.ioloop import IOLoop

    from .page import build_page

    port = _free_port(args.address) if args.port == 0 else args.port
    origins = args.allow_origin or [f"{host}:{port}" for host in
                                    dict.fromkeys((args.address, "localhost", "127.0.0.1"))]
    settings.resources.set_value("server")  # never a CDN
    app = Application(FunctionHandler(lambda doc: build_page(mirror, doc)))
    server = Server({"/": app}, io_loop=IOLoop.current(), port=port, address=args.address,
                    allow_websocket_origin=origins,
                    # a closed page stops costing within ~3 s, not Bokeh's ~30
                    check_unused_sessions_milliseconds=1000,
                    unused_session_lifetime_milliseconds=2000)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="dashboard web process: %(message)s")
    # Ctrl-C in a terminal reaches the whole process group: the graph's process decides, and
    # this one ends with it (no KeyboardInterrupt traceback from here)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    if args.nice > 0:
        try:
            os.nice(args.nice)
        except OSError:
            pass
    mirror = Mirror(args.requests, args.controls)
    mirror.start()
    if not mirror.first_reply.wait(60):
        logger.error("no reply from the graph's process")
        return 1
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        server = _bokeh_server(mirror, args)
    except OSError as exc:
        mirror.send({"type": "error", "errno": exc.errno, "error": exc.strerror or str(exc)})
        mirror.stop()
        return 1
    mirror.send({"type": "ready", "port": server.port})
    server.io_loop.start()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
