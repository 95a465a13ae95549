"""``--run``: a recorded run in place of the bridge, for ``kb-streams demo`` and ``kb-streams run``.

The option types (``--run PATH|PROPOSAL:RUN``, ``--rate HZ|original``), the checks of an option
combination that cannot work (each one line for the user), and opening the run as a
:func:`kb_streams.run_source.from_run` source. EXtra-data is imported only when a run is opened.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from typing import Any

#: ``--rate`` value replaying a run's recorded timing.
ORIGINAL = "original"
_PROPOSAL_RUN = re.compile(r"p?(\d+):r?(\d+)")
INSTALL_FILES = "pip install 'kb_streams[files]'"


class SourceError(Exception):
    """The source asked for on the command line cannot be opened (the message is one line)."""


def run_location(text: str) -> Path | tuple[int, int]:
    """``--run`` type: a run directory or HDF5 file, or ``PROPOSAL:RUN`` for EXtra-data's
    ``open_run`` (an existing path of that spelling stays a path).

    Examples
    --------
    >>> run_location("2345:42"), run_location("p002345:r0042")
    ((2345, 42), (2345, 42))
    >>> run_location("/gpfs/exfel/exp/SPB/202401/p002345/raw/r0042")
    PosixPath('/gpfs/exfel/exp/SPB/202401/p002345/raw/r0042')
    """
    match = _PROPOSAL_RUN.fullmatch(text.strip())
    if match and not Path(text).exists():
        return int(match[1]), int(match[2])
    return Path(text)


def rate(text: str) -> float | str:
    """``--rate`` type: trains per second (0 = as fast as possible), or ``original``.

    Examples
    --------
    >>> rate("10"), rate("0"), rate("Original")
    (10.0, 0.0, 'original')
    """
    if text.strip().lower() == ORIGINAL:
        return ORIGINAL
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected trains per second or {ORIGINAL!r}, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def check_run_arguments(args: argparse.Namespace) -> str | None:
    """Why ``args`` cannot work (one line), or None; cheap: the run itself is not opened."""
    location = args.run
    if location is None:
        if getattr(args, "loop", False):
            return "--loop repeats a recorded run: it needs --run"
        if args.rate == ORIGINAL:
            return f"--rate {ORIGINAL} replays a recorded run's timing: it needs --run"
        return None
    if args.endpoint is not None:
        return "--run and --endpoint exclude each other: read a recorded run or a bridge"
    if importlib.util.find_spec("extra_data") is None:
        return f"--run reads runs with EXtra-data, which is not installed: {INSTALL_FILES}"
    if isinstance(location, Path) and not location.exists():
        return f"no run directory or HDF5 file {str(location)!r}"
    return None


def open_run(args: argparse.Namespace) -> Any:
    """A :func:`~kb_streams.run_source.from_run` source reading ``args.run`` at ``args.rate``.

    Raises
    ------
    SourceError
        EXtra-data cannot open the run (no files, not a run, proposal not found...).
    """
    from ..run_source import from_run, run_label

    pace = None if args.rate == 0 else args.rate
    try:
        source = from_run(args.run, rate=pace, loop=args.loop,
                          max_in_flight=args.max_in_flight)
    except ImportError:
        raise SourceError(f"--run needs EXtra-data: {INSTALL_FILES}") from None
    except Exception as exc:  # EXtra-data raises plain Exception for a missing proposal
        raise SourceError(f"cannot open the run {run_label(args.run)}: {exc}") from None
    trains = len(source.collection.train_ids)
    if not trains:
        raise SourceError(f"the run {run_label(args.run)} holds no trains")
    pace = "as fast as the graph goes" if pace is None else \
        "at the recorded timing" if pace == ORIGINAL else f"at {pace:g} Hz"
    print(f"run: {source.run_label}, {trains} trains of {len(source.collection.all_sources)} "
          f"sources, {pace}{', looping' if args.loop else ''}", flush=True)
    return source
