"""Helpers shared by the ``kb-streams`` sub-commands.

Rich output on a terminal, plain lines when piped; one-line errors on stderr and exit codes;
human-readable sizes and durations; a sub-command's parser; the bridge socket options every
reading command takes, and the client they open.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..client import Client

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran but failed: timeout, nothing to read, cannot bind, ...
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)

# a reader's socket for each kind of server socket, so users may name either end
_READER_SOCKETS = {"REQ": "REQ", "SUB": "SUB", "PULL": "PULL",
                   "REP": "REQ", "PUB": "SUB", "PUSH": "PULL"}


class CommandFailed(Exception):
    """Ends a sub-command with a one-line error (see :func:`fail`) and the exit status *code*."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether *stream* (stdout by default) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fail(command: str, message: str, code: int = EXIT_FAILURE) -> int:
    """Print ``kb-streams COMMAND: error: MESSAGE`` on stderr (one line) and return *code*.

    Examples
    --------
    >>> fail('inspect', 'no train within 5 s')   # doctest: +SKIP
    1
    """
    text = " ".join(str(message).split())
    print(f"kb-streams {command}: error: {text}", file=sys.stderr, flush=True)
    return code


def add_command(subparsers: argparse._SubParsersAction, name: str, run: Callable[..., int], *,
                help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The parser of sub-command *name*, which calls *run(args)*; *epilog* printed as written."""
    parser = subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)
    return parser


def add_reader_command(subparsers: argparse._SubParsersAction, name: str,
                       run: Callable[..., int], **texts: str) -> argparse.ArgumentParser:
    """:func:`add_command` for a command reading one bridge, with :func:`add_reader_arguments`."""
    parser = add_command(subparsers, name, run, **texts)
    add_reader_arguments(parser, timeout=10.0)
    return parser


def reader_socket(name: str) -> str:
    """``--sock`` type: REQ/SUB/PULL, also accepting the server's REP/PUB/PUSH (any case).

    Examples
    --------
    >>> reader_socket('pub')
    'SUB'
    """
    try:
        return _READER_SOCKETS[name.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid socket {name!r} (choose from REQ, SUB, PULL)") from None


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def add_reader_arguments(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    """Add ``ENDPOINT``, ``--sock`` and ``--timeout``, as every reading command takes them."""
    parser.add_argument(
        "endpoint", metavar="ENDPOINT",
        help="bridge endpoint to connect to, e.g. tcp://127.0.0.1:45000 or ipc:///tmp/bridge")
    parser.add_argument(
        "--sock", "-z", type=reader_socket, default="REQ", metavar="{REQ,SUB,PULL}",
        help="socket type matching the server's REP, PUB or PUSH (default: REQ); "
             "the server's name (REP, PUB, PUSH) is accepted too")
    parser.add_argument(
        "--timeout", type=positive_float, default=timeout, metavar="S",
        help=f"give up after S seconds without a train (default: {timeout:g})")


def open_reader(args: argparse.Namespace) -> Client:
    """A :class:`~kb_streams.Client` on the options of :func:`add_reader_arguments`.

    Raises
    ------
    CommandFailed
        With :data:`EXIT_USAGE` if ZeroMQ refuses the endpoint.
    """
    import zmq

    from ..client import Client

    try:
        return Client(args.endpoint, sock=args.sock, timeout=args.timeout)
    except zmq.ZMQError as exc:
        raise CommandFailed(f"bad endpoint {args.endpoint!r}: {exc}", EXIT_USAGE) from None


def handle_termination() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, even if the shell ignored SIGINT."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


# -- formatting -------------------------------------------------------------------------------

def format_bytes(nbytes: float) -> str:
    """Decimal (SI) size, as the bridge figures are quoted.

    Examples
    --------
    >>> format_bytes(16_778_838), format_bytes(512), format_bytes(2.1e9)
    ('16.8 MB', '512 B', '2.10 GB')
    """
    if nbytes < 1000:
        return f"{nbytes:.0f} B"
    for unit in ("kB", "MB", "GB", "TB"):
        nbytes /= 1000
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.2f} {unit}" if nbytes < 10 else f"{nbytes:.1f} {unit}"
    raise AssertionError("unreachable")


def format_seconds(seconds: float | None) -> str:
    """A duration or an age: ms below one second, else seconds; ``'n/a'`` when unknown.

    Examples
    --------
    >>> format_seconds(0.0123), format_seconds(3.25), format_seconds(None)
    ('12.3 ms', '3.25 s', 'n/a')
    """
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def label_grid(rows: Sequence[tuple[str, str]], *, justify: str = "right") -> Any:
    """A rich grid of ``(label, text)`` rows for a terminal, labels in bold (*justify*-ed)."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify=justify)
    grid.add_column()
    for label, text in rows:
        grid.add_row(label, text)
    return grid


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, for piped output.

    Examples
    --------
    >>> print(plain_table(['key', 'shape'], [['image.data', '(64, 512, 128)']]))
    key         shape
    image.data  (64, 512, 128)
    """
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
