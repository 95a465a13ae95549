"""``kb-streams run PIPELINE.py``: run your own streamz graph on a bridge stream, live, or on a
recorded run (``--run``) with the same graph.

With ``--dask [ADDRESS]`` the Dask client is made first (a local cluster or a running scheduler),
so that the source and the graph are built on its event loop; a ``pipeline(source, client)``
function gets it as ``client``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._live_options import add_dask_arguments, add_live_parser
from ._live_session import (
    check_source_arguments,
    dask_cluster,
    open_source,
    run_live,
    source_title,
)
from ._live_view import error_streams
from ._output import EXIT_FAILURE, EXIT_USAGE, fail, handle_termination
from ._recorded import SourceError
from ._web import add_web_arguments, serving

COMMAND = "run"
#: Pipeline files are loaded as modules named this + the file's stem.
MODULE_PREFIX = "kb_streams_pipeline_"

EPILOG = """\
examples:
  kb-streams run examples/roi_monitor.py                    # on an embedded simulator
  kb-streams run my_pipeline.py --endpoint tcp://exflonc12:45000 --sock SUB --trains 100
  kb-streams run my_pipeline.py --save results.h5           # one row per train, HDF5
  kb-streams run my_pipeline.py --run /gpfs/exfel/exp/SPB/202401/p002345/raw/r0042 --rate 0
  kb-streams run my_pipeline.py --run 2345:42 --rate original --loop   # EXtra-data's open_run
  kb-streams run my_pipeline.py --dask                       # with a local Dask cluster
  kb-streams run my_pipeline.py --dask tcp://10.0.0.5:8786   # with a running scheduler

PIPELINE.py defines a function (``pipeline`` by default) that receives the source stream, a
streamz Stream of kb_streams.Train records, and builds the graph on it:

    def pipeline(source):
        sums = source.map(lambda train: float(train["SA1_XTD2_XGM/XGM/DOOCS",
                                                   "pulseEnergy.photonFlux"].ndarray()))
        sums.sink(print)

It may return a stream, a callable giving a status line (str or a rich renderable) shown
live, or both as (stream, status). Ctrl-C ends the run cleanly.

--run PATH|PROPOSAL:RUN feeds the same graph a recorded run instead (Stream.from_run: the
trains karabo-bridge-serve-files would send for it) at --rate trains/s (0: as fast as the
graph takes them; original: the recorded timing), once or, with --loop, over and over.

--dask [ADDRESS]: connect to a Dask cluster first (without ADDRESS: start a local cluster of
--workers worker processes on 127.0.0.1, closed at the end), build the source on the client's
event loop, then call pipeline(source, client=client) if the function takes a ``client``
parameter (otherwise pipeline(source); the client is also the Dask default client):

    def pipeline(source, client=None):
        results = source.offload(reduce_train, n=4, client=client)  # kb_streams.offload
        results.sink(print)
        return results

Plots the pipeline puts on the dashboard (stream.to_dashboard("name", kind="image"|"curve"|
"scalar"|"histogram"), kb_streams.web) are served on http://127.0.0.1:8050 (--web-port,
--no-web) while it runs.

