"""Benchmark: receive throughput of ``kb_streams.Client`` against ``karabo_bridge.Client`` and a
bare pyzmq loop.

One AGIPD-1M train (16 modules x ``--pulses`` pulses x 512 x 128 float32: 268 MB at 64 pulses) is
built and serialized once (protocol 2.2, with ``karabo_bridge.serialize``) in a server process
started with the ``spawn`` method, then sent again and again over loopback TCP with zero-copy
sends. A REP server and a PUSH server each run in their own process for the whole run.

Scenarios (each client takes three warm-up trains, then ``--trains`` timed trains):

``REQ``
    request/reply, nothing done with the train. Ours with the default ``prefetch=1``.
``PULL``
    the server pushes as fast as the client takes.
``REQ+work``
    request/reply with ``--work-ms`` (150) of busy-waiting per train, the same for every client;
    ours with ``prefetch=--prefetch`` (2), so the next train travels while the work runs.

Clients: ``kb_streams`` (``Client.next()``), ``karabo_bridge`` (``Client.next()``) and ``pyzmq``
(a REQ or PULL socket with ``recv_multipart(copy=False)`` and no decoding at all). In every round
each scenario runs every client once, in a rotating order; the table shows the median over rounds.
Every run is a fresh process (``spawn``), as a user's program would be: our client's allocator
tuning (:mod:`kb_streams._malloc`) then applies to our runs only, not to the reference's. Each run
also reports its page faults and CPU time per train (``resource.getrusage``), which show where
the time goes.

``--soak N`` then receives ``N`` more trains with our client (PULL) in one process and reports
its resident memory after the first and after the last train: memory stays flat while received
buffers are reused.

Targets (issue): ours >= 1.0 x reference on REQ and PULL, >= 0.9 x bare pyzmq on PULL, and
>= 1.3 x reference on REQ+work with prefetch 2.

Run with ``kb-streams bench client`` or ``python -m benchmarks.bench_client``;
``--pulses 4 --trains 5 --rounds 1`` makes a quick check.

Without tuning, most of the time is spent in the kernel: every train lands in a freshly mmapped
268 MB buffer allocated by libzmq (65,000 page faults and zeroing per train). Our client makes
glibc reuse that buffer (:func:`kb_streams._malloc.tune_malloc`); ``KB_STREAMS_TUNE_MALLOC=0`` in
the environment turns that off for a comparison.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._harness import add_json_option, add_options, print_results, run_as_script

SCENARIOS = {
    # name: (server socket, client socket, work per train in the 'work' scenario?)
    "REQ": ("REP", "REQ", False),
    "PULL": ("PUSH", "PULL", False),
    "REQ+work": ("REP", "REQ", True),
}
CLIENTS = ("kb_streams", "karabo_bridge", "pyzmq")
SOURCE = "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED"
RECEIVE_TIMEOUT = 60  # seconds; only hit if something is badly wrong
#: Trains received before timing: PULL receives the next train while the last is still held, so
#: a receiver's memory reaches its steady state (two trains) with the second train.
WARM_UP = 3
Run = dict[str, float]  # what one timed run measured: elapsed, faults, sys_ms, user_ms, rss_*


# -- server process -----------------------------------------------------------------------------


def _make_train(pulses: int) -> tuple[dict, dict]:
    import numpy as np

    rng = np.random.default_rng(0)
    data = {
        SOURCE: {
            "image.data": rng.random((pulses, 16, 512, 128), dtype=np.float32),
            "image.cellId": np.arange(pulses, dtype=np.uint16),
            "image.pulseId": np.arange(pulses, dtype=np.uint64),
            "image.trainId": np.full(pulses, 10_000_000_000, dtype=np.uint64),
        }
    }
    meta = {SOURCE: {"source": SOURCE, "timestamp.tid": 10_000_000_000,
                     "timestamp": 1.7e9, "timestamp.sec": "1700000000",
                     "timestamp.frac": "000000000000000000"}}
    return data, meta


def _serve(kind: str, pulses: int, conn: Any, stop: Any) -> None:
    """Server process: send one pre-serialized train over and over until ``stop`` is set."""
    import karabo_bridge
    import zmq

    frames = karabo_bridge.serialize(*_make_train(pulses), protocol_version="2.2")
    nbytes = sum(memoryview(f).nbytes for f in frames)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP if kind == "REP" else zmq.PUSH)
    sock.linger = 0
    sock.set_hwm(1)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    conn.send((f"tcp://127.0.0.1:{port}", nbytes))
    try:
        while not stop.is_set():
            if kind == "REP":
                if sock.poll(100, zmq.POLLIN):
                    sock.recv()
                    sock.send_multipart(frames, copy=False)
            elif sock.poll(100, zmq.POLLOUT):
                try:  # the client may have gone since the poll: never block in send
                    sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    pass
    finally:
        sock.close(linger=0)
        ctx.term()


class _Server:
    def __init__(self, kind: str, pulses: int) -> None:
        mp = multiprocessing.get_context("spawn")
        here, there = mp.Pipe()
        self.stop = mp.Event()
        self.process = mp.Process(target=_serve, args=(kind, pulses, there, self.stop),
                                  name=f"bench-client-{kind}", daemon=True)
        self.process.start()
        deadline = time.monotonic() + 120
        while not here.poll(0.2):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{kind} server process did not start")
        self.endpoint, self.nbytes = here.recv()

    def close(self) -> None:
        self.stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# -- clients --------------------------------------------------------------------------------------


def _busy(seconds: float) -> None:
    """Simulated processing: keep the CPU (and the GIL) busy for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _time_loop(receive: Callable[[], Any], trains: int, work: float) -> Run:
    """Time ``trains`` receives after the warm-up; elapsed seconds, faults and CPU per train."""
    for _ in range(WARM_UP):  # connection set-up and the first buffers are not timed
        receive()
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_before = _rss()
    start = time.perf_counter()
    for _ in range(trains):
        receive()
        if work:
            _busy(work)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"elapsed": elapsed,
            "faults": (after.ru_minflt - before.ru_minflt) / trains,
            "sys_ms": (after.ru_stime - before.ru_stime) / trains * 1e3,
            "user_ms": (after.ru_utime - before.ru_utime) / trains * 1e3,
            "rss_first_mb": rss_before / 1e6, "rss_last_mb": _rss() / 1e6}


