"""What the benchmark scripts share: running one as a script, their common options, reporting.

Every ``benchmarks/bench_NAME.py`` defines ``add_arguments(parser)`` and ``main(args) -> int``;
``kb-streams bench NAME`` runs it, and so does ``python -m benchmarks.bench_NAME`` from the source
root (through :func:`run_as_script`).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NoReturn

#: The options several benchmarks take: ``name: (type, help)``; see :func:`add_options`.
COMMON_OPTIONS: dict[str, tuple[type, str]] = {
    "pulses": (int, "pulses per train"),
    "trains": (int, "trains timed per case"),
    "warmup": (int, "trains before timing starts"),
    "rounds": (int, "rounds, each running every case once; rates are medians over rounds"),
    "timeout": (float, "seconds to wait for one train"),
    "seconds": (float, "seconds measured per case"),
}

#: A bridge serving simulated AGIPD-1M module trains: ``python -c SERVE ENDPOINT SOCK PULSES``.
SERVE = """
import sys
from kb_streams.server import BridgeServer
from kb_streams.simulate import simulate
endpoint, sock, pulses = sys.argv[1], sys.argv[2], int(sys.argv[3])
with BridgeServer(endpoint, sock=sock) as server:
    server.serve(simulate("AGIPD-modules", pulses=pulses, pool_size=1, extras=()))
"""


def run_as_script(doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
                  main: Callable[[argparse.Namespace], int]) -> NoReturn:
    """Parse the command line as ``kb-streams bench`` would, run *main*, exit with its status."""
    parser = argparse.ArgumentParser(description=(doc or "").strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))


def add_options(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Add the :data:`COMMON_OPTIONS` named, each with its default.

    A value may also be ``(default, help)`` where a benchmark says more than the common text.
    """
    for name, value in defaults.items():
        kind, text = COMMON_OPTIONS[name]
        default, text = value if isinstance(value, tuple) else (value, text)
        parser.add_argument(f"--{name}", type=kind, default=default,
                            help=f"{text} (default %(default)s)")


def add_json_option(parser: argparse.ArgumentParser, *, to_file: bool) -> None:
    """``--json FILE`` (also write the results there) or ``--json`` (print JSON, no table)."""
    if to_file:
        parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    else:
        parser.add_argument("--json", action="store_true",
                            help="print the results as JSON instead of a table")


def print_results(results: Any, as_json: bool, table: Callable[[Any], str]) -> int:
    """Print *results* as JSON or as ``table(results)``; exit status 0."""
    print(json.dumps(results, indent=2) if as_json else table(results), flush=True)
    return 0


def write_json(path: str | None, results: dict[str, Any]) -> None:
    """Write *results* to *path* as JSON (nothing without a path)."""
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def free_endpoint() -> str:
    """A ``tcp://127.0.0.1:PORT`` endpoint on a port free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def serve_agipd(endpoint: str, pulses: int, sock: str = "REP") -> subprocess.Popen:
    """A bridge serving AGIPD-1M module trains of *pulses* pulses, in its own process."""
    return subprocess.Popen([sys.executable, "-c", SERVE, endpoint, sock, str(pulses)])
