"""Benchmark: receive throughput of ``kb_streams.Client`` against ``karabo_bridge.Client`` and a
bare pyzmq loop.

One AGIPD-1M train (16 modules x ``--pulses`` pulses x 512 x 128 float32: 268 MB at 64 pulses) is
built and serialized once (protocol 2.2, with ``karabo_bridge.serialize``) in a server process
started with the ``spawn`` method, then sent again and again over loopback TCP with zero-copy
sends. A REP server and a PUSH server each run in their own process for the whole run.

Scenarios (each client takes one warm-up train, then ``--trains`` timed trains):

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

Targets (issue): ours >= 1.0 x reference on REQ and PULL, >= 0.9 x bare pyzmq on PULL, and
>= 1.3 x reference on REQ+work with prefetch 2.

Run with ``kb-streams bench client`` or ``python benchmarks/bench_client.py``;
``--pulses 4 --trains 5 --rounds 1`` makes a quick check.

Most of the time is spent in the kernel: every train lands in a freshly mmapped 268 MB buffer
allocated by libzmq (page faults, zeroing). Where transparent huge pages are set to ``madvise``,
starting the receiving process with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` made every client
about 1.5-2 x faster on a 2-core VM; it applies to all clients alike.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SCENARIOS = {
    # name: (server socket, client socket, work per train in the 'work' scenario?)
    "REQ": ("REP", "REQ", False),
    "PULL": ("PUSH", "PULL", False),
    "REQ+work": ("REP", "REQ", True),
}
CLIENTS = ("kb_streams", "karabo_bridge", "pyzmq")
SOURCE = "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED"
RECEIVE_TIMEOUT = 60  # seconds; only hit if something is badly wrong


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


def _time_loop(receive: Callable[[], Any], trains: int, work: float) -> float:
    receive()  # warm-up: connection set-up and the first train are not timed
    start = time.perf_counter()
    for _ in range(trains):
        receive()
        if work:
            _busy(work)
    return time.perf_counter() - start


def _run_kb_streams(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> float:
    from kb_streams.client import Client

    with Client(endpoint, sock=sock, timeout=RECEIVE_TIMEOUT, prefetch=prefetch) as client:
        return _time_loop(client.next, trains, work)


def _run_karabo_bridge(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> float:
    import karabo_bridge

    with karabo_bridge.Client(endpoint, sock=sock, timeout=RECEIVE_TIMEOUT) as client:
        return _time_loop(client.next, trains, work)


def _run_pyzmq(endpoint: str, sock: str, trains: int, work: float, prefetch: int) -> float:
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


# -- driver ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trains", type=int, default=10,
                        help="timed trains per client, scenario and round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--pulses", type=int, default=64,
                        help="pulses per train; 64 gives 268 MB trains (default 64)")
    parser.add_argument("--work-ms", type=float, default=150.0,
                        help="simulated work per train in REQ+work (default 150)")
    parser.add_argument("--prefetch", type=int, default=2,
                        help="our client's prefetch in REQ+work (default 2)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS),
                        default=list(SCENARIOS), help="scenarios to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario, client and round; return settings, raw rates and medians."""
    kinds = sorted({SCENARIOS[name][0] for name in args.scenarios})
    servers: dict[str, _Server] = {}
    rates: dict[str, dict[str, list[float]]] = {
        name: {client: [] for client in CLIENTS} for name in args.scenarios}
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
                    elapsed = RUNNERS[client](servers[server_kind].endpoint, sock, args.trains,
                                              work, prefetch)
                    rates[name][client].append(args.trains / elapsed)
                    _log(f"round {rnd + 1}/{args.rounds} {name:9s} {client:14s} "
                         f"{args.trains / elapsed:7.2f} trains/s")
    finally:
        for server in servers.values():
            server.close()

    results: dict[str, Any] = {}
    for name, per_client in rates.items():
        medians = {client: _median(values) for client, values in per_client.items()}
        results[name] = {
            "trains_per_s": medians,
            "gb_per_s": {c: m * nbytes / 1e9 for c, m in medians.items()},
            "all_trains_per_s": per_client,
            "ours_vs_reference": medians["kb_streams"] / medians["karabo_bridge"],
            "ours_vs_pyzmq": medians["kb_streams"] / medians["pyzmq"],
        }
    return {
        "settings": {"trains": args.trains, "rounds": args.rounds, "pulses": args.pulses,
                     "work_ms": args.work_ms, "prefetch": args.prefetch},
        "bytes_per_train": nbytes,
        "results": results,
    }


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def format_table(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"Client throughput: {report['bytes_per_train'] / 1e6:.1f} MB per train, "
        f"{settings['trains']} trains x {settings['rounds']} rounds, medians; "
        f"REQ+work: {settings['work_ms']:g} ms per train, "
        f"ours with prefetch={settings['prefetch']}",
        "",
        f"{'scenario':10s} {'client':14s} {'trains/s':>9s} {'GB/s':>7s}",
    ]
    for name, res in report["results"].items():
        for client in CLIENTS:
            lines.append(f"{name:10s} {client:14s} {res['trains_per_s'][client]:9.2f} "
                         f"{res['gb_per_s'][client]:7.2f}")
        lines.append(f"{'':10s} ours/reference {res['ours_vs_reference']:8.2f}x  "
                     f"ours/pyzmq {res['ours_vs_pyzmq']:.2f}x")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    for option in ("trains", "rounds", "pulses"):
        if getattr(args, option) < 1:
            _log(f"--{option} must be at least 1")
            return 2
    report = measure(args)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
