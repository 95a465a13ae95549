"""Benchmark: how old is the train a slow consumer gets with keep-newest (``latest=True``)?

A publisher process (our :class:`~kb_streams.server.BridgeServer`, PUB, started with ``spawn``)
sends trains of ``--mb`` MB at ``--rate`` Hz, each stamped with the time it is handed to ZeroMQ.
A consumer (``Client(sock='SUB').next(latest=True)`` in this process) sleeps ``--work`` seconds
after each train, as a slow analysis would, and records the train's age when it gets it
(``time.time()`` minus the train's timestamp: one host, one clock).

Goal (issue 9, item 3): the train a slow consumer gets is never more than one train period plus
its own transfer time old, and trains skipped on purpose are counted in ``stats.dropped``, not
as gaps. The transfer time is measured here too: the median age a consumer doing no work sees
at 2 Hz at most (so that nothing queues); and ``fast``, the median age of a consumer doing no
work at ``--rate``: when the sender offers more than the link carries, trains wait in its queue
and are dropped there (``gaps``), and no consumer gets them younger than that.

Run with ``kb-streams bench latest`` or ``python -m benchmarks.bench_latest``, e.g.::

    python -m benchmarks.bench_latest --mb 1 50 --seconds 6
    python -m benchmarks.bench_latest --mb 500 --rate 2 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from typing import Any

from benchmarks._harness import add_json_option, add_options, print_results, run_as_script

SOURCE = "BENCH/DET/0"


def _publish(endpoint_queue: Any, stop: Any, nbytes: int, rate: float) -> None:
    import numpy as np

    from kb_streams.server import BridgeServer

    image = np.ones(nbytes, dtype=np.uint8)  # sent zero-copy, again and again, never modified

    def trains():
        tid = 10_000
        while not stop.is_set():
            now = time.time()
            yield ({SOURCE: {"image.data": image}},
                   {SOURCE: {"timestamp": now, "timestamp.tid": tid,
                             "timestamp.sec": str(int(now)),
                             "timestamp.frac": f"{int((now % 1) * 1e18):018d}"}})
            tid += 1

    with BridgeServer(sock="PUB") as server:
        endpoint_queue.put(server.endpoint)
        server.serve(trains(), rate=rate)


def measure(mb: float, rate: float, work: float, seconds: float) -> dict[str, Any]:
    """Age of the trains a consumer doing ``work`` s per train gets over ``seconds`` s."""
    from kb_streams.client import Client

    ctx = multiprocessing.get_context("spawn")
    endpoints, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_publish, args=(endpoints, stop, int(mb * 1e6), rate),
                         daemon=True)
    server.start()
    ages: list[float] = []
    try:
        endpoint = endpoints.get(timeout=60)
        with Client(endpoint, sock="SUB", timeout=30) as client:
            client.next(latest=True)  # connected and subscribed
            client.stats.dropped = client.stats.gaps = 0
            end = time.monotonic() + seconds
            first = client.stats.last_train_id
            while time.monotonic() < end:
                data, meta = client.next(latest=True)
                ages.append(time.time() - meta[SOURCE]["timestamp"])
                del data, meta
                if work:
                    time.sleep(work)
            stats = client.stats
            span = stats.last_train_id - first
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    steady = ages[1:] or ages
    return {
        "mb": mb, "rate": rate, "work": work, "trains": len(ages),
        "age_median": statistics.median(steady), "age_max": max(steady),
        "dropped": stats.dropped, "gaps": stats.gaps, "train_ids_spanned": span,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mb", type=float, nargs="+", default=[1.0, 50.0],
                        help="train sizes in MB (default 1 50)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="publisher rate in Hz (default 10)")
    parser.add_argument("--work", type=float, default=0.5,
                        help="seconds the slow consumer spends per train (default 0.5)")
    add_options(parser, seconds=(6.0, "seconds measured per size"))
    add_json_option(parser, to_file=False)


def main(args: argparse.Namespace) -> int:
    rows = []
    for mb in args.mb:
        # the transfer time: a fast consumer's age, at a rate low enough that nothing queues
        brief = min(args.seconds, 3.0)
        transfer = measure(mb, min(args.rate, 2.0), 0.0, brief)["age_median"]
        # a consumer that keeps up: the best age this sender and link allow at this rate
        fast = measure(mb, args.rate, 0.0, brief)["age_median"]
        slow = measure(mb, args.rate, args.work, args.seconds)
        slow.update(transfer=transfer, fast=fast, goal=1 / args.rate + transfer)
        rows.append(slow)
    return print_results(rows, args.json, format_table)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A header, then one line per train size."""
    lines = [f"{'MB':>7} {'Hz':>5} {'work s':>6} {'trains':>6} {'age median':>10} {'age max':>8} "
             f"{'goal':>6} {'transfer':>8} {'fast':>6} {'dropped':>7} {'gaps':>5}"]
    for r in rows:
        lines.append(f"{r['mb']:7.0f} {r['rate']:5.1f} {r['work']:6.2f} {r['trains']:6d} "
                     f"{r['age_median']:10.3f} {r['age_max']:8.3f} {r['goal']:6.3f} "
                     f"{r['transfer']:8.3f} {r['fast']:6.3f} {r['dropped']:7d} {r['gaps']:5d}")
    return "\n".join(lines)


if __name__ == "__main__":
    run_as_script(__doc__, add_arguments, main)
