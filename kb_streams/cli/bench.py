"""``kb-streams bench NAME [options]``: run ``benchmarks/bench_NAME.py`` from the source tree.

Each benchmark module defines ``add_arguments(parser)`` and ``main(args) -> int``. Benchmarks live
next to the package in a source checkout (``pip install -e .``), not in an installed wheel.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

import kb_streams
from kb_streams.errors import BenchmarkNotFound

PREFIX = "bench_"


def benchmarks_dir() -> Path | None:
    """The ``benchmarks`` directory of the source tree, or ``None`` if there is none."""
    path = Path(kb_streams.__file__).resolve().parents[1] / "benchmarks"
    return path if path.is_dir() else None


def available() -> list[str]:
    """Names of the benchmarks found (``bench_<name>.py``)."""
    directory = benchmarks_dir()
    if directory is None:
        return []
    return sorted(p.stem[len(PREFIX):] for p in directory.glob(f"{PREFIX}*.py"))


def load(name: str) -> ModuleType:
    """Import ``benchmarks/bench_<name>.py`` from the source tree.

    The module is imported as ``benchmarks.bench_<name>`` with the source root on ``sys.path``, so
    that processes it starts with the ``spawn`` method can import it (and its functions) by name.

    Raises
    ------
    BenchmarkNotFound
        If there is no benchmarks directory or no such benchmark.
    """
    directory = benchmarks_dir()
    if directory is None:
        raise BenchmarkNotFound(
            f"no benchmarks directory next to {Path(kb_streams.__file__).parent} "
            "(benchmarks come with a source checkout: git clone, then pip install -e .)"
        )
    path = directory / f"{PREFIX}{name}.py"
    if not path.is_file():
        raise BenchmarkNotFound(
            f"no benchmark {name!r} in {directory} (available: {', '.join(available()) or 'none'})"
        )
    root = str(directory.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
    if Path(module.__file__).resolve() != path.resolve():
        raise BenchmarkNotFound(
            f"'benchmarks.{PREFIX}{name}' resolves to {module.__file__}, not {path}: "
            "another 'benchmarks' package shadows the source tree's"
        )
    return module


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    names = available()
    listing = ", ".join(names) if names else "none found (needs a source checkout)"
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark from the source tree",
        description="Run benchmarks/bench_NAME.py. "
        "Use 'kb-streams bench NAME --help' for the options of one benchmark.",
        epilog=f"available benchmarks: {listing}",
    )
    parser.add_argument("name", metavar="NAME", help=f"benchmark to run: {listing}")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="options passed on to the benchmark")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        module = load(args.name)
    except BenchmarkNotFound as exc:
        print(f"kb-streams bench: {exc}", file=sys.stderr)
        return 2
    doc = (module.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog=f"kb-streams bench {args.name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    return int(module.main(parser.parse_args(args.options)) or 0)
