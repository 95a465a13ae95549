"""The live view of a running graph, for ``kb-streams demo`` and ``kb-streams run``.

A rich panel on a terminal, plain lines when piped: the source's counters, the Dask cluster's
workers, the errors reported on the graph's ``.errors`` streams (the first of each kind in full,
then counted) and an optional ``status()`` callable of the pipeline, polled from the main thread
while the graph runs in its event-loop thread.

The view reads only the node interface (:class:`kb_streams.nodes.NodeInterface`): the source's
``stats`` (the counters its :meth:`~kb_streams.stats.NodeStats.shown` names), the records on the
``errors`` streams, ``finished`` and ``join()``; any source of ours shows the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..stats import RateWindow
from ._live_errors import ErrorDigest, error_streams  # noqa: F401  (run.py imports it here)
from ._output import format_bytes, format_seconds

if TYPE_CHECKING:
    from distributed import Client
    from streamz import Stream

#: Seconds without a train before the view says so, for a source without a ``timeout``.
STALL_AFTER = 10.0


def _text(value: Any, unit: str) -> str:
    if unit == "s":
        return format_seconds(value)
    if unit.startswith("B"):
        return format_bytes(value) + unit[1:]
    return str(value)


def source_label(source: Any) -> str:
    """What ``source`` reads, for people: ``tcp://host:port (SUB)``, or ``the run PATH``."""
    run = getattr(source, "run_label", None)
    return f"the run {run}" if run else f"{source.endpoint} ({source.sock})"


def _stalled_line(source: Any, seconds: float) -> str:
    stats = source.stats
    if getattr(source, "run_label", None):
        return f"no train from {source_label(source)} for {seconds:.0f} s"
    if hasattr(stats, "timeouts"):  # a bridge client in this process
        return (f"no train from {source_label(source)} for {seconds:.0f} s | "
                f"timeouts {stats.timeouts} | reconnects {stats.reconnects}")
    return (f"no result from the workers reading {source.endpoint} ({source.sock}) "
            f"for {seconds:.0f} s | received {getattr(stats, 'received', 0)}")


