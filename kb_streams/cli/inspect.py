"""``kb-streams inspect``: receive one train from a bridge endpoint and describe it."""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ProtocolError
from ..protocol import Message
from ..train import Train
from ._output import (
    EXIT_OK,
    add_reader_command,
    fail,
    format_bytes,
    format_seconds,
    is_terminal,
    label_grid,
    open_reader,
    plain_table,
)

COMMAND = "inspect"
COLUMNS = ["source", "key", "type", "shape", "size", "value"]

HELP = "receive one train and print what it holds"
DESCRIPTION = ("Receive one train from a Karabo bridge endpoint and print a table of its "
              "sources and keys.")

EPILOG = """\
examples:
  kb-streams inspect tcp://127.0.0.1:45000                 # from a REP server (kb-streams simulate)
  kb-streams inspect tcp://127.0.0.1:45000 --sock SUB      # from a PUB server
  kb-streams inspect ipc:///tmp/bridge --sock PULL --timeout 30
  kb-streams inspect tcp://127.0.0.1:45000 --source '*XGM*'   # only the XGM's keys

Prints the train ID, timestamp, age (now - timestamp) and protocol version, then one row per
key: source, key, type (the dtype, for arrays), shape, size and (if short) the value itself.
--source GLOB (repeatable) shows only the sources matching one of the patterns (fnmatch
syntax, case-sensitive). Exits with 1 and a one-line error if no train arrives within --timeout
seconds, or if no source of the train matches.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_reader_command(subparsers, COMMAND, run, help=HELP, description=DESCRIPTION,
                                epilog=EPILOG)
    parser.add_argument("--source", "-s", action="append", default=None, metavar="GLOB",
                        help="show only the sources matching GLOB, e.g. '*XGM*' "
                             "(repeat for more patterns; default: all)")
    return parser


def run(args: argparse.Namespace) -> int:
    client = open_reader(args)
    try:
        message = client.next_message()
    except TimeoutError:
        return fail(COMMAND, f"no train from {args.endpoint} ({args.sock}) "
                             f"within {args.timeout:g} s")
    except ProtocolError as exc:
        return fail(COMMAND, f"cannot decode the message from {args.endpoint}: {exc}")
    finally:
        client.close()
    train = Train.from_message(message)
    shown = matching_sources(message.data, args.source)
    if not shown:
        return fail(COMMAND, f"no source of train {train.train_id} matches "
                             f"{' or '.join(args.source)}; it has: {', '.join(message.data)}")
    if is_terminal():
        print_rich(message, train, args, shown)
    else:
        print(describe_plain(message, train, args, shown), flush=True)
    return EXIT_OK


def matching_sources(sources: Mapping[str, Any], patterns: list[str] | None) -> list[str]:
    """The names in ``sources`` matching any of the glob ``patterns`` (all if ``None``).

    Examples
    --------
    >>> matching_sources({"SA1_XTD2_XGM/XGM/DOOCS": 0, "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf": 0},
    ...                  ["*XGM*"])
    ['SA1_XTD2_XGM/XGM/DOOCS']
    """
    if patterns is None:
        return list(sources)
    return [name for name in sources
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]


# -- describing a train -----------------------------------------------------------------------

def rows(message: Message, sources: list[str] | None = None) -> list[list[str]]:
    """One row of :data:`COLUMNS` per key of every source (of ``sources``, if given), sources and
    keys in received order."""
    table = []
    for source in message.data if sources is None else sources:
        for key, value in _flatten(message.data[source]):
            table.append([source, key, *_describe(value)])
    return table


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _describe(value: Any) -> list[str]:
    """type, shape, size and value of one value; array data is never read (but 0-d arrays)."""
    if isinstance(value, np.ndarray):
        shown = _short(value.item()) if value.ndim == 0 else ""
        return [f"{value.dtype} array", str(value.shape), format_bytes(value.nbytes), shown]
    if isinstance(value, np.generic):
        return [f"{value.dtype} scalar", "", format_bytes(value.nbytes), _short(value.item())]
    if isinstance(value, (list, tuple, str, bytes)):
        size = format_bytes(len(value)) if isinstance(value, (str, bytes)) else ""
        return [type(value).__name__, f"({len(value)},)", size, _short(value)]
    return [type(value).__name__, "", "", _short(value)]


def _short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(message: Message, train: Train,
            shown: list[str] | None = None) -> list[tuple[str, str]]:
    """(label, text) pairs describing the whole train (``shown``: the sources listed below)."""
    n_sources = str(len(message.data))
    if shown is not None and len(shown) < len(message.data):
        n_sources = f"{n_sources} ({len(shown)} shown)"
    has_time = not np.isnat(train.timestamp)
    parts = [
        ("train ID", "n/a (no timestamp.tid)" if train.train_id is None else str(train.train_id)),
        ("timestamp", f"{train.timestamp}Z" if has_time else "n/a (no timestamp in metadata)"),
        ("age", format_seconds(train.age)),
        ("protocol", message.protocol_version),
        ("sources", n_sources),
        ("size", format_bytes(message.nbytes)),
    ]
    if train.train_id_conflicts:
        parts.append(("warning", f"sources disagree on the train ID: {train.train_id_conflicts}"))
    return parts


def describe_plain(message: Message, train: Train, args: argparse.Namespace,
                   shown: list[str] | None = None) -> str:
    """The whole description as plain text (for pipes and files); ``shown``: sources to list."""
    head = [("endpoint", f"{args.endpoint} ({args.sock})"), *summary(message, train, shown)]
    width = max(len(label) for label, _ in head)
    lines = [f"{label.ljust(width)}  {text}" for label, text in head]
    return "\n".join(lines) + "\n\n" + plain_table(COLUMNS, rows(message, shown))


def print_rich(message: Message, train: Train, args: argparse.Namespace,
               shown: list[str] | None = None) -> None:
    """The description for a terminal: a summary, then one table per source (of ``shown``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(label_grid([("endpoint", f"{args.endpoint} ({args.sock})"),
                              *summary(message, train, shown)], justify="left"))
    by_source: dict[str, list[list[str]]] = {}
    for row in rows(message, shown):
        by_source.setdefault(row[0], []).append(row[1:])
    for source, source_rows in by_source.items():
        tid = train.meta.get(source, {}).get("timestamp.tid")
        title = f"[bold]{source}[/]" + (f"  train {tid}" if tid is not None else "")
        table = Table(title=title, title_justify="left", header_style="bold")
        table.add_column("key", no_wrap=True)
        table.add_column("type", no_wrap=True)
        table.add_column("shape", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("value", overflow="ellipsis", no_wrap=True)
        for row in source_rows:
            table.add_row(*row)
        console.print(table)
