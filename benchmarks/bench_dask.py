"""Benchmark: AGIPD-1M trains reduced in one process, offloaded to Dask, or received on the workers.

A simulated AGIPD-1M (16 module sources, corrected float32, ``--pulses`` pulses: 268 MB per train
at 64 pulses) is served by a :class:`kb_streams.server.BridgeServer` in its own process, as fast as
it is asked (REP) or can send (PUSH). Every train goes through the same reduction: per-module,
per-pulse means of the detector (a real pass over every pixel), topped up with CPU work to
``--cost-ms`` of CPU time per train, like a correction plus reduction would cost. The result is a
``(module, pulse)`` DataArray of a few KB. Cases:

``single``
    One process: ``kb_streams.Client`` (REQ prefetching 2, or PULL) and the reduction in a loop.
``offload``
    ``Stream.from_karabo_bridge(...).offload(reduce, n=2 x workers)``: trains are received by the
    graph's process and scattered (direct) to the workers.
``workers``
    ``Stream.from_karabo_bridge_on_workers(...)``: each worker receives its own trains and returns
    only the result.

Run with ``kb-streams bench dask`` or ``python -m benchmarks.bench_dask``; ``--pulses 4 --trains 6
--cost-ms 20`` makes a quick run. Reported per case: trains/s over ``--trains`` trains after
``--warmup`` trains, and bytes per train that crossed process boundaries: from the bridge, and
between the graph's process and the workers (scattered trains, task messages, results), the latter
also as a fraction of the train size.

``--soak N`` instead runs one long ``offload`` case (default 1 pulse: 5 MB trains, 2 workers,
``n=4``) and checks that memory stays flat: every ``--sample-every`` trains it samples the RSS of
the graph's process, of each worker, of the bridge (and, with ``--scheduler-process``, of the
scheduler, otherwise part of the graph's process as with :func:`kb_streams.cluster.connect`), and
counts what is alive: the client's futures, the scheduler's tasks and the keys the workers hold.
It prints the series, the RSS growth between the first and the last 10 % of the run and the slope
over its second half. Dask keeps bounded histories (``distributed.admin.low-level-log-length``:
1000 entries per log and event topic), which fill during the first few thousand tasks;
``--dask-history 100`` caps them sooner, to tell them from a leak. ``--profile`` turns on Dask's
worker profiler (off in :func:`kb_streams.cluster.connect`), whose history of 1000 one-second
profiles grows each busy worker for 17 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cloudpickle
import numpy as np
import psutil
import xarray as xr

from benchmarks import _harness as harness

MODES = ("single", "offload", "workers")


# ---------------------------------------------------------------------------------------------
# the work


def module_view(train: Any, source: str, key: str = "image.data") -> xr.DataArray:
    """One module's data as a zero-copy view labelled ``(pulse, slow_scan, fast_scan)``."""
    from kb_streams import label_array

    data = train.data[source]
    return label_array(data[key], source=source, key=key, source_data=data,
                       train_id=train.train_id)


def reduce_train(train: Any, cost_ms: float) -> xr.DataArray:
    """Per-module, per-pulse mean of the detector, then CPU work up to ``cost_ms`` of CPU time."""
    start = time.thread_time()
    sources = sorted(src for src in train.sources if src.endswith(":xtdf"))
    means = [module_view(train, src).mean(("slow_scan", "fast_scan"), skipna=False)
             for src in sources]
    result = xr.concat(means, "module").assign_coords(trainId=train.train_id)
    result.attrs["cpu_ms"] = (time.thread_time() - start) * 1e3
    while time.thread_time() - start < cost_ms / 1e3:
        sum(range(2_000))  # stands for the rest of a correction pipeline
    return result


