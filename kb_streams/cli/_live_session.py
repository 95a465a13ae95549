"""Running a graph live, for ``kb-streams demo`` and ``kb-streams run``.

The source from the command line (a bridge, the embedded simulator of
:mod:`kb_streams.simulate.embedded` serving one without ``--endpoint``, or a recorded run with
``--run``, :mod:`._recorded`), an optional Dask cluster
(``--dask [ADDRESS]``), the graph run with the live view of :mod:`._live_view`, and a clean end
after ``--trains`` trains or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._live_options import DASK_WORKERS
from ._live_view import ClusterInfo, LiveView, print_summary, source_label
from ._recorded import check_run_arguments, open_run

if TYPE_CHECKING:
    from rich.console import Console
    from streamz import Stream

_SERVER_SOCKETS = {"REQ": "REP", "SUB": "PUB", "PULL": "PUSH"}
#: Seconds to wait for a scheduler given as ``--dask ADDRESS``.
CONNECT_TIMEOUT = 10


def first_trains(stream: Stream, trains: int | None, on_last: Callable[[], None]) -> Stream:
    """``stream`` passing on only its first ``trains`` items; ``on_last()`` at the last one.

    For sources that may still emit after :meth:`stop` (a worker-side source emits the results
    it holds for re-ordering), so that ``--trains N`` means exactly N trains in the graph.

    Examples
    --------
    >>> from streamz import Stream
    >>> source = Stream()
    >>> out = first_trains(source, 2, lambda: print("stop")).sink_to_list()
    >>> for x in range(4):
    ...     source.emit(x)
    stop
    >>> out
    [0, 1]
    """
    if trains is None:
        return stream
    seen = 0

    def keep(_: Any) -> bool:
        nonlocal seen
        seen += 1
        if seen == trains:
            on_last()
        return seen <= trains

    return stream.filter(keep)


def run_live(
    source: Any,
    status: Callable[[], Any] | None = None,
    *,
    trains: int | None = None,
    title: str = "kb-streams",
    errors: Iterable[Stream] = (),
    cluster: ClusterInfo | None = None,
    console: Console | None = None,
    stop_timeout: float = 10.0,
) -> int:
    """Run a built graph: start the source, show live status, end cleanly; the exit code.

    Ends after ``trains`` trains (the source is stopped from inside the graph; items it still
    emits after that are not counted: build the graph on :func:`first_trains` to keep them out
    of it too), when the source stops by itself, or on Ctrl-C/SIGTERM; then stops the source,
    waits for the trains in flight and prints the final summary. ``errors``: ``.errors`` streams
    to count (besides the source's own); ``cluster``: the Dask cluster to show.
    """
    emitted = left_out = 0

    def count(_: Any) -> None:
        nonlocal emitted, left_out
        if trains is not None and emitted >= trains:
            left_out += 1
            return
        emitted += 1
        if trains is not None and emitted >= trains:
            source.stop()

    counter = source.sink(count)
    view = LiveView(source, status, title=title, errors=errors, cluster=cluster, console=console)
    interrupted = False
    source.start()
    try:
        view.run(done=source.finished.is_set)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        source.stop()
        try:
            finished = source.join(stop_timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            interrupted, finished = True, False
        counter.destroy()
    if not finished:
        print(f"warning: trains still in the graph after {stop_timeout:g} s", file=sys.stderr)
    failed = min(view.errors.failed_trains, emitted)
    origin = f" from {source_label(source)}" if getattr(source, "run_label", None) else ""
    print(("interrupted; " if interrupted else "") + f"{emitted} trains processed{origin}"
          + (f", {failed} failed" if failed else "")
          + (f" ({left_out} later result{'s' if left_out > 1 else ''} left out)"
             if left_out else ""), flush=True)
    print_summary(view)
    view.close()
    if emitted == 0 and not interrupted:
        print(f"error: no train received from {source_label(source)}", file=sys.stderr)
        return 1
    if emitted and failed == emitted:
        kinds = len(view.errors.kinds)
        print(f"error: no train succeeded: all {emitted} failed ({kinds} kind"
              f"{'s' * (kinds != 1)} of error, the first of each shown above)", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def dask_cluster(address: str, *, n_workers: int = DASK_WORKERS) -> Iterator[ClusterInfo]:
    """Connect to the scheduler at ``address``, or start a local cluster (``'local'``); close it.

    Call it before building the graph (the graph's nodes then share the client's event loop).
    The worker processes of a local cluster are started with SIGINT ignored: Ctrl-C on a terminal
    reaches the whole process group, and the workers must outlive it until the graph has stopped;
    closing the client (on the way out, also after Ctrl-C) stops them.
    """
    from ..dask.cluster import close_workers_first, connect

    local = address == "local"
    previous = signal.getsignal(signal.SIGINT)
    if local:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the spawned workers
    try:
        if local:
            client = connect(n_workers=n_workers, threads_per_worker=1)
        else:
            client = connect(address, timeout=CONNECT_TIMEOUT)
    finally:
        if local:
            signal.signal(signal.SIGINT, previous)
    try:
        info = ClusterInfo(client, local=local)
        print(f"{info.line()}", flush=True)
        if not info.workers:
            print("warning: the Dask cluster has no workers (yet): nothing runs until one "
                  "joins", file=sys.stderr, flush=True)
        yield info
    finally:
        if local:
            close_workers_first(client)
        client.close(timeout=30)



def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.x, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def simulator_endpoint(args: argparse.Namespace) -> Iterator[str]:
    """``args.endpoint``, or the endpoint of an embedded simulator serving for the run."""
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint
        if endpoint is None:
            from ..simulate.embedded import embedded_simulator

            server = stack.enter_context(embedded_simulator(
                pulses=args.pulses, rate=args.rate, sock=_SERVER_SOCKETS[args.sock],
                xgm_noise=args.xgm_noise))
            endpoint = server.endpoint
            print(f"simulator: AGIPD-modules, {args.pulses} pulses, "
                  f"{args.rate:g} Hz, {server.sock} on {endpoint}", flush=True)
        yield endpoint


def check_source_arguments(args: argparse.Namespace) -> str | None:
    """Why the source options of ``args`` cannot work (one line for the user), or None."""
    return check_run_arguments(args)


def source_title(source: Any) -> str:
    """What a live view's title says the graph reads: `` on RUN`` for a run, else ''."""
    run = getattr(source, "run_label", None)
    return f" on {run}" if run else ""


@contextlib.contextmanager
def open_source(args: argparse.Namespace) -> Iterator[Any]:
    """The source for ``args``: the recorded run of ``--run``, else the bridge (with a simulator
    serving it, without ``--endpoint``).

    The bridge source asks for the next train as soon as one arrives (``prefetch=2``), so
    transfer and analysis overlap.

    Raises
    ------
    SourceError
        The run cannot be opened (call :func:`check_source_arguments` first for the rest).
    """
    if args.run is not None:
        yield open_run(args)
        return
    from ..sources import from_karabo_bridge

    with simulator_endpoint(args) as endpoint:
        yield from_karabo_bridge(endpoint, sock=args.sock, timeout=args.timeout, prefetch=2,
                                 max_in_flight=args.max_in_flight)