class ClusterInfo:
    """Address and workers of a Dask cluster, for the live view (asks the scheduler once a second).

    Parameters
    ----------
    client
        The connected :class:`distributed.Client`.
    local
        Whether the cluster was started by this command (a local cluster).
    """

    def __init__(self, client: Client, *, local: bool, refresh: float = 1.0) -> None:
        self.client = client
        self.local = local
        self.refresh = refresh
        self.address = str(client.scheduler.address)
        self._workers = self._threads = 0
        self._next = 0.0

    def _update(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.refresh
        try:
            nthreads = self.client.nthreads(callback_timeout=2)
        except Exception:  # the client is closing or the scheduler is gone: keep the last
            return
        self._workers, self._threads = len(nthreads), sum(nthreads.values())

    @property
    def workers(self) -> int:
        self._update()
        return self._workers

    @property
    def threads(self) -> int:
        self._update()
        return self._threads

    def worker_hosts(self) -> set[str]:
        """Hosts of the workers (as the scheduler knows them)."""
        from distributed.comm import get_address_host

        return {get_address_host(address)
                for address in self.client.nthreads(callback_timeout=10)}

    def line(self) -> str:
        """E.g. ``dask tcp://127.0.0.1:40123 (local cluster) | 2 workers, 2 threads``."""
        kind = "local cluster" if self.local else "scheduler"
        workers, threads = self.workers, self.threads
        return (f"dask {self.address} ({kind}) | {workers} worker{'s' * (workers != 1)}, "
                f"{threads} thread{'s' * (threads != 1)}")


# -- the view ---------------------------------------------------------------------------------

class LiveView:
    """Show a running source's counters and a pipeline's status until told to stop.

    Parameters
    ----------
    source
        The running source: any node with the node interface
        (:class:`~kb_streams.sources.from_karabo_bridge`,
        :class:`~kb_streams.dask.on_workers.from_karabo_bridge_on_workers`).
    status
        Optional callable returning the pipeline's status: a string or a rich renderable.
    title
        Shown above the counters.
    errors
        ``.errors`` streams whose records count as errors (the source's own, if it has one, is
        always counted).
    cluster
        The Dask cluster to show (address, workers).
    interval
        Seconds between refreshes on a terminal.
    plain_interval
        Seconds between printed lines when the output is not a terminal.
    console
        The rich console to write to (default: standard output).
    """

    def __init__(
        self,
        source: Any,
        status: Callable[[], Any] | None = None,
        *,
        title: str = "kb-streams",
        errors: Iterable[Stream] = (),
        cluster: ClusterInfo | None = None,
        interval: float = 0.25,
        plain_interval: float = 2.0,
        console: Console | None = None,
    ) -> None:
        self.source = source
        self.status = status
        self.title = title
        self.cluster = cluster
        self.interval = interval
        self.plain_interval = plain_interval
        self.console = console or Console()
        streams = list(errors)
        if all(source.errors is not s for s in streams):
            streams.insert(0, source.errors)
        self.errors = ErrorDigest(streams)
        self._rate = RateWindow()
        self.rate = 0.0
        self._trains = 0
        self._last_train_at = time.monotonic()
        self.stall_after = (getattr(source, "timeout", None)
                            or getattr(source, "receive_timeout", None) or STALL_AFTER)

    def close(self) -> None:
        """Stop counting errors (detaches from the ``.errors`` streams and the log)."""
        self.errors.close()

    def _update_rate(self) -> float:
        now, trains = time.monotonic(), self.source.stats.items
        if trains != self._trains:
            self._trains, self._last_train_at = trains, now
        self.rate = self._rate.update(trains, now)
        return self.rate

    def stalled(self) -> str | None:
        """``no train from EP (REQ) for 10 s | timeouts 2 | reconnects 2`` once no train has
        come for the source's timeout (while it runs), else None."""
        since = time.monotonic() - self._last_train_at
        if since < self.stall_after or self.source.finished:
            return None
        return _stalled_line(self.source, since)

    def print_new_errors(self, file: Any = None) -> None:
        """Print the first failure of each kind not printed yet, in full (with its traceback)."""
        for kind in self.errors.take_new():
            print(kind.full(), file=file or sys.stderr, flush=True)

    def cells(self) -> dict[str, str]:
        """The source's counters as ``{label: text}``: throughput, rate, then the others.

        ``errors`` counts the failures on the errors streams (the source's and the graph's).
        """
        cells = {}
        for label, name, value, unit in self.source.stats.shown():
            cells[label] = _text(self.errors.count if name == "failures" else value, unit)
            if len(cells) == 1:
                cells["per s"] = f"{self._update_rate():.1f}"
        return cells

    def counters(self) -> str:
        """The counters as one line."""
        line = " | ".join(f"{text}/s" if label == "per s" else f"{label} {text}"
                          for label, text in self.cells().items())
        if self.cluster is not None:
            line += f" | workers {self.cluster.workers}"
        return line

    def _extra_lines(self) -> list[str]:
        lines = []
        if self.cluster is not None:
            lines.append(self.cluster.line())
        stalled = self.stalled()
        if stalled is not None:
            lines.append(stalled)
        lines += [f"error: {line}" for line in self.errors.lines()]
        return lines

    def _pipeline_status(self) -> Any:
        if self.status is None:
            return None
        try:
            return self.status()
        except Exception as exc:  # a broken status callable must not end the run
            return f"(status unavailable: {type(exc).__name__}: {exc})"

    def _counter_table(self) -> Table:
        cells = self.cells()
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for name in cells:
            table.add_column(name, justify="right", header_style="dim", no_wrap=True)
        table.add_row(*cells.values(), style="bold")
        return table

    def _renderable(self) -> Any:
        parts: list[Any] = [self._counter_table()]
        parts += [Text(line, style="bold yellow" if line.startswith(("no ", "error")) else "dim")
                  for line in self._extra_lines()]
        status = self._pipeline_status()
        if status is not None:
            parts.append(Text(status) if isinstance(status, str) else status)
        return Panel(Group(*parts), title=self.title, title_align="left")

    def run(self, done: Callable[[], bool]) -> None:
        """Refresh until ``done()`` is true (KeyboardInterrupt passes through to the caller)."""
        self._update_rate()
        if self.console.is_terminal:
            with Live(self._renderable(), console=self.console, refresh_per_second=4,
                      transient=False) as live:
                while not done():
                    time.sleep(self.interval)
                    self.print_new_errors()
                    live.update(self._renderable())
                self.print_new_errors()
                live.update(self._renderable())
        else:
            next_line = time.monotonic() + self.plain_interval
            while not done():
                time.sleep(min(self.interval, self.plain_interval))
                self.print_new_errors()
                if time.monotonic() >= next_line:
                    next_line += self.plain_interval
                    print(self.counters(), flush=True)
                    stalled = self.stalled()
                    if stalled is not None:
                        print(stalled, flush=True)
            self.print_new_errors()

    def summary(self) -> str:
        """Final counters and pipeline status, as plain text."""
        lines = [self.counters(), *self._extra_lines()]
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

