"""Benchmark: scale out over K bridges and W Dask workers, each bridge serving a module shard.

As the facility splits a large detector over several bridges, ``K`` bridge processes each serve
``16 / K`` of the AGIPD-1M modules (a :class:`kb_streams.server.BridgeServer` on a simulator,
REP, as fast as asked). ``W`` Dask workers receive them with
``Stream.from_karabo_bridge_on_workers`` and one :class:`~kb_streams.worker_receive.Shard` per
bridge (receivers spread over the workers); each shard is reduced where it lands (per-module,
per-pulse means plus ``--cost-ms`` of CPU per train split over the shards) and the source joins
the partial results of each train by train ID. No process sees every train's bytes: each bridge
sends ``1/K`` of a train, each receiver takes ``1/K``, the graph's process gets the small results.

For each ``K x W`` of the grid it prints trains/s (complete, joined trains), GB/s, CPU per train
and per stage (bridges, workers, graph), the cores busy per stage, bytes crossing processes per
train, and what bounds the result:

``cores full``
    every core of the machine is busy (ours: the stage using most is named; or other processes,
    on a shared machine);
``<stage> CPU``
    one process of that stage keeps a core busy while the machine has cores to spare: more
    shards or workers would help;
``not CPU``
    no core is full: the loopback or memory bandwidth (the copy rate measured at start is
    printed for comparison), or waiting (latency).

Then, on the largest grid cell, it doubles the pulses per train from ``--pulses`` until 10 Hz
is no longer held, and reports the largest that held.

The grid follows the machine: ``K`` and ``W`` are powers of two up to ``os.cpu_count()`` (and
``K`` one step beyond, to show where adding shards stops paying), ``W <= K <= 16`` (one receiver
per shard: a worker beyond the shards would idle). ``--shards`` and
``--workers`` set it, e.g. on a 64-core node ``--shards 4 8 16 --workers 4 8 16 --pulses 64``.

Run with ``kb-streams bench scale`` (or ``python -m benchmarks.bench_scale``);
``--shards 1 2 --workers 1 --trains 10 --no-10hz`` makes a quick check.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import psutil

if __package__ in (None, ""):  # run as a script: import the benchmarks package from the tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._harness import (
    add_json_option,
    add_options,
    free_endpoint,
    run_as_script,
    write_json,
)
from benchmarks.bench_dask import REDUCE, _Timer, _wait

MODULES = 16
MODULE_BYTES_PER_PULSE = 512 * 128 * 4  # corrected float32, no gain arrays
TEN_HZ = 10.0
FULL = 0.85  # a process (or the machine) counts as CPU-bound at this share of its cores

SERVE = """
import sys
from kb_streams.server import BridgeServer
from kb_streams.simulate import simulate
endpoint, pulses, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mine = [f"SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf" for m in range(first, last)]
trains = simulate("AGIPD-modules", pulses=pulses, pool_size=1, extras=(), gain=False)
with BridgeServer(endpoint, sock="REP") as server:
    server.serve(({s: data[s] for s in mine}, {s: meta[s] for s in mine}) for data, meta in trains)
