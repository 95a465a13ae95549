"""Benchmark: what a streamz pipeline costs over a bare receive loop, and what labelling costs.

A simulated AGIPD-1M (16 module sources, corrected float32, ``--pulses`` pulses: 268 MB per train
at 64) is served by a :class:`kb_streams.server.BridgeServer` (REP) in its own process, as fast as
it is asked. Two cases read the same stream, one after the other, each from a fresh server:

``bare``
    ``kb_streams.Client.next()`` in a loop, nothing else: the ceiling.
``bare+work``
    The same loop doing the pipeline's work by hand (label, ROI sums, running statistics): what
    the pipeline costs beyond its work.
``pipeline``
    ``Stream.from_karabo_bridge(...)`` -> ``map``: the ROI of every module as one labelled
    ``(module, pulse, slow_scan, fast_scan)`` array (``train.stack_modules(roi=...)``: each
    module labelled, only the ROI copied), summed per module and pulse ->
    ``reduce_online(RunningStats())`` -> sink. ``--work by-module`` labels the 16 modules as
    views instead and reduces each (``train[source, key].xarray().isel(roi).sum(...)``).

Target: the pipeline reaches at least 0.9 x the bare loop's trains/s. On 2 cores the bridge
and the receive already fill the CPU, so the work itself (about 2 ms per train) shows; compare
with ``bare+work`` to see what the framework costs beyond it.

Then, without sockets: the time to label one train's 16 modules (``train[source,
key].xarray()``) with 1 and with 352 pulses. Labelling makes views, never copies, so the two must
be the same. The per-train work both ways: the stacked ROI above, and module by module
(``train[source, key].xarray().isel(roi).sum(...)`` 16 times). And the time to stack them
(``train.stack_modules()``, the one copy) at ``--pulses``, from the online layout
``(fast_scan, slow_scan, pulse)`` and the file layout ``(pulse, slow_scan, fast_scan)``: both
are a straight copy per module, so they must be close.

Run with ``kb-streams bench pipeline`` or ``python -m benchmarks.bench_pipeline``;
``--pulses 4 --trains 20`` makes a quick run.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import threading
import time
import timeit
from typing import Any

import numpy as np

from benchmarks import _harness as harness
from benchmarks.bench_dask import module_view

ROI = {"slow_scan": slice(200, 232), "fast_scan": slice(48, 80)}
KEY = "image.data"

# ---------------------------------------------------------------------------------------------
# the work


def label_modules(train: Any) -> list:
    """Every module source of the train as a labelled (pulse, slow_scan, fast_scan) view."""
    return [module_view(train, src, KEY) for src in train.sources if src.endswith(":xtdf")]


def roi_sums(train: Any) -> np.ndarray:
    """Per-module, per-pulse sums of a small ROI: (module, pulse), a few KB."""
    return train.stack_modules(KEY, roi=ROI).sum(("slow_scan", "fast_scan")).values


def roi_sums_by_module(train: Any) -> np.ndarray:
    """The same sums, module by module: 16 labelled views, 16 xarray reductions."""
    views = sorted(label_modules(train), key=lambda view: int(view.module))
    return np.stack([view.isel(ROI).sum(("slow_scan", "fast_scan")).values for view in views])


WORK = {"stacked": roi_sums, "by-module": roi_sums_by_module}


# ---------------------------------------------------------------------------------------------
# the two cases


class _Timer:
    """Wall time of ``trains`` trains after ``warmup``; ``done`` is set when complete."""

    def __init__(self, warmup: int, trains: int) -> None:
        self.warmup, self.trains = warmup, trains
        self.times: list[float] = []
        self.done = threading.Event()

    def tick(self, _: Any = None) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= self.warmup + self.trains + 1:
            self.done.set()

    @property
    def rate(self) -> float:
        return self.trains / (self.times[self.warmup + self.trains] - self.times[self.warmup])


def run_bare(endpoint: str, args: argparse.Namespace, work: bool = False) -> float:
    from kb_streams.client import Client
    from kb_streams.reduce import RunningStats
    from kb_streams.train import Train

    timer = _Timer(args.warmup, args.trains)
    stats = RunningStats()
    with Client(endpoint, timeout=args.timeout, prefetch=args.prefetch) as client:
        while not timer.done.is_set():
            message = client.next_message()
            if work:
                stats.update(WORK[args.work](Train.from_message(message)))
                stats.result()
            del message
            timer.tick()
    return timer.rate


def run_pipeline(endpoint: str, args: argparse.Namespace) -> tuple[float, dict]:
    from streamz import Stream

    import kb_streams.sources  # noqa: F401 - registers Stream.from_karabo_bridge
    from kb_streams.reduce import RunningStats

    timer = _Timer(args.warmup, args.trains)
    source = Stream.from_karabo_bridge(endpoint, timeout=args.timeout, prefetch=args.prefetch)
    stats = source.map(WORK[args.work]).reduce_online(RunningStats())
    stats.sink(timer.tick)
    source.start()
    try:
        if not timer.done.wait(args.timeout * (args.warmup + args.trains + 1)):
            raise TimeoutError(f"only {len(timer.times)} trains through the pipeline in time")
    finally:
        source.stop()
        source.join(timeout=30)
    return timer.rate, {"errors": source.stats.errors, "decode_errors": source.stats.decode_errors}


# ---------------------------------------------------------------------------------------------
# labelling cost, no sockets


def labelling_seconds(pulses: int, repeat: int) -> float:
    """Best time to label the 16 modules of one AGIPD train with ``pulses`` pulses."""
    from kb_streams.train import Train

    # one uninitialised (untouched, so not resident) module array shared by the 16 sources
    module = np.empty((128, 512, pulses), np.float32)
    data = {f"SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf": {
        KEY: module, "image.pulseId": np.arange(pulses, dtype=np.uint64)} for m in range(16)}
    train = Train(data, {src: {"timestamp.tid": 10_000} for src in data})
    views = label_modules(train)
    if not all(np.shares_memory(view.data, module) for view in views):
        raise AssertionError("labelling copied the data")
    return min(timeit.repeat(lambda: label_modules(train), number=10, repeat=repeat)) / 10


def work_seconds(pulses: int, repeat: int) -> dict[str, float]:
    """Best time of the per-train work on one simulated train: stacked ROI, and by module."""
    from kb_streams.simulate import simulate
    from kb_streams.train import Train

    train = Train(*next(simulate("AGIPD-modules", pulses=pulses, pool_size=1, extras=())))
    if not np.allclose(roi_sums(train), roi_sums_by_module(train), rtol=1e-5):
        raise AssertionError("the two ways of summing the ROI disagree")
    return {work.__name__: min(timeit.repeat(functools.partial(work, train), number=10,
                                             repeat=repeat)) / 10
            for work in (roi_sums, roi_sums_by_module)}


def stacking_seconds(pulses: int, layout: str, repeat: int) -> float:
    """Best time to stack the 16 modules of one AGIPD train (``layout``: online or file)."""
    from kb_streams.train import Train

    shape = (128, 512, pulses) if layout == "online" else (pulses, 512, 128)
    data = {f"SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf": {
        KEY: np.full(shape, m, np.float32), "image.pulseId": np.arange(pulses, dtype=np.uint64)}
        for m in range(16)}
    train = Train(data, {src: {"timestamp.tid": 10_000} for src in data})
    if train.stack_modules().dims != ("module", "pulse", "slow_scan", "fast_scan"):
        raise AssertionError("stacking gave the wrong dims")
    return min(timeit.repeat(train.stack_modules, number=3, repeat=repeat)) / 3


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kb-streams bench pipeline``."""
    harness.add_options(parser, pulses=(64, "pulses per train (64: 268 MB AGIPD-1M trains)"),
                        trains=(30, "trains timed per case and round"), rounds=5, warmup=3)
    parser.add_argument("--prefetch", type=int, default=2,
                        help="REQ prefetch (1: request on demand), for every case "
                             "(default %(default)s: the next train travels during the work)")
    parser.add_argument("--work", choices=sorted(WORK), default="stacked",
                        help="the per-train work of bare+work and pipeline: the ROI of all "
                             "modules stacked, then summed (default), or 16 labelled module "
                             "views, each reduced")
    parser.add_argument("--repeat", type=int, default=5,
                        help="repeats of the labelling timing (default %(default)s)")
    harness.add_options(parser, timeout=30.0)
    harness.add_json_option(parser, to_file=True)


