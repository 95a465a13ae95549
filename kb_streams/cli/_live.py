"""Live status for ``kb-streams demo`` and ``kb-streams run``: rich on a terminal, lines when piped.

The view polls the source's counters (:class:`kb_streams.sources.SourceStats`) and an optional
``status()`` callable of the pipeline from the main thread, while the graph runs in its event-loop
thread; it never touches the data.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from ..sources import SourceStats, from_karabo_bridge

_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``fraction`` (0–1) of ``width`` characters, in eighths of a cell.

    Examples
    --------
    >>> bar(0.5, 4)
    '██  '
    >>> bar(1 / 16, 2)
    '▏ '
    """
    if not fraction == fraction:  # nan
        return " " * width
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_BLOCKS[part] if part else "")
    return text.ljust(width)


def curve_table(
    x: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
    count: Sequence[int],
    *,
    x_label: str = "x",
    y_label: str = "mean",
    width: int = 30,
) -> str:
    """A text table of a binned curve, one row per bin with a bar for the mean.

    Bins without data show a blank bar. Bars start at 0 (or at the lowest mean, if negative).

    Examples
    --------
    >>> print(curve_table([0.0, 1.0], [1.0, 2.0], [0.1, 0.2], [3, 4], x_label="delay", width=4))
         delay      n           mean ± std
         0.000      3     1.000 ± 0.100  ██
         1.000      4     2.000 ± 0.200  ████
    """
    finite = [m for m, n in zip(mean, count) if n and math.isfinite(m)]
    low = min(0.0, min(finite, default=0.0))
    high = max(finite, default=1.0)
    span = (high - low) or 1.0
    lines = [f"{x_label:>10} {'n':>6} {y_label + ' ± std':>20}"]
    for xi, m, s, n in zip(x, mean, std, count):
        value = f"{m:9.3f} ± {s:<7.3f}" if n else f"{'-':>9}   {'':7}"
        fraction = (m - low) / span if n else float("nan")
        lines.append(f"{xi:10.3f} {n:6d} {value}  {bar(fraction, width)}".rstrip())
    return "\n".join(lines)


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
    >>> print(status_line(SourceStats(trains=10, age_last=0.05, age_mean=0.04), rate=9.9))
    trains 10 | 9.9/s | age 0.050 s (mean 0.040) | gaps 0 | dropped 0 | errors 0 | in flight 0
    """
    age = "-" if math.isnan(stats.age_last) else f"{stats.age_last:.3f} s (mean {stats.age_mean:.3f})"
    errors = stats.errors + stats.decode_errors
    return (f"trains {stats.trains} | {rate:.1f}/s | age {age} | gaps {stats.gaps} | "
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

    def _renderable(self) -> Any:
        parts: list[Any] = [Text(self.counters(), style="bold")]
        status = self._pipeline_status()
        if status is not None:
            parts.append(Text(status) if isinstance(status, str) else status)
        return Panel(Group(*parts), title=self.title, title_align="left")

    def run(self, done: Callable[[], bool]) -> None:
        """Refresh until ``done()`` is true (KeyboardInterrupt passes through to the caller)."""
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