Functions defined in PIPELINE.py are sent to the workers by value; modules it imports must be
installed on the workers. Errors reported on the .errors streams of the graph's nodes (e.g.
offload) are counted in the live view.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_live_parser(
        subparsers, COMMAND,
        help="run a pipeline file on a bridge stream, the embedded simulator or a recorded run",
        description="Load PIPELINE.py, call its pipeline(source) on a bridge source stream "
                    "(or a recorded run's, --run; pipeline(source, client=client) with --dask) "
                    "and run the graph with a live status until --trains trains, the run's end "
                    "or Ctrl-C.",
        epilog=EPILOG)
    parser.add_argument("pipeline", metavar="PIPELINE.py", type=Path,
                        help="Python file defining the pipeline function")
    parser.add_argument("--function", "-f", default="pipeline", metavar="NAME",
                        help="name of the function to call (default: pipeline)")
    add_dask_arguments(parser, what="connect to Dask first and pass the client to pipeline()")
    parser.add_argument("--save", type=Path, default=None, metavar="PATH.h5",
                        help="save what the pipeline's stream emits to an HDF5 file, one row "
                             "per train (kb_streams.save.to_hdf5; needs kb-streams[files])")
    add_web_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def load_pipeline(path: Path, name: str = "pipeline") -> Callable[..., Any]:
    """The function ``name`` of the Python file ``path`` (the file is run as a module).

    Raises
    ------
    FileNotFoundError, AttributeError, TypeError
        No such file, no such function, or not a function of the source stream (and of a
        ``client``, optionally).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline file {str(path)!r}")
    module_name = f"{MODULE_PREFIX}{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickle look modules up there
    spec.loader.exec_module(module)
    func = getattr(module, name, None)
    if not callable(func):
        raise AttributeError(f"{str(path)!r} defines no function {name!r}")
    try:
        signature = inspect.signature(func)
        if takes_client(func):
            signature.bind(object(), client=object())
        else:
            signature.bind(object())
    except (TypeError, ValueError):
        raise TypeError(f"{name}() in {str(path)!r} must take one argument, the source "
                        "stream (and optionally client)") from None
    return func


def takes_client(func: Callable[..., Any]) -> bool | None:
    """Whether ``func`` has a ``client`` parameter: ``None`` if it has none, ``True`` if it
    needs it, ``False`` if it has a default.

    Examples
    --------
    >>> takes_client(lambda source, client=None: None), takes_client(lambda source: None)
    (False, None)
    """
    parameter = inspect.signature(func).parameters.get("client")
    if parameter is None or parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
        return None
    return parameter.default is parameter.empty


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
    problem = check_source_arguments(args)
    if problem is not None:
        return fail(COMMAND, problem, EXIT_USAGE)
    try:
        func = load_pipeline(args.pipeline, args.function)
    except (OSError, ImportError, AttributeError, TypeError, SyntaxError) as exc:
        return fail(COMMAND, str(exc), EXIT_USAGE)
    needs_client = takes_client(func)
    if args.dask is None and needs_client:
        return fail(COMMAND, f"{args.function}() in {str(args.pipeline)!r} needs a Dask client: "
                    "run it with --dask [ADDRESS]", EXIT_USAGE)
    handle_termination()
    with contextlib.ExitStack() as stack:
        cluster = None
        kwargs: dict[str, Any] = {}
        if args.dask is not None:
            try:
                # the client first: the source and the graph then share its event loop
                cluster = stack.enter_context(dask_cluster(args.dask, n_workers=args.workers))
            except (OSError, TimeoutError) as exc:
                return fail(COMMAND, f"cannot connect to the Dask scheduler {args.dask}: {exc}",
                            EXIT_FAILURE)
            ship_by_value(func)
            if needs_client is not None:
                kwargs["client"] = cluster.client
        try:
            source = stack.enter_context(open_source(args))
        except SourceError as exc:
            return fail(COMMAND, str(exc), EXIT_USAGE)
        result = func(source, **kwargs)  # errors in the user's code: let the traceback show
        try:
            graph, status = split_result(result)
            saver = _saver(graph, args.save)
        except (TypeError, ImportError, OSError) as exc:
            return fail(COMMAND, str(exc), EXIT_USAGE)
        web = sys.modules.get("kb_streams.web.dashboard")  # imported if the pipeline used it
        dashboard = web.default_dashboard() if web is not None and not args.no_web else None
        title = f"kb-streams run {args.pipeline.name}{source_title(source)}"
        with serving(dashboard, args) as url:
            code = run_live(source, status, trains=args.trains, errors=error_streams(source),
                            cluster=cluster,
                            title=title + (f" · dashboard {url}" if url else ""))
        if saver is not None:
            saver.stop()
            saver.join(30)
            stats = saver.stats
            print(f"saved {stats.written} trains to {args.save} ({stats.dropped} dropped, "
                  f"{stats.errors} not saved)", flush=True)
        del graph, result  # referenced until here: streamz holds downstream nodes only weakly
        return code


def _saver(graph: Any, path: Path | None) -> Any:
    """``graph.to_hdf5(path)`` for ``--save`` (None without it)."""
    if path is None:
        return None
    if graph is None:
        raise TypeError("--save needs pipeline() to return the stream of results to save")
    from ..save import to_hdf5

    return to_hdf5(graph, str(path))


def ship_by_value(func: Callable[..., Any]) -> None:
    """Let Dask send the functions of ``func``'s pipeline file to the workers by value.

    Workers cannot import the file's module. Distributed pickles a task with plain ``pickle``
    first, which would refer to the module by name; once the module is no longer importable here
    either, that fails, and distributed falls back to cloudpickle, which copies the functions
    (cloudpickle's ``register_pickle_by_value`` alone is not enough: distributed consults it only
    for the top-level object, not for the functions inside a task).
    """
    if func.__module__.startswith(MODULE_PREFIX):
        sys.modules.pop(func.__module__, None)