def _rss() -> int:
    """Resident memory of this process in bytes (``VmRSS`` of ``/proc/self/status``; 0 if none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _run_kb_streams(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> Run:
    from kb_streams.client import Client

    with Client(endpoint, sock=sock, timeout=RECEIVE_TIMEOUT, prefetch=prefetch) as client:
        return _time_loop(client.next, trains, work)


def _run_karabo_bridge(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> Run:
    import karabo_bridge

    with karabo_bridge.Client(endpoint, sock=sock, timeout=RECEIVE_TIMEOUT) as client:
        return _time_loop(client.next, trains, work)


def _run_pyzmq(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> Run:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ if sock == "REQ" else zmq.PULL)
    s.linger = 0
    s.set_hwm(1)
    s.rcvtimeo = RECEIVE_TIMEOUT * 1000
    s.connect(endpoint)

    def receive() -> list:
        if sock == "REQ":
            s.send(b"next")
        return s.recv_multipart(copy=False)

    try:
        return _time_loop(receive, trains, work)
    finally:
        s.close(linger=0)
        ctx.term()


RUNNERS = {"kb_streams": _run_kb_streams, "karabo_bridge": _run_karabo_bridge,
           "pyzmq": _run_pyzmq}




def _run_child(conn: Any, client: str, args: tuple) -> None:
    try:
        conn.send(RUNNERS[client](*args))
    except BaseException as exc:  # report, then let the parent raise
        conn.send(exc)
        raise


def run_fresh(client: str, endpoint: str, sock: str, trains: int, work: float,
              prefetch: int) -> Run:
    """Run one client in a fresh ``spawn`` process; return what :func:`_time_loop` measured."""
    mp = multiprocessing.get_context("spawn")
    here, there = mp.Pipe(duplex=False)
    process = mp.Process(target=_run_child, name=f"bench-client-{client}", daemon=True,
                         args=(there, client, (endpoint, sock, trains, work, prefetch)))
    process.start()
    there.close()
    try:
        if not here.poll(RECEIVE_TIMEOUT * (trains + 2)):
            raise RuntimeError(f"{client} run did not finish")
        result = here.recv()
    except EOFError:
        raise RuntimeError(f"{client} run died (exit code {process.exitcode})") from None
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
    if isinstance(result, BaseException):
        raise result
    return result


# -- driver ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, trains=(10, "timed trains per client, scenario and round"), rounds=3,
                pulses=(64, "pulses per train; 64 gives 268 MB trains"))
    parser.add_argument("--work-ms", type=float, default=150.0,
                        help="simulated work per train in REQ+work (default 150)")
    parser.add_argument("--prefetch", type=int, default=2,
                        help="our client's prefetch in REQ+work (default 2)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS),
                        default=list(SCENARIOS), help="scenarios to run (default: all)")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="then receive N trains with our client (PULL) and report its "
                             "resident memory after the first and the last (default 0: no soak)")
    add_json_option(parser, to_file=False)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario, client and round, each run in a fresh process; then the soak, if any.

    Returns settings, raw rates, medians and the soak's memory.
    """
    kinds = sorted({SCENARIOS[name][0] for name in args.scenarios}
                   | ({"PUSH"} if args.soak else set()))
    servers: dict[str, _Server] = {}
    runs: dict[str, dict[str, list[Run]]] = {
        name: {client: [] for client in CLIENTS} for name in args.scenarios}
    soak = None
    try:
        for kind in kinds:
            _log(f"starting {kind} server ({args.pulses} pulses)...")
            servers[kind] = _Server(kind, args.pulses)
        nbytes = next(iter(servers.values())).nbytes
        for rnd in range(args.rounds):
            for name in args.scenarios:
                server_kind, sock, with_work = SCENARIOS[name]
                work = args.work_ms / 1000 if with_work else 0.0
                prefetch = args.prefetch if with_work else 1
                order = CLIENTS[rnd % 3:] + CLIENTS[:rnd % 3]
                for client in order:
                    run = run_fresh(client, servers[server_kind].endpoint, sock, args.trains,
                                    work, prefetch)
                    runs[name][client].append(run)
                    _log(f"round {rnd + 1}/{args.rounds} {name:9s} {client:14s} "
                         f"{args.trains / run['elapsed']:7.2f} trains/s "
                         f"{run['faults']:8.0f} faults/train {run['sys_ms']:6.1f} ms sys/train")
        if args.soak:
            _log(f"soak: {args.soak} trains with kb_streams (PULL)...")
            soak = run_fresh("kb_streams", servers["PUSH"].endpoint, "PULL", args.soak, 0.0, 1)
    finally:
        for server in servers.values():
            server.close()

    results: dict[str, Any] = {}
    for name, per_client in runs.items():
        rates = {c: [args.trains / r["elapsed"] for r in rs] for c, rs in per_client.items()}
        medians = {client: _median(values) for client, values in rates.items()}
        results[name] = {
            "trains_per_s": medians,
            "gb_per_s": {c: m * nbytes / 1e9 for c, m in medians.items()},
            "faults_per_train": {c: _median([r["faults"] for r in rs])
                                 for c, rs in per_client.items()},
            "sys_ms_per_train": {c: _median([r["sys_ms"] for r in rs])
                                 for c, rs in per_client.items()},
            "all_trains_per_s": rates,
            "ours_vs_reference": medians["kb_streams"] / medians["karabo_bridge"],
            "ours_vs_pyzmq": medians["kb_streams"] / medians["pyzmq"],
        }
    report = {
        "settings": {"trains": args.trains, "rounds": args.rounds, "pulses": args.pulses,
                     "work_ms": args.work_ms, "prefetch": args.prefetch, "soak": args.soak,
                     "tune_malloc": os.environ.get("KB_STREAMS_TUNE_MALLOC", "1") != "0"},
        "bytes_per_train": nbytes,
        "results": results,
    }
    if soak is not None:
        report["soak"] = {"trains": args.soak, "trains_per_s": args.soak / soak["elapsed"],
                          "rss_first_mb": soak["rss_first_mb"], "rss_last_mb": soak["rss_last_mb"]}
    return report


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def format_table(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"Client throughput: {report['bytes_per_train'] / 1e6:.1f} MB per train, "
        f"{settings['trains']} trains x {settings['rounds']} rounds, medians, each run a fresh "
        f"process; REQ+work: {settings['work_ms']:g} ms per train, ours with "
        f"prefetch={settings['prefetch']}; our malloc tuning "
        f"{'on' if settings['tune_malloc'] else 'off (KB_STREAMS_TUNE_MALLOC=0)'}",
        "",
        f"{'scenario':10s} {'client':14s} {'trains/s':>9s} {'GB/s':>7s} {'faults/train':>13s} "
        f"{'sys ms/train':>13s}",
    ]
    for name, res in report["results"].items():
        for client in CLIENTS:
            lines.append(f"{name:10s} {client:14s} {res['trains_per_s'][client]:9.2f} "
                         f"{res['gb_per_s'][client]:7.2f} "
                         f"{res['faults_per_train'][client]:13.0f} "
                         f"{res['sys_ms_per_train'][client]:13.1f}")
        lines.append(f"{'':10s} ours/reference {res['ours_vs_reference']:8.2f}x  "
                     f"ours/pyzmq {res['ours_vs_pyzmq']:.2f}x")
    if "soak" in report:
        soak = report["soak"]
        lines.append(f"\nsoak: {soak['trains']} trains (PULL) at {soak['trains_per_s']:.2f} "
                     f"trains/s; resident memory {soak['rss_first_mb']:.0f} MB after the first, "
                     f"{soak['rss_last_mb']:.0f} MB after the last")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    for option in ("trains", "rounds", "pulses"):
        if getattr(args, option) < 1:
            _log(f"--{option} must be at least 1")
            return 2
    if args.soak < 0:
        _log("--soak must be at least 0")
        return 2
    return print_results(measure(args), args.json, format_table)


if __name__ == "__main__":
    run_as_script(__doc__, add_arguments, main)
