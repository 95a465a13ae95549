"""``kb-streams monitor``: live throughput, train-ID gaps, data age and decode errors of a stream.

It never reads array data (sizes come from the message parts), so it keeps up with a detector
stream at full rate.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import Any

from ..errors import ProtocolError
from ..stats import StreamStats
from ..train import Train
from ._output import (
    EXIT_OK,
    add_reader_command,
    fail,
    format_bytes,
    format_seconds,
    handle_termination,
    is_terminal,
    label_grid,
    open_reader,
    positive_float,
    positive_int,
)

COMMAND = "monitor"

HELP = "live trains/s, MB/s, gaps, age and decode errors of a stream"
DESCRIPTION = ("Receive trains from a Karabo bridge endpoint and report throughput, "
              "train-ID gaps, data age and decode errors as they arrive.")

EPILOG = """\
examples:
  kb-streams monitor tcp://127.0.0.1:45000                  # until Ctrl-C
  kb-streams monitor tcp://127.0.0.1:45000 --trains 100     # 100 trains, then a summary line
  kb-streams monitor tcp://127.0.0.1:45000 --sock SUB --interval 5 | tee rates.log

Shows trains/s, MB/s, train-ID gaps (and how many trains they skipped), data age (now - train
timestamp) and decode errors; a live view on a terminal, one line per --interval when piped.
Ends after --trains trains (or Ctrl-C) with a summary line; exits with 1 if no train arrives
within --timeout seconds.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_reader_command(subparsers, COMMAND, run, help=HELP, description=DESCRIPTION,
                                epilog=EPILOG)
    parser.add_argument("--trains", "-n", type=positive_int, default=None, metavar="N",
                        help="stop after N trains (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=positive_float, default=1.0, metavar="S",
                        help="seconds between status updates (default: 1)")
    parser.add_argument("--latest", action="store_true",
                        help="keep only the newest waiting train (older ones count as dropped); "
                             "by default every train is received and counted")
    return parser


class Ages:
    """Data age (now - train timestamp) of the trains received: last, mean and max.

    Examples
    --------
    >>> ages = Ages()
    >>> for age in (0.010, 0.030, None):
    ...     ages.add(age)
    >>> ages.last, round(ages.mean, 3), ages.max
    (0.03, 0.02, 0.03)
    """

    def __init__(self) -> None:
        self.last: float | None = None
        self.max: float | None = None
        self._sum = 0.0
        self._count = 0

    def add(self, age: float | None) -> None:
        if age is None:
            return
        self.last = age
        self.max = age if self.max is None else max(self.max, age)
        self._sum += age
        self._count += 1

    @property
    def mean(self) -> float | None:
        return self._sum / self._count if self._count else None


def _gaps_text(stats: dict[str, Any]) -> str:
    text = f"{stats['gap_events']} gaps ({stats['gaps']} trains missing)"
    return text + (f", {stats['dropped']} dropped" if stats["dropped"] else "")


def interval_line(now: dict[str, Any], before: dict[str, Any], elapsed: float,
                  ages: Ages) -> str:
    """One status line: rates since the previous line, totals so far."""
    trains = now["trains"] - before["trains"]
    nbytes = now["bytes"] - before["bytes"]
    return (f"{trains / elapsed:6.2f} trains/s  {format_bytes(nbytes / elapsed)}/s  "
            f"trains {now['trains']}  {_gaps_text(now)}  age {format_seconds(ages.last)}  "
            f"decode errors {now['decode_errors']}  last train {now['last_train_id']}")


def summary_line(stats: dict[str, Any], elapsed: float, ages: Ages) -> str:
    """The final one-line summary (rates measured from the first train to the last)."""
    rate = stats["train_rate"] if stats["trains"] > 1 else 0.0
    byte_rate = stats["byte_rate"] if stats["trains"] > 1 else 0.0
    return (f"{stats['trains']} trains ({format_bytes(stats['bytes'])}) in {elapsed:.2f} s: "
            f"{rate:.2f} trains/s, {format_bytes(byte_rate)}/s; {_gaps_text(stats)}; "
            f"age mean {format_seconds(ages.mean)}, max {format_seconds(ages.max)}; "
            f"{stats['decode_errors']} decode errors; "
            f"protocol {stats['protocol_version'] or 'n/a'}")


class _LiveView:
    """What the rich Live display renders; recomputed on each refresh from the counters only."""

    def __init__(self, stats: StreamStats, ages: Ages, args: argparse.Namespace) -> None:
        self.stats = stats
        self.ages = ages
        self.args = args
        self.history: deque = deque(maxlen=256)  # (monotonic time, trains, bytes) per refresh

    def _rates(self, now: dict[str, Any]) -> tuple[float, float]:
        t = time.monotonic()
        self.history.append((t, now["trains"], now["bytes"]))
        while len(self.history) > 2 and self.history[1][0] <= t - self.args.interval:
            self.history.popleft()
        t0, trains0, bytes0 = self.history[0]
        if t <= t0:
            return 0.0, 0.0
        return (now["trains"] - trains0) / (t - t0), (now["bytes"] - bytes0) / (t - t0)

    def __rich__(self) -> Any:
        s = self.stats.as_dict()
        rate, byte_rate = self._rates(s)
        target = f" / {self.args.trains}" if self.args.trains else ""
        errors = s["decode_errors"]
        rows = [
            ("endpoint", f"{self.args.endpoint} ({self.args.sock})"),
            ("rate", f"{rate:.2f} trains/s   {format_bytes(byte_rate)}/s"),
            ("trains", f"{s['trains']}{target}   ({format_bytes(s['bytes'])} in all)"),
            ("last train", str(s["last_train_id"])),
            ("gaps", _gaps_text(s)),
            ("age", f"{format_seconds(self.ages.last)}   (mean {format_seconds(self.ages.mean)}, "
                    f"max {format_seconds(self.ages.max)})"),
            ("decode errors", f"[red]{errors}[/]" if errors else "0"),
            ("protocol", s["protocol_version"] or "n/a"),
        ]
        return label_grid(rows)


def run(args: argparse.Namespace) -> int:
    handle_termination()
    client = open_reader(args)

    terminal = is_terminal()
    stats: StreamStats = client.stats
    ages = Ages()
    live = None
    if terminal:
        from rich.live import Live

        live = Live(_LiveView(stats, ages, args), refresh_per_second=4)
        live.start()
    started = time.monotonic()
    error = None
    before, last_line = stats.as_dict(), started
    try:
        while args.trains is None or stats.trains < args.trains:
            try:
                message = client.next_message(latest=args.latest)
            except TimeoutError:
                error = (f"no train from {args.endpoint} ({args.sock}) within "
                         f"{args.timeout:g} s")
                break
            except ProtocolError:
                continue  # counted in stats.decode_errors by the client
            ages.add(Train.from_message(message).age)  # metadata only, wherever it was put
            del message  # release the frames before waiting for the next train
            now = time.monotonic()
            if not terminal and now - last_line >= args.interval:
                current = stats.as_dict()
                print(interval_line(current, before, now - last_line, ages), flush=True)
                before, last_line = current, now
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        if live is not None:
            live.stop()
    print(summary_line(stats.as_dict(), time.monotonic() - started, ages), flush=True)
    if error is not None:
        return fail(COMMAND, error)
    return EXIT_OK
