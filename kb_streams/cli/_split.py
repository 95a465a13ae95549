"""``kb-streams simulate --split``: each part of the sources on its own, late and lossy bridge."""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from ._output import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail

COMMAND = "simulate"


def part_argument(text: str) -> Any:
    """argparse type of ``--split NAME=GLOB[+GLOB...][:delay=S,jitter=S,drop=F,shuffle=1]``."""
    from ..simulate.split import parse_part

    try:
        return parse_part(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def part_endpoints(endpoint: str, n: int) -> list[str]:
    """One endpoint per part: consecutive ports from ``endpoint``'s (port 0: free ports each).

    Examples
    --------
    >>> part_endpoints("tcp://127.0.0.1:45000", 2)
    ['tcp://127.0.0.1:45000', 'tcp://127.0.0.1:45001']
    """
    match = re.fullmatch(r"(tcp://.*:)(\d+)", endpoint)
    if endpoint.isdigit():
        match = re.fullmatch(r"(tcp://127\.0\.0\.1:)(\d+)", f"tcp://127.0.0.1:{endpoint}")
    if match is None:  # ipc:// and the like: a suffix per part
        return [f"{endpoint}-{i}" for i in range(n)]
    base, port = match[1], int(match[2])
    return [f"{base}{port + i if port else 0}" for i in range(n)]


def serve_split(args: argparse.Namespace, trains: Iterable[Any],
                out: Callable[[str], None]) -> int:
    """Serve ``trains`` split into ``args.split`` parts until ``--trains`` or Ctrl-C."""
    from ..simulate.split import SplitServer

    parts = args.split
    try:
        split = SplitServer(parts, part_endpoints(args.endpoint, len(parts)), sock=args.sock,
                            seed=args.seed, protocol_version=args.protocol)
    except zmq.ZMQError as exc:
        return fail(COMMAND, str(exc), EXIT_USAGE)
    except ValueError as exc:
        return fail(COMMAND, str(exc), EXIT_USAGE)
    error: list[BaseException] = []

    def serve() -> None:
        try:
            split.serve(trains, limit=args.trains, rate=args.rate or None)
        except BaseException as exc:  # reported below
            error.append(exc)

    with split:
        trains.prepare()
        for part, endpoint in zip(parts, split.endpoints, strict=True):
            out(f"Serving part {part.name} ({'+'.join(part.patterns)}; delay {part.delay:g} s, "
                f"jitter {part.jitter:g} s, drop {part.drop:g}) over {args.sock} on {endpoint}")
        thread = threading.Thread(target=serve, daemon=True, name="split simulator")
        thread.start()
        try:
            last = ""
            while thread.is_alive():
                thread.join(args.interval)
                line = "  ".join(f"{name}: sent {s['sent']} dropped {s['dropped']}"
                                 + (f" unsent {s['unsent']}" if s["unsent"] else "")
                                 for name, s in split.stats().items())
                if line != last:
                    out(line)
                    last = line
        except KeyboardInterrupt:
            split.stop()
            thread.join(5)
        time.sleep(0.5 if args.trains else 0)  # the last parts reach their readers
    if error:
        return fail(COMMAND, f"simulator failed: {error[0]}", EXIT_FAILURE)
    return EXIT_OK
