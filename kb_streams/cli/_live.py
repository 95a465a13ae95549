"""Running a graph live, for ``kb-streams demo`` and ``kb-streams run``.

The bridge source (or an embedded simulator) from the command line, a live status view (rich on a
terminal, plain lines when piped) that polls the source's counters
(:class:`kb_streams.sources.SourceStats`) and an optional ``status()`` callable of the pipeline
from the main thread while the graph runs in its event-loop thread, and a clean end after
``--trains`` trains or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._output import format_seconds, non_negative_float, positive_float, positive_int, reader_socket

if TYPE_CHECKING:
    from ..sources import SourceStats, from_karabo_bridge

_SERVER_SOCKETS = {"REQ": "REP", "SUB": "PUB", "PULL": "PUSH"}


class _Rate:
    """Trains per second over the last few seconds, from a growing counter."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.points: deque[tuple[float, int]] = deque()

    def update(self, count: int, now: float) -> float:
        self.points.append((now, count))
        while len(self.points) > 2 and now - self.points[0][0] > self.window:
            self.points.popleft()
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def status_line(stats: SourceStats, rate: float) -> str:
    """One line of source counters.

    Examples
    --------
    >>> from kb_streams.sources import SourceStats
    >>> print(status_line(SourceStats(trains=10, age_last=0.05, age_mean=0.04), rate=9.9))
    trains 10 | 9.9/s | age 0.050 s (mean 0.040) | lost 0 | dropped 0 | errors 0 | in flight 0
    """
    age = ("-" if math.isnan(stats.age_last)
           else f"{stats.age_last:.3f} s (mean {stats.age_mean:.3f})")
    errors = stats.errors + stats.decode_errors
    return (f"trains {stats.trains} | {rate:.1f}/s | age {age} | lost {stats.gaps} | "
            f"dropped {stats.dropped} | errors {errors} | in flight {stats.in_flight}")


class LiveView:
    """Show a running source's counters and a pipeline's status until told to stop.

    Parameters
    ----------
    source
        The running bridge source.
    status
        Optional callable returning the pipeline's status: a string or a rich renderable.
    title
        Shown above the counters.
    interval
        Seconds between refreshes on a terminal.
    plain_interval
        Seconds between printed lines when the output is not a terminal.
    console
        The rich console to write to (default: standard output).
    """

    def __init__(
        self,
        source: from_karabo_bridge,
        status: Callable[[], Any] | None = None,
        *,
        title: str = "kb-streams",
        interval: float = 0.25,
        plain_interval: float = 2.0,
        console: Console | None = None,
    ) -> None:
        self.source = source
        self.status = status
        self.title = title
        self.interval = interval
        self.plain_interval = plain_interval
        self.console = console or Console()
        self._rate = _Rate()
        self.rate = 0.0

    def counters(self) -> str:
        stats = self.source.stats
        self.rate = self._rate.update(stats.trains, time.monotonic())
        return status_line(stats, self.rate)

    def _pipeline_status(self) -> Any:
        if self.status is None:
            return None
        try:
            return self.status()
        except Exception as exc:  # a broken status callable must not end the run
            return f"(status unavailable: {type(exc).__name__}: {exc})"

    def _counter_table(self) -> Table:
        stats = self.source.stats
        self.rate = self._rate.update(stats.trains, time.monotonic())
        table = Table(box=None, padding=(0, 1), show_edge=False)
        cells = {
            "trains": str(stats.trains),
            "per s": f"{self.rate:.1f}",
            "age": format_seconds(stats.age_last),
            "mean age": format_seconds(stats.age_mean),
            "lost": str(stats.gaps),
            "dropped": str(stats.dropped),
            "errors": str(stats.errors + stats.decode_errors),
            "in flight": str(stats.in_flight),
        }
        for name in cells:
            table.add_column(name, justify="right", header_style="dim", no_wrap=True)
        table.add_row(*cells.values(), style="bold")
        return table

    def _renderable(self) -> Any:
        parts: list[Any] = [self._counter_table()]
        status = self._pipeline_status()
        if status is not None:
            parts.append(Text(status) if isinstance(status, str) else status)
        return Panel(Group(*parts), title=self.title, title_align="left")

    def run(self, done: Callable[[], bool]) -> None:
        """Refresh until ``done()`` is true (KeyboardInterrupt passes through to the caller)."""
        self._rate.update(self.source.stats.trains, time.monotonic())
        if self.console.is_terminal:
            with Live(self._renderable(), console=self.console, refresh_per_second=4,
                      transient=False) as live:
                while not done():
                    time.sleep(self.interval)
                    live.update(self._renderable())
                live.update(self._renderable())
        else:
            next_line = time.monotonic() + self.plain_interval
            while not done():
                time.sleep(min(self.interval, self.plain_interval))
                if time.monotonic() >= next_line:
                    next_line += self.plain_interval
                    print(self.counters(), flush=True)

    def summary(self) -> str:
        """Final counters and pipeline status, as plain text."""
        lines = [self.counters()]
        status = self._pipeline_status()
        if status is not None:
            if isinstance(status, str):
                lines.append(status)
            else:
                with self.console.capture() as capture:
                    self.console.print(status)
                lines.append(capture.get().rstrip())
        return "\n".join(lines)


