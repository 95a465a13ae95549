"""``kb-streams run PIPELINE.py``: run your own streamz graph on a bridge stream, live."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._live import add_source_arguments, open_source, run_live
from ._output import EXIT_USAGE, fail, handle_termination

COMMAND = "run"

EPILOG = """\
examples:
  kb-streams run examples/roi_monitor.py                    # on an embedded simulator
  kb-streams run my_pipeline.py --endpoint tcp://exflonc12:45000 --sock SUB --trains 100

PIPELINE.py defines a function (``pipeline`` by default) that receives the source stream, a
streamz Stream of kb_streams.Train records, and builds the graph on it:

    def pipeline(source):
        sums = source.map(lambda train: float(train["SA1_XTD2_XGM/XGM/DOOCS",
                                                   "pulseEnergy.photonFlux"].ndarray()))
        sums.sink(print)

It may return a stream, a callable giving a status line (str or a rich renderable) shown
live, or both as (stream, status). Ctrl-C ends the run cleanly.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        COMMAND, help="run a pipeline file on a bridge stream (or the embedded simulator)",
        description="Load PIPELINE.py, call its pipeline(source) on a bridge source stream "
                    "and run the graph with a live status until --trains trains or Ctrl-C.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pipeline", metavar="PIPELINE.py", type=Path,
                        help="Python file defining the pipeline function")
    parser.add_argument("--function", "-f", default="pipeline", metavar="NAME",
                        help="name of the function to call (default: pipeline)")
    add_source_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def load_pipeline(path: Path, name: str = "pipeline") -> Callable[..., Any]:
    """The function ``name`` of the Python file ``path`` (the file is run as a module).

    Raises
    ------
    FileNotFoundError, AttributeError, TypeError
        No such file, no such function, or not a function of one argument.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline file {str(path)!r}")
    module_name = f"kb_streams_pipeline_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that pickling (e.g. for Dask) finds its functions
    spec.loader.exec_module(module)
    func = getattr(module, name, None)
    if not callable(func):
        raise AttributeError(f"{str(path)!r} defines no function {name!r}")
    try:
        inspect.signature(func).bind(object())
    except TypeError:
        raise TypeError(f"{name}() in {str(path)!r} must take one argument, the source "
                        "stream") from None
    return func


def split_result(result: Any) -> tuple[Any, Callable[[], Any] | None]:
    """``pipeline(source)``'s return value as (stream or None, status callable or None)."""
    from streamz import Stream

    if isinstance(result, tuple) and len(result) == 2:
        stream, status = result
    elif isinstance(result, Stream) or result is None:
        stream, status = result, None
    elif callable(result):
        stream, status = None, result
    else:
        raise TypeError(f"pipeline() returned {type(result).__name__}; return a stream, a "
                        "status callable, (stream, status) or None")
    if status is not None and not callable(status):
        raise TypeError(f"pipeline() returned a status of type {type(status).__name__}, "
                        "not a callable")
    return stream, status


def run(args: argparse.Namespace) -> int:
    try:
        func = load_pipeline(args.pipeline, args.function)
    except (OSError, ImportError, AttributeError, TypeError, SyntaxError) as exc:
        return fail(COMMAND, str(exc), EXIT_USAGE)
    handle_termination()
    with open_source(args) as source:
        result = func(source)  # errors in the user's code: let the traceback show
        try:
            graph, status = split_result(result)
        except TypeError as exc:
            return fail(COMMAND, str(exc), EXIT_USAGE)
        code = run_live(source, status, trains=args.trains,
                        title=f"kb-streams run {args.pipeline.name}")
        del graph, result  # referenced until here: streamz holds downstream nodes only weakly
        return code