"""


class _MachineTimer(_Timer):
    """Also counts the CPU time of the whole machine (role ``machine``), other processes too."""

    def _cpu_now(self) -> dict[str, float]:
        now = super()._cpu_now()
        times = psutil.cpu_times()
        now["machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return now


def _serve_shards(k: int, pulses: int) -> tuple[list[subprocess.Popen], list[Any]]:
    """``k`` bridge processes, each serving its consecutive share of the modules."""
    from kb_streams.worker_receive import Shard

    groups = np.array_split(np.arange(MODULES), k)
    processes, shards = [], []
    for group in groups:
        endpoint = free_endpoint()
        processes.append(subprocess.Popen([sys.executable, "-c", SERVE, endpoint, str(pulses),
                                           str(group[0]), str(group[-1] + 1)]))
        shards.append(Shard(endpoint, name=f"modules {group[0]}-{group[-1]}", sock="REQ"))
    return processes, shards


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@dataclass
class Cell:
    shards: int
    workers: int
    pulses: int
    trains: int
    seconds: float
    train_bytes: float
    cluster_bytes: float  # per train, between the graph's process and the workers
    incomplete: int  # trains dropped for a missing shard
    cpu: dict[str, float]  # CPU seconds per train, per process ("bridge0", "worker1", "graph")

    @property
    def rate(self) -> float:
        return self.trains / self.seconds

    def busy(self, stage: str) -> list[float]:
        """Cores kept busy by each process of ``stage`` (CPU seconds per second)."""
        return [cpu * self.rate for name, cpu in self.cpu.items() if name.startswith(stage)]

    def bound(self, cores: int, copy_gbs: float) -> str:
        stages = {stage: self.busy(stage) for stage in ("bridge", "worker", "graph")}
        total = sum(sum(v) for v in stages.values())
        top = max(stages, key=lambda s: sum(stages[s]))
        machine = sum(self.busy("machine"))
        if total >= FULL * cores:
            return f"cores full ({total:.1f} of {cores}; most: {top}s)"
        if machine >= FULL * cores:
            return (f"cores full ({machine:.1f} of {cores}, {machine - total:.1f} by other "
                    f"processes; ours most: {top}s)")
        hot = [(max(v), s) for s, v in stages.items() if v and max(v) >= FULL]
        if hot:
            return f"{max(hot)[1]} CPU (one process at {max(hot)[0]:.2f} cores)"
        gbs = self.rate * self.train_bytes / 1e9
        return (f"not CPU ({total:.1f} of {cores} cores busy; {gbs:.1f} GB/s against "
                f"{copy_gbs:.1f} GB/s memory copy)")


def copy_bandwidth(nbytes: int = 256 << 20, rounds: int = 3) -> float:
    """GB/s of one process copying ``nbytes`` of memory (best of ``rounds``)."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def run_cell(client: Any, k: int, w: int, pulses: int, args: argparse.Namespace) -> Cell:
    """``k`` bridges, the client's ``w`` workers: time ``args.trains`` joined trains."""
    from streamz import Stream

    import kb_streams.worker_receive  # noqa: F401 - registers the source

    bridges, shards = _serve_shards(k, pulses)
    try:
        workers = sorted(client.run(os.getpid).values())
        pids = {"graph": [os.getpid()],
                **{f"bridge{i}": [p.pid] for i, p in enumerate(bridges)},
                **{f"worker{i}": [pid] for i, pid in enumerate(workers)}}
        timer = _MachineTimer(args.warmup, args.trains, pids)
        source = Stream.from_karabo_bridge_on_workers(
            shards, REDUCE, client, args=(args.cost_ms / k,), timeout=args.timeout,
            receive_timeout=args.timeout, wait=args.timeout, max_buffered=4096)
        source.sink(timer)
        source.start()
        try:
            _wait(timer, args.timeout * (args.warmup + args.trains + 1))
        finally:
            source.stop()
            source.finished.wait(60)
    finally:
        _stop(bridges)
    stats = source.stats
    received = max(stats.received, 1)
    return Cell(k, w, pulses, args.trains, timer.seconds,
                train_bytes=stats.bytes_received / received * k,
                cluster_bytes=(stats.bytes_tasks + stats.bytes_results) / received * k,
                incomplete=stats.incomplete, cpu=timer.cpu_by_role)


def _connect(w: int, worker_env: bool) -> Any:
    from kb_streams._malloc import LARGE_MESSAGE_ENV
    from kb_streams.cluster import connect

    extra = {"env": dict(LARGE_MESSAGE_ENV)} if worker_env else {}
    client = connect(n_workers=w, threads_per_worker=1, set_as_default=False, **extra)
    client.wait_for_workers(w, timeout=120)
    return client


def _powers(limit: int) -> list[int]:
    return [2 ** i for i in range(int(math.log2(max(limit, 1))) + 1)]


def default_grid(cores: int) -> tuple[list[int], list[int]]:
    """Shard and worker counts for a machine with ``cores`` cores."""
    return _powers(min(2 * cores, MODULES)), _powers(min(cores, MODULES))


def _line(c: Cell, cores: int, copy_gbs: float) -> str:
    cpu = {stage: 1e3 * sum(v for n, v in c.cpu.items() if n.startswith(stage))
           for stage in ("bridge", "worker", "graph")}
    busy = {stage: sum(c.busy(stage)) for stage in cpu}
    return (f"{c.shards:>2} x {c.workers:<2} {c.pulses:>6} {c.rate:>8.2f} "
            f"{c.rate * c.train_bytes / 1e9:>6.2f} {c.train_bytes / c.shards / 1e6:>9.1f} "
            f"{c.cluster_bytes / 1e3:>9.1f} {c.incomplete:>5} | "
            f"{cpu['bridge']:>6.0f} {cpu['worker']:>6.0f} {cpu['graph']:>6.0f} | "
            f"{busy['bridge']:>4.1f} {busy['worker']:>4.1f} {busy['graph']:>4.1f} | "
            f"{c.bound(cores, copy_gbs)}")