def print_summary(view: LiveView, *, file: Any = None) -> None:
    """Print the final summary of a run."""
    print(view.summary(), file=file or sys.stdout, flush=True)


def run_live(
    source: from_karabo_bridge,
    status: Callable[[], Any] | None = None,
    *,
    trains: int | None = None,
    title: str = "kb-streams",
    console: Console | None = None,
    stop_timeout: float = 10.0,
) -> int:
    """Run a built graph: start the source, show live status, end cleanly; the exit code.

    Ends after ``trains`` trains (exactly: the source is stopped from inside the graph), when
    the source stops by itself, or on Ctrl-C/SIGTERM; then stops the source, waits for the
    trains in flight and prints the final summary.
    """
    emitted = 0

    def count(_: Any) -> None:
        nonlocal emitted
        emitted += 1
        if trains is not None and emitted >= trains:
            source.stop()

    counter = source.sink(count)
    view = LiveView(source, status, title=title, console=console)
    interrupted = False
    source.start()
    try:
        view.run(done=lambda: source.finished)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        source.stop()
        finished = source.join(stop_timeout)
        counter.destroy()
    if not finished:
        print(f"warning: trains still in the graph after {stop_timeout:g} s", file=sys.stderr)
    print(("interrupted; " if interrupted else "") + f"{emitted} trains processed", flush=True)
    print_summary(view)
    if emitted == 0 and not interrupted:
        print(f"error: no train received from {source.endpoint} ({source.sock})",
              file=sys.stderr)
        return 1
    return 0


def add_source_arguments(parser: argparse.ArgumentParser, *, pulses: int = 32) -> None:
    """``--endpoint``, ``--sock``, ``--trains`` ... and the embedded simulator's options.

    ``pulses`` is the default of ``--pulses``, the simulator's pulses per train.
    """
    bridge = parser.add_argument_group("bridge")
    bridge.add_argument(
        "--endpoint", "-e", default=None, metavar="EP",
        help="bridge endpoint to read, e.g. tcp://exflonc12:45000 "
             "(default: start a simulator on tcp://127.0.0.1:<free port>)")
    bridge.add_argument(
        "--sock", "-z", type=reader_socket, default="REQ", metavar="{REQ,SUB,PULL}",
        help="socket type matching the server's REP, PUB or PUSH (default: REQ); the "
             "embedded simulator serves the matching one")
    bridge.add_argument("--trains", "-n", type=positive_int, default=None, metavar="N",
                        help="stop after N trains and print a summary (default: until Ctrl-C)")
    bridge.add_argument("--timeout", type=positive_float, default=5.0, metavar="S",
                        help="seconds without a train before a REQ request is sent again "
                             "(default: 5)")
    bridge.add_argument("--max-in-flight", type=positive_int, default=None, metavar="N",
                        help="cap on trains anywhere in the graph at once (default: no cap)")
    sim = parser.add_argument_group("embedded simulator (without --endpoint)")
    sim.add_argument("--pulses", type=positive_int, default=pulses, metavar="N",
                     help=f"AGIPD pulses per train (default: {pulses})")
    sim.add_argument("--rate", type=non_negative_float, default=10.0, metavar="HZ",
                     help="trains per second, 0 = as fast as possible (default: 10)")


@contextlib.contextmanager
def open_source(args: argparse.Namespace):
    """The bridge source for ``args`` (with a simulator serving it, without ``--endpoint``).

    The source asks for the next train as soon as one arrives (``prefetch=2``), so transfer and
    analysis overlap.
    """
    from ..sources import from_karabo_bridge

    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint
        if endpoint is None:
            from ..demo import embedded_simulator

            server = stack.enter_context(embedded_simulator(
                pulses=args.pulses, rate=args.rate, sock=_SERVER_SOCKETS[args.sock]))
            endpoint = server.endpoint
            print(f"simulator: AGIPD-modules, {args.pulses} pulses, "
                  f"{args.rate:g} Hz, {server.sock} on {endpoint}", flush=True)
        yield from_karabo_bridge(endpoint, sock=args.sock, timeout=args.timeout, prefetch=2,
                                 max_in_flight=args.max_in_flight)