def main(args: argparse.Namespace) -> int:
    """Run both cases and the labelling timing; print the results. Returns the exit status."""
    endpoint = harness.free_endpoint()
    mb = 16 * 512 * 128 * 4 * args.pulses / 1e6
    print(f"AGIPD-1M, {args.pulses} pulses ({mb:.0f} MB/train), REP in another process on "
          f"{endpoint}, {args.trains} trains per case and round, prefetch {args.prefetch}, "
          f"work {args.work}",
          flush=True)
    cases = ("bare", "bare+work", "pipeline")
    samples: dict[str, list[float]] = {case: [] for case in cases}
    extra: dict = {}
    # cases alternate within each round, so a slow spell of this shared machine hits them alike,
    # and each round starts with the next case, so no case always runs first
    for round_ in range(1, args.rounds + 1):
        shift = (round_ - 1) % len(cases)
        for case in cases[shift:] + cases[:shift]:
            server = harness.serve_agipd(endpoint, args.pulses)  # a fresh bridge per case
            try:
                if case == "pipeline":
                    rate, extra = run_pipeline(endpoint, args)
                else:
                    rate = run_bare(endpoint, args, work=case == "bare+work")
            finally:
                server.terminate()
                server.wait(30)
            samples[case].append(rate)
            print(f"  round {round_}/{args.rounds} {case:<9} {rate:8.2f} trains/s", flush=True)
    rates = {case: statistics.median(values) for case, values in samples.items()}
    for case in cases:
        print(f"  {case:<9} {rates[case]:8.2f} trains/s  {rates[case] * mb:8.0f} MB/s  "
              f"(median of {args.rounds})", flush=True)
    ratio = rates["pipeline"] / rates["bare"]
    verdict = "ok" if ratio >= 0.9 else "BELOW the 0.9 target"
    print(f"  pipeline / bare = {ratio:.2f} ({verdict}); pipeline / bare+work = "
          f"{rates['pipeline'] / rates['bare+work']:.2f}; pipeline errors: {extra}")

    label = {pulses: labelling_seconds(pulses, args.repeat) for pulses in (1, 352)}
    label_ratio = label[352] / label[1]
    print(f"labelling 16 modules: {label[1] * 1e3:.2f} ms at 1 pulse, {label[352] * 1e3:.2f} ms "
          f"at 352 pulses (x{label_ratio:.2f}; zero-copy views)")
    work = work_seconds(args.pulses, args.repeat)
    print(f"work per train at {args.pulses} pulses: {work['roi_sums'] * 1e3:.2f} ms as one "
          f"stacked ROI, {work['roi_sums_by_module'] * 1e3:.2f} ms module by module")
    stack = {layout: stacking_seconds(args.pulses, layout, args.repeat)
             for layout in ("online", "file")}
    print(f"stacking 16 modules x {args.pulses} pulses ({mb:.0f} MB): "
          f"{stack['online'] * 1e3:.1f} ms from the online layout, "
          f"{stack['file'] * 1e3:.1f} ms from the file layout "
          f"({mb / 1e3 / stack['online']:.1f} GB/s online)")
    harness.write_json(args.json, {"pulses": args.pulses, "trains": args.trains,
                                   "prefetch": args.prefetch, "work": args.work,
                                   "rates": rates, "samples": samples, "ratio": ratio,
                                   "labelling_seconds": {str(k): v for k, v in label.items()},
                                   "work_seconds": work, "stacking_seconds": stack})
    return 0


if __name__ == "__main__":
    harness.run_as_script(__doc__, add_arguments, main)
