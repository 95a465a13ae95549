"""Benchmark: what the train-ID join and ``to_hdf5`` cost a graph.

``join``
    3 inputs emit one small part per train each, arriving shuffled within a few trains, 1% of
    one input's parts lost, into ``a.join_trains(b, c)``; the same emits into three plain sinks
    are the baseline. Reported: the join's cost per train (node minus baseline, and the plain
    :class:`~kb_streams.join.TrainJoiner` alone), median over ``--rounds``. Target: < 1 ms.
``to_hdf5``
    Results of a 64-pulse vector and a 512 x 512 float32 image per train. *paced*: 10 trains/s
    for ``--seconds``, the graph's time per train with and without ``to_hdf5``; *busy*: a
    CPU-bound graph (``--work-ms`` of numpy per train) as fast as it goes, trains/s while 10
    results a second are saved over without saving. Target: < 5%.
``--memory``
    10,000 trains of 3 x 1 MB parts through the join, 5% of one input lost: median RSS over
    trains 1,000-2,000 and over the last 1,000 (flat: the join holds at most ``window`` trains).

Run with ``kb-streams bench join`` (``--quick`` for a short check).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import xarray as xr
from streamz import Stream

import kb_streams.join_stream  # noqa: F401  (registers join_trains)
import kb_streams.save  # noqa: F401  (registers to_hdf5)
from benchmarks._harness import run_as_script
from kb_streams.join import TrainJoiner


class Part:
    """A part of a train: what a join reads (``train_id``) and what it carries."""

    __slots__ = ("train_id", "data")

    def __init__(self, train_id: int, data: Any = None) -> None:
        self.train_id = train_id
        self.data = data


def arrivals(trains: int, inputs: int = 3, spread: int = 3, lose: float = 0.01,
             seed: int = 0) -> list[tuple[int, int]]:
    """``(input, train_id)`` in arrival order: each input up to ``spread`` trains late, in
    its own order (as a bridge delivers), interleaved with the others."""
    rng = random.Random(seed)
    parts = []
    for i in range(inputs):
        when = 0.0
        for tid in range(trains):
            when = max(when, tid + rng.uniform(0, spread))
            if not (i == inputs - 1 and rng.random() < lose):
                parts.append((when, i, tid))
    return [(i, tid) for _, i, tid in sorted(parts)]


def time_join(order: list[tuple[int, int]], trains: int, window: int) -> dict[str, float]:
    """Seconds per train: through the join node, into plain sinks, and the joiner alone."""
    items = [(i, Part(tid)) for i, tid in order]
    streams = [Stream() for _ in range(3)]
    node = streams[0].join_trains(*streams[1:], window=window)
    out: list = []
    node.sink(lambda x: out.append(x.train_id))
    started = time.perf_counter()
    for i, item in items:
        streams[i].emit(item)
    node.flush()
    joined = time.perf_counter() - started
    assert len(out) + node.stats.partial == trains
    plain = [Stream() for _ in range(3)]
    for stream in plain:
        stream.sink(lambda x: None)
    started = time.perf_counter()
    for i, item in items:
        plain[i].emit(item)
    baseline = time.perf_counter() - started
    joiner = TrainJoiner(["0", "1", "2"], window=window)
    names = ["0", "1", "2"]
    started = time.perf_counter()
    for i, item in items:
        joiner.add(names[i], item.train_id, item, 0.0)
    joiner.flush()
    core = time.perf_counter() - started
    return {"node": (joined - baseline) / trains, "core": core / trains}


def result(tid: int, vector: np.ndarray, image: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"energy": ("pulse", vector), "image": (("slow_scan", "fast_scan"), image)},
                      coords={"trainId": tid})


def time_paced(save: bool, seconds: float, directory: str) -> list[float]:
    """Graph seconds per train at 10 trains/s."""
    vector, image = np.ones(64, np.float32), np.ones((512, 512), np.float32)
    source = Stream()
    sink = source.to_hdf5(os.path.join(directory, "paced.h5")) if save \
        else source.sink(lambda x: None)
    took: list[float] = []
    start = time.monotonic()
    for tid in range(int(seconds * 10)):
        item = result(tid, vector, image)
        began = time.perf_counter()
        source.emit(item)
        took.append(time.perf_counter() - began)
        time.sleep(max(start + (tid + 1) / 10 - time.monotonic(), 0))
    if save:
        sink.stop()
        sink.join(30)
        assert sink.stats.written == len(took), sink.stats
        WRITE_SECONDS.append(sink.stats.write_seconds / sink.stats.written)
    return took


#: The writer thread's time per row of each paced run.
WRITE_SECONDS: list[float] = []


def time_busy(save: bool, seconds: float, reps: int, directory: str) -> float:
    """Trains/s of a CPU-bound graph (``reps`` numpy passes per train), saving or not."""
    vector = np.ones(64, np.float32)
    frame = _frame()

    def work(tid: int) -> xr.Dataset:
        image = frame
        for _ in range(reps):
            image = np.sqrt(image * image + 1e-3)
        return result(tid, vector, image)

    source = Stream()
    node = source.map(work)
    node.sink(lambda x: None)
    if save:  # 10 results per second to the file, as a 10 Hz beamline would
        due = [0.0]

        def every_100ms(x: Any) -> bool:
            now = time.monotonic()
            if now < due[0]:
                return False
            due[0] = max(due[0] + 0.1, now - 0.1)
            return True

        sink = node.filter(every_100ms).to_hdf5(os.path.join(directory, "busy.h5"))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        source.emit(count)
        count += 1
    rate = count / (time.perf_counter() - start)
    if save:
        sink.stop()
        sink.join(60)
    return rate


def _frame() -> np.ndarray:
    return np.random.default_rng(0).random((512, 512), dtype=np.float32)


def _ms_per_rep(frame: np.ndarray) -> float:
    started = time.perf_counter()
    for _ in range(5):
        np.sqrt(frame * frame + 1e-3)
    return (time.perf_counter() - started) / 5 * 1000


def memory(trains: int = 10_000, window: int = 10) -> tuple[float, float]:
    """Median RSS (MB) over the 2nd and over the last 1,000 of ``trains`` trains of 3 x 1 MB
    parts through the join (sampled every 50 trains)."""
    import psutil

    process = psutil.Process()
    streams = [Stream() for _ in range(3)]
    node = streams[0].join_trains(*streams[1:], window=window)
    node.sink(lambda x: None)
    rng = random.Random(1)
    early, late = [], []
    for tid in range(trains):
        for i, stream in enumerate(streams):
            if i == 2 and rng.random() < 0.05:
                continue
            stream.emit(Part(tid, np.ones(131_072)))
        if tid % 50 == 0 and (1000 <= tid < 2000 or tid >= trains - 1000):
            (early if tid < 2000 else late).append(process.memory_info().rss / 1e6)
    return statistics.median(early), statistics.median(late)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trains", type=int, default=5000, help="trains per join round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="per to_hdf5 run")
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--memory", action="store_true", help="the 10,000-train memory check")
    parser.add_argument("--quick", action="store_true", help="a short check")


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.trains, args.rounds, args.seconds = 1000, 2, 2.0
    order = arrivals(args.trains)
    rounds = [time_join(order, args.trains, args.window) for _ in range(args.rounds)]
    node = statistics.median(r["node"] for r in rounds) * 1e3
    core = statistics.median(r["core"] for r in rounds) * 1e3
    print(f"join, 3 inputs, window {args.window}: {node:.3f} ms/train through the node "
          f"(over plain sinks), {core:.3f} ms/train in TrainJoiner alone "
          f"(median of {args.rounds} x {args.trains} trains; target < 1 ms)")
    reps = max(1, round(args.work_ms / _ms_per_rep(_frame())))
    with tempfile.TemporaryDirectory() as directory:
        paced = {save: [] for save in (False, True)}
        busy = {save: [] for save in (False, True)}
        for _ in range(3):  # interleaved, so drifts hit both alike
            for save in (False, True):
                paced[save] += time_paced(save, args.seconds, directory)
                busy[save].append(time_busy(save, args.seconds, reps, directory))
    without, with_ = (statistics.median(paced[s]) * 1e3 for s in (False, True))
    print(f"to_hdf5 at 10 trains/s (64-pulse vector + 512x512 float32 image): graph time "
          f"{with_:.3f} ms/train with, {without:.3f} ms/train without: "
          f"{(with_ - without) / 100 * 100:.2f}% of the 100 ms per train (target < 5%); the "
          f"writer thread {statistics.median(WRITE_SECONDS) * 1e3:.2f} ms/train")
    rate_without, rate_with = (statistics.median(busy[s]) for s in (False, True))
    print(f"to_hdf5, CPU-bound graph ({args.work_ms:g} ms/train), 10 results/s saved: "
          f"{rate_with:.1f} trains/s with, {rate_without:.1f} without: "
          f"{(1 - rate_with / rate_without) * 100:.1f}% slower")
    if args.memory:
        first, last = memory()
        print(f"join memory, 10,000 trains of 3 x 1 MB: median RSS {first:.0f} MB over trains "
              f"1,000-2,000, {last:.0f} MB over the last 1,000 ({last - first:+.0f} MB)")
    return 0


if __name__ == "__main__":
    run_as_script(__doc__, add_arguments, main)
