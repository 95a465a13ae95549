"""The ``kb-streams`` command: one module per sub-command, dispatched from here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..endpoints import check_endpoint
from ..errors import EndpointError
from ._output import EXIT_USAGE, CommandFailed, fail

# one module in kb_streams.cli per sub-command, each with add_parser(subparsers) and run(args)
SUBCOMMANDS = ("demo", "run", "simulate", "inspect", "monitor", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb-streams",
        description="Live analysis of Karabo bridge data with streamz, xarray and Dask.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"kb_streams.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kb-streams`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "endpoint", None) is not None:
            # checked before any socket or cluster exists; a server binds, the others connect
            args.endpoint = check_endpoint(args.endpoint, bind=getattr(args, "binds", False))
        return int(args.func(args) or 0)
    except EndpointError as exc:
        return fail(args.command, str(exc), EXIT_USAGE)
    except CommandFailed as exc:
        return fail(args.command, str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader of our output went away (``kb-streams monitor ... | head``): not an error
        _silence_stdout()
        return 0


def version_text() -> str:
    """``kb-streams X.Y.Z (Python ..., pyzmq ..., libzmq ...)``, as ``--version`` prints it."""
    import platform

    import zmq

    return (f"kb-streams {__version__} (Python {platform.python_version()}, "
            f"pyzmq {zmq.pyzmq_version()}, libzmq {zmq.zmq_version()})")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