class _ByValue:
    """Ship a function to the workers by value, wherever this module was imported from."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "func")

    def __reduce__(self) -> tuple:
        return cloudpickle.loads, (cloudpickle.dumps(self.func),)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
REDUCE = _ByValue(reduce_train)


# ---------------------------------------------------------------------------------------------
# the bridge


@dataclass
class Case:
    mode: str
    workers: int
    trains: int
    seconds: float
    train_bytes: float
    bridge_bytes: float  # per train, from the bridge into the receiving process(es)
    cluster_bytes: float  # per train, between the graph's process and the workers
    cpu_ms: float  # CPU time of the reduction itself, per train
    cpu: dict[str, float]  # CPU seconds per train, by process: bridge, graph, workers

    @property
    def rate(self) -> float:
        return self.trains / self.seconds

    @property
    def cluster_fraction(self) -> float:
        return self.cluster_bytes / self.train_bytes if self.train_bytes else 0.0


class _Timer:
    """Times ``trains`` results after ``warmup`` (set ``done`` when complete), and the CPU time
    the processes involved spent meanwhile."""

    def __init__(self, warmup: int, trains: int, processes: dict[str, list[int]]) -> None:
        self.warmup, self.trains = warmup, trains
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.done = threading.Event()
        self.processes = {role: [psutil.Process(pid) for pid in pids]
                          for role, pids in processes.items()}
        self._cpu_start: dict[str, float] = {}
        self.cpu_by_role: dict[str, float] = {}

    def _cpu_now(self) -> dict[str, float]:
        return {role: sum(sum(p.cpu_times()[:2]) for p in procs)
                for role, procs in self.processes.items()}

    def __call__(self, result: Any) -> None:
        self.times.append(time.perf_counter())
        n = len(self.times)
        if n == self.warmup + 1:
            self._cpu_start = self._cpu_now()
        if n > self.warmup:
            self.cpu.append(float(getattr(result, "attrs", {}).get("cpu_ms", 0.0)))
        if n == self.warmup + self.trains + 1:
            end = self._cpu_now()
            self.cpu_by_role = {role: (end[role] - self._cpu_start[role]) / self.trains
                                for role in end}
            self.done.set()

    @property
    def seconds(self) -> float:
        return self.times[self.warmup + self.trains] - self.times[self.warmup]


def _wait(timer: _Timer, timeout: float) -> None:
    if not timer.done.wait(timeout):
        raise TimeoutError(f"only {len(timer.times)} of {timer.warmup + timer.trains + 1} "
                           f"results within {timeout} s")


def _time_source(source: Any, timer: _Timer, args: argparse.Namespace,
                 finish: Callable[[], Any]) -> None:
    """Run *source* until *timer* has its trains; then stop it and *finish* (wait for the rest)."""
    source.start()
    try:
        _wait(timer, args.timeout * (args.warmup + args.trains + 1))
    finally:
        source.stop()
        finish()


def run_single(endpoint: str, sock: str, pids: dict[str, list[int]],
               args: argparse.Namespace) -> Case:
    from kb_streams.client import Client
    from kb_streams.train import Train

    timer = _Timer(args.warmup, args.trains, pids)
    nbytes = []
    with Client(endpoint, sock=sock, timeout=args.timeout,
                prefetch=2 if sock == "REQ" else 1) as client:
        while not timer.done.is_set():
            message = client.next_message()
            nbytes.append(message.nbytes)
            timer(REDUCE(Train.from_message(message), args.cost_ms))
            del message
    size = float(np.mean(nbytes))
    return Case("single", 0, args.trains, timer.seconds, size, size, 0.0,
                float(np.mean(timer.cpu)), timer.cpu_by_role)


def run_offload(endpoint: str, sock: str, client: Any, workers: int, pids: dict[str, list[int]],
                args: argparse.Namespace) -> Case:
    from streamz import Stream

    import kb_streams.offload  # noqa: F401 - registers Stream.offload
    import kb_streams.sources  # noqa: F401 - registers Stream.from_karabo_bridge

    timer = _Timer(args.warmup, args.trains, pids)
    source = Stream.from_karabo_bridge(endpoint, sock=sock, timeout=args.timeout,
                                       prefetch=2 if sock == "REQ" else 1)
    node = source.offload(REDUCE, args.cost_ms, n=2 * workers, client=client, scatter=True)
    node.sink(timer)
    _time_source(source, timer, args, finish=lambda: (source.join(timeout=30),
                                                      node.drain(timeout=60)))
    stats = node.stats
    size = stats.bytes_scattered / stats.accepted
    task = len(cloudpickle.dumps(REDUCE))
    cluster = size + task + stats.bytes_results / max(stats.completed, 1)
    return Case("offload", workers, args.trains, timer.seconds, size, size, cluster,
                float(np.mean(timer.cpu)), timer.cpu_by_role)


def run_workers(endpoint: str, sock: str, client: Any, workers: int, pids: dict[str, list[int]],
                args: argparse.Namespace) -> Case:
    from streamz import Stream

    import kb_streams.worker_receive  # noqa: F401 - registers the source

    timer = _Timer(args.warmup, args.trains, pids)
    source = Stream.from_karabo_bridge_on_workers(
        endpoint, REDUCE, client, n=workers, sock=sock, args=(args.cost_ms,),
        timeout=args.timeout, wait=args.timeout)
    source.sink(timer)
    _time_source(source, timer, args, finish=lambda: source.finished.wait(60))
    stats = source.stats
    size = stats.bytes_received / stats.received
    cluster = (stats.bytes_tasks + stats.bytes_results) / stats.received
    return Case("workers", workers, args.trains, timer.seconds, size, size, cluster,
                float(np.mean(timer.cpu)), timer.cpu_by_role)


# ---------------------------------------------------------------------------------------------
# soak: does a long offload run keep memory flat?


def _scheduler_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def _worker_keys(dask_worker: Any) -> int:
    return len(dask_worker.data)


@dataclass
class Sample:
    trains: int  # results and error records so far
    seconds: float
    rss: dict[str, float]  # MB by process: graph (with the local scheduler), bridge, w0, w1...
    futures: int  # the client's live futures
    tasks: int  # the scheduler's tasks
    worker_keys: int  # keys held by all workers
    in_flight: int  # the offload node's items in flight


@dataclass
class _Counter:
    """The sink: counts results and error records; the main thread waits for sample marks."""

    results: int = 0
    errors: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def total(self) -> int:
        return self.results + len(self.errors)

    def result(self, _: Any) -> None:
        with self.cond:
            self.results += 1
            self.cond.notify_all()

    def error(self, record: Any) -> None:
        with self.cond:
            self.errors.append(str(record))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> int:
        with self.cond:
            self.cond.wait_for(lambda: self.total >= n, timeout)
            return self.total


def _growth(samples: list[Sample], n: int) -> dict[str, tuple[float, float, float]]:
    """Per process: median RSS (MB) over the first and the last 10 % of the run, and the slope
    (MB per 1000 trains) of a straight line through the samples of the second half."""
    head = [s for s in samples if 0 < s.trains <= max(n // 10, 1)] or samples[1:2]
    tail = [s for s in samples if s.trains >= n - n // 10] or samples[-1:]
    half = [s for s in samples if s.trains >= n // 2]
    growth = {}
    for role in samples[0].rss:
        fit = np.polyfit([s.trains for s in half], [s.rss[role] for s in half], 1) \
            if len(half) > 2 else [float("nan")]
        slope = 1e3 * float(fit[0])
        growth[role] = (float(np.median([s.rss[role] for s in head])),
                        float(np.median([s.rss[role] for s in tail])), slope)
    return growth


def _cluster(workers: int, scheduler_process: bool, profile: bool) -> tuple[Any, Any]:
    """A client on a local cluster, as ``connect`` starts it or with the scheduler in its own
    process; and that cluster if it must be closed separately."""
    from distributed import Client
    from distributed.deploy.subprocess import SubprocessCluster

    from kb_streams.cluster import connect

    if not scheduler_process:
        return connect(n_workers=workers, threads_per_worker=1, set_as_default=False,
                       profile=profile), None
    cluster = SubprocessCluster(
        host="127.0.0.1", dashboard_address=None, n_workers=workers, threads_per_worker=1,
        worker_class="kb_streams.cluster._AdaptiveMallocNanny",
        worker_kwargs={"config": {"distributed.worker.profile.enabled": profile}})
    client = Client(cluster, direct_to_workers=True, set_as_default=False)
    client.wait_for_workers(workers, timeout=60)
    return client, cluster


def soak(args: argparse.Namespace) -> int:
    """Offload ``args.soak`` trains from a bridge; sample memory and live objects as they go."""
    import dask
    from streamz import Stream

    import kb_streams.offload  # noqa: F401 - registers Stream.offload
    import kb_streams.sources  # noqa: F401 - registers Stream.from_karabo_bridge

    n = args.soak
    pulses = 1 if args.pulses is None else args.pulses
    cost_ms = 5.0 if args.cost_ms is None else args.cost_ms
    workers = (args.workers or [2])[-1]
    every = args.sample_every or max(1, n // 50)
    endpoint = harness.free_endpoint()
    server_sock = {"REQ": "REP", "PULL": "PUSH"}[args.sock]
    print(f"soak: {n} AGIPD-1M trains of {pulses} pulse(s) ({5.2 * pulses:.1f} MB), offload(n="
          f"{2 * workers}) to {workers} worker(s), reduction {cost_ms:g} ms CPU, bridge "
          f"{server_sock}; sampling every {every} trains"
          + (f"; Dask history {args.dask_history}" if args.dask_history is not None else "")
          + ("; worker profiler on" if args.profile else ""),
          flush=True)
    if args.dask_history is not None:
        # the in-process scheduler reads the config, spawned processes the environment
        dask.config.set({"distributed.admin.low-level-log-length": args.dask_history})
        os.environ["DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH"] = str(args.dask_history)
    client, cluster = _cluster(workers, args.scheduler_process, args.profile)
    server = harness.serve_agipd(endpoint, pulses, server_sock)
    try:
        procs = {"graph": psutil.Process(), "bridge": psutil.Process(server.pid)}
        if cluster is not None:
            procs["sched"] = psutil.Process(client.run_on_scheduler(os.getpid))
        for i, pid in enumerate(client.run(os.getpid).values()):
            procs[f"w{i}"] = psutil.Process(pid)
        source = Stream.from_karabo_bridge(endpoint, sock=args.sock, timeout=args.timeout,
                                           prefetch=2 if args.sock == "REQ" else 1)
        node = source.offload(REDUCE, cost_ms, n=2 * workers, client=client)
        counter = _Counter()
        node.sink(counter.result)
        node.errors.sink(counter.error)
        start = time.perf_counter()

        def sample() -> Sample:
            return Sample(counter.total, time.perf_counter() - start,
                          {role: p.memory_info().rss / 1e6 for role, p in procs.items()},
                          len(client.futures), client.run_on_scheduler(_scheduler_tasks),
                          sum(client.run(_worker_keys).values()), node.stats.in_flight)

        samples = [sample()]
        _print_sample(samples[0], header=True)
        source.start()
        try:
            mark = every
            while mark <= n:
                got = counter.wait_for(mark, args.timeout)
                if got < mark:
                    raise TimeoutError(f"only {got} of {n} trains after {args.timeout} s "
                                       f"without progress")
                samples.append(sample())
                _print_sample(samples[-1])
                mark = (samples[-1].trains // every + 1) * every
        finally:
            source.stop()
            source.join(timeout=30)
            node.drain(timeout=60)
        rate = samples[-1].trains / samples[-1].seconds
        # releasing keys is asynchronous: give the scheduler a moment before the last count
        deadline = time.monotonic() + 10
        after = sample()
        while (after.futures or after.tasks or after.worker_keys) and time.monotonic() < deadline:
            time.sleep(0.1)
            after = sample()
    finally:
        server.terminate()
        server.wait(30)
        client.close()
        if cluster is not None:
            cluster.close()
    growth = _growth(samples, n)
    print(f"{samples[-1].trains} trains in {samples[-1].seconds:.1f} s ({rate:.1f} trains/s), "
          f"{len(counter.errors)} error record(s); max in flight {node.stats.max_in_flight}, "
          f"max client futures {max(s.futures for s in samples)}, "
          f"max scheduler tasks {max(s.tasks for s in samples)}, "
          f"max worker keys {max(s.worker_keys for s in samples)}")
    print("RSS, median of the first 10 % -> the last 10 % of the run; slope over the second half:")
    for role, (first, last, slope) in growth.items():
        print(f"  {role:<7} {first:8.1f} -> {last:8.1f} MB  ({last - first:+6.1f} MB)  "
              f"{slope:+6.2f} MB per 1000 trains")
    print(f"after the run: {after.futures} client futures, {after.tasks} scheduler tasks, "
          f"{after.worker_keys} keys on the workers")
    for text in counter.errors[:5]:
        print(f"  error: {text}")
    harness.write_json(args.json, {
        "soak": n, "pulses": pulses, "cost_ms": cost_ms, "workers": workers, "rate": rate,
        "errors": counter.errors, "scheduler_process": args.scheduler_process,
        "dask_history": args.dask_history, "profile": args.profile,
        "growth_mb": {r: last - first for r, (first, last, _) in growth.items()},
        "slope_mb_per_1000": {r: slope for r, (_, _, slope) in growth.items()},
        "after": asdict(after), "samples": [asdict(s) for s in samples]})
    return 0


def _print_sample(s: Sample, header: bool = False) -> None:
    if header:
        print(f"{'trains':>6} {'s':>6} " + " ".join(f"{role + ' MB':>9}" for role in s.rss)
              + f" {'futures':>7} {'tasks':>5} {'w-keys':>6} {'in-flight':>9}")
    print(f"{s.trains:>6} {s.seconds:>6.1f} " + " ".join(f"{mb:>9.1f}" for mb in s.rss.values())
          + f" {s.futures:>7} {s.tasks:>5} {s.worker_keys:>6} {s.in_flight:>9}", flush=True)


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kb-streams bench dask``."""
    harness.add_options(parser, trains=20, warmup=3, pulses=(
        None, "pulses per train (64: 268 MB AGIPD-1M trains; None: 64, or 1 with --soak)"))
    parser.add_argument("--cost-ms", type=float, default=None,
                        help="CPU time of the reduction per train (default 150, or 5 with --soak)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to try (default: 1 2; --soak uses the last, default 2)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="cases to run (default: all)")
    parser.add_argument("--sock", choices=["REQ", "PULL"], default="REQ",
                        help="client socket; the bridge is REP or PUSH (default %(default)s)")
    harness.add_options(parser, timeout=30.0)
    harness.add_json_option(parser, to_file=True)
    parser.add_argument("--soak", type=int, metavar="N", default=0,
                        help="instead of the cases: offload N trains and sample memory (see above)")
    parser.add_argument("--sample-every", type=int, metavar="K", default=0,
                        help="--soak: sample every K trains (default: N/50)")
    parser.add_argument("--dask-history", type=int, metavar="N", default=None,
                        help="--soak: set distributed.admin.low-level-log-length (Dask's default "
                             "1000) for the cluster")
    parser.add_argument("--profile", action="store_true",
                        help="--soak: run Dask's profiler on the workers (connect's default: off)")
    parser.add_argument("--scheduler-process", action="store_true",
                        help="--soak: run the scheduler in its own process (default: in the "
                             "graph's, as kb_streams.cluster.connect does)")


def _table(cases: list[Case]) -> str:
    lines = [f"{'case':<8} {'workers':>7} {'trains/s':>9} {'ms/train':>9} {'train MB':>9} "
             f"{'cluster MB':>10} {'cluster %':>9} {'reduce':>7} | CPU ms per train: "
             f"{'bridge':>6} {'graph':>6} {'workers':>7} {'total':>6}"]
    for c in cases:
        cpu = {role: 1e3 * c.cpu.get(role, 0.0) for role in ("bridge", "graph", "workers")}
        lines.append(f"{c.mode:<8} {c.workers:>7} {c.rate:>9.2f} {1e3 / c.rate:>9.1f} "
                     f"{c.train_bytes / 1e6:>9.1f} "
                     f"{c.cluster_bytes / 1e6:>10.3f} {100 * c.cluster_fraction:>8.3f}% "
                     f"{c.cpu_ms:>7.0f} |                   {cpu['bridge']:>6.0f} "
                     f"{cpu['graph']:>6.0f} {cpu['workers']:>7.0f} {sum(cpu.values()):>6.0f}")
    by = {(c.mode, c.workers): c for c in cases}
    for w in sorted({c.workers for c in cases if c.workers}):
        if ("offload", w) in by and ("workers", w) in by:
            lines.append(f"{w} worker(s): receiving on the workers is "
                         f"{by['workers', w].rate / by['offload', w].rate:.2f}x offload")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the cases (or the soak); print a table (and write JSON). Returns the exit status."""
    if args.soak:
        return soak(args)
    from kb_streams.cluster import connect

    args.pulses = 64 if args.pulses is None else args.pulses
    args.cost_ms = 150.0 if args.cost_ms is None else args.cost_ms
    args.workers = args.workers or [1, 2]
    endpoint = harness.free_endpoint()
    server_sock = {"REQ": "REP", "PULL": "PUSH"}[args.sock]
    mb = 16 * 512 * 128 * 4 * args.pulses / 1e6
    print(f"AGIPD-1M, {args.pulses} pulses ({mb:.0f} MB/train), reduction {args.cost_ms:g} ms "
          f"CPU, bridge {server_sock} on {endpoint}", flush=True)
    cases: list[Case] = []
    for workers in [0, *args.workers]:
        modes = [m for m in args.modes if (m == "single") == (workers == 0)]
        if not modes:
            continue
        client = connect(n_workers=workers, threads_per_worker=1, set_as_default=True) \
            if workers else None
        try:
            for mode in modes:
                # a fresh bridge per case, so no case inherits another's queued trains
                server = harness.serve_agipd(endpoint, args.pulses, server_sock)
                pids = {"bridge": [server.pid], "graph": [os.getpid()],
                        "workers": list(client.run(os.getpid).values()) if client else []}
                try:
                    if mode == "single":
                        case = run_single(endpoint, args.sock, pids, args)
                    elif mode == "offload":
                        case = run_offload(endpoint, args.sock, client, workers, pids, args)
                    else:
                        case = run_workers(endpoint, args.sock, client, workers, pids, args)
                finally:
                    server.terminate()
                    server.wait(30)
                cases.append(case)
                print(f"  {mode} with {workers} worker(s): {case.rate:.2f} trains/s", flush=True)
        finally:
            if client is not None:
                client.close()
    print(_table(cases))
    harness.write_json(args.json, {"pulses": args.pulses, "cost_ms": args.cost_ms,
                                   "sock": args.sock,
                                   "cases": [{**asdict(c), "rate": c.rate} for c in cases]})
    return 0


if __name__ == "__main__":
    harness.run_as_script(__doc__, add_arguments, main)
