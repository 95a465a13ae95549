"""The dashboard options of ``kb-streams demo`` and ``run``: ``--web-port``, ``--no-web``.

The dashboard is served while the command runs; the terminal panel stays. Without the ``web``
extra, or with the port taken, the command says so on stderr and goes on without a dashboard.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_web_arguments", "serving", "web_wanted", "DEFAULT_PORT"]

#: Where ``kb-streams demo`` serves its dashboard unless told otherwise.
DEFAULT_PORT = 8050


def add_web_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("browser dashboard (needs: pip install 'kb-streams[web]')")
    group.add_argument("--web-port", type=int, default=DEFAULT_PORT, metavar="PORT",
                       help=f"serve the dashboard on http://127.0.0.1:PORT (default: "
                            f"{DEFAULT_PORT}; 0: a free port)")
    group.add_argument("--web-address", default="127.0.0.1", metavar="ADDRESS",
                       help="address to serve the dashboard on (default: 127.0.0.1, this "
                            "machine only)")
    group.add_argument("--no-web", action="store_true", help="no browser dashboard")


def web_wanted(args: argparse.Namespace) -> bool:
    """Whether to build a dashboard: asked for, and Bokeh installed (else a warning)."""
    if args.no_web:
        return False
    try:
        import kb_streams.web  # noqa: F401
    except ImportError as exc:
        print(f"warning: no dashboard: {exc}", file=sys.stderr, flush=True)
        return False
    return True


@contextlib.contextmanager
def serving(dashboard: Any, args: argparse.Namespace) -> Iterator[str | None]:
    """Serve ``dashboard`` while the block runs; yields its URL (None if it cannot be served)."""
    if dashboard is None or not dashboard.plots:
        yield None
        return
    try:
        url = dashboard.serve(port=args.web_port, address=args.web_address)
    except OSError as exc:
        print(f"warning: cannot serve the dashboard on {args.web_address}:{args.web_port} "
              f"({exc.strerror or exc}); pass --web-port PORT", file=sys.stderr, flush=True)
        yield None
        return
    print(f"dashboard: {url}", flush=True)
    try:
        yield url
    finally:
        dashboard.stop()