HEADER = (f"{'K x W':<7} {'pulses':>6} {'trains/s':>8} {'GB/s':>6} {'MB/shard':>9} "
          f"{'graph kB':>9} {'incmp':>5} | CPU ms/train: bridges workers graph | cores busy: "
          f"b w g | bound")


def find_10hz(client: Any, k: int, w: int, args: argparse.Namespace, cores: int,
              copy_gbs: float) -> tuple[int | None, list[Cell]]:
    """Double the pulses from ``args.pulses`` until 10 Hz fails; the largest that held."""
    held, cells, pulses = None, [], args.pulses
    while pulses <= args.max_pulses:
        cell = run_cell(client, k, w, pulses, args)
        cells.append(cell)
        print(_line(cell, cores, copy_gbs), flush=True)
        if cell.rate < TEN_HZ:
            break
        held, pulses = pulses, 2 * pulses
    return held, cells


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kb-streams bench scale``."""
    parser.add_argument("--shards", type=int, nargs="+", default=None, metavar="K",
                        help="bridge processes (module shards) to try (default: powers of two up "
                             "to 2 x the cores, at most 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, metavar="W",
                        help="Dask workers to try, each with the K >= W (default: powers of "
                             "two up to the cores, at most 16)")
    add_options(parser, pulses=(4, "pulses per train for the grid (4: 16.8 MB trains); the "
                                   "10 Hz search starts here"))
    parser.add_argument("--max-pulses", type=int, default=352,
                        help="largest pulses the 10 Hz search tries (default %(default)s)")
    parser.add_argument("--no-10hz", dest="search", action="store_false",
                        help="skip the search for the largest train held at 10 Hz")
    add_options(parser, trains=(30, "joined trains timed per cell"), warmup=5)
    parser.add_argument("--cost-ms", type=float, default=0.0,
                        help="extra CPU per train, split over the shards (default 0: the "
                             "per-module means only)")
    add_options(parser, timeout=30.0)
    parser.add_argument("--no-worker-env", dest="worker_env", action="store_false",
                        help="start the workers without kb_streams._malloc.LARGE_MESSAGE_ENV")
    add_json_option(parser, to_file=True)


def main(args: argparse.Namespace) -> int:
    """Run the grid and the 10 Hz search; print a table (and write JSON)."""
    cores = os.cpu_count() or 1
    shards, workers = default_grid(cores)
    shards, workers = sorted(args.shards or shards), sorted(args.workers or workers)
    if not all(1 <= k <= MODULES for k in shards) or min(workers) < 1:
        print(f"need 1 to {MODULES} shards and at least 1 worker", file=sys.stderr)
        return 2
    copy_gbs = copy_bandwidth()
    mb = MODULES * MODULE_BYTES_PER_PULSE * args.pulses / 1e6
    print(f"{cores} cores; memory copy {copy_gbs:.1f} GB/s; AGIPD-1M {args.pulses} pulses "
          f"({mb:.1f} MB/train), extra CPU {args.cost_ms:g} ms/train; shards {shards}, "
          f"workers {workers}\n\n{HEADER}", flush=True)
    cells: list[Cell] = []
    search: list[Cell] = []
    held = None
    for w in workers:
        ks = [k for k in shards if k >= w]
        if not ks:
            continue
        client = _connect(w, args.worker_env)
        try:
            for k in ks:
                cells.append(run_cell(client, k, w, args.pulses, args))
                print(_line(cells[-1], cores, copy_gbs), flush=True)
            if args.search and w == workers[-1]:
                best = max((c for c in cells if c.workers == w), key=lambda c: c.rate)
                print(f"\nlargest train at 10 Hz, {best.shards} x {w}:", flush=True)
                held, search = find_10hz(client, best.shards, w, args, cores, copy_gbs)
        finally:
            client.close()
    if args.search:
        print(f"10 Hz held up to {held} pulses per train" if held else
              f"10 Hz not held even at {args.pulses} pulses per train")
    write_json(args.json, {"cores": cores, "copy_gbs": copy_gbs, "pulses": args.pulses,
                           "cost_ms": args.cost_ms, "ten_hz_pulses": held,
                           "cells": [{**asdict(c), "rate": c.rate,
                                      "bound": c.bound(cores, copy_gbs)} for c in cells],
                           "search": [{**asdict(c), "rate": c.rate} for c in search]})
    return 0


if __name__ == "__main__":
    run_as_script(__doc__, add_arguments, main)
