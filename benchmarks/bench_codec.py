"""Benchmark: what a hostile peer costs us (issue 9, items 2 and 4).

Client side, one ``kb_streams.Client`` (PULL) receiving from a PUSH socket in another process:

``dtype-fields``
    a 2.2 train whose array header lists 10**6 dtype fields (a 12.9 MB header, 1-byte payload);
``empty-parts``
    one message of 10**6 empty parts.

For each: the receiving process's CPU seconds and wall seconds for the ``next()`` call that
raises, its RSS growth, and the length of the error message; then whether the next good train
still arrives.

Server side, a ``BridgeServer`` (REP, fresh 10 MB trains) in a child process:

``rep-greedy``
    one DEALER sends 500 ``b'next'`` and never reads: server RSS growth;
``rep-big-request``
    one DEALER sends a 100 MB request: server RSS growth.

Only public API is used, so the same script measures any version: run it from this checkout
(``kb-streams bench codec``), and with ``PYTHONPATH=/path/to/other/checkout`` for the other one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from typing import Any

import msgpack
import psutil
import zmq

from benchmarks._harness import add_json_option, print_results, run_as_script

HOSTILE = ("dtype-fields", "empty-parts")
_SERVER_SCRIPT = """
import sys
import numpy as np
from kb_streams.server import BridgeServer

def trains():
    tid = 0
    while True:
        tid += 1
        yield ({"SRC": {"image": np.full(10 * 2**18, tid, np.float32)}},
               {"SRC": {"timestamp.tid": tid}})

server = BridgeServer(sock="REP").start(trains())
print(server.endpoint, flush=True)
for _ in sys.stdin:
    print(server.stats.trains, flush=True)
server.stop()
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=10**6,
                        help="dtype fields / empty parts in the hostile messages (default 10**6)")
    parser.add_argument("--requests", type=int, default=500,
                        help="b'next' requests of the greedy DEALER (default 500)")
    add_json_option(parser, to_file=False)


# -- hostile messages to a client ----------------------------------------------------------------


def hostile_message(kind: str, n: int) -> list[bytes]:
    if kind == "empty-parts":
        return [b""] * n
    header = msgpack.packb({"source": "s", "content": "msgpack", "metadata": {"timestamp.tid": 1}})
    array = msgpack.packb({"source": "s", "content": "array", "path": "x", "shape": [],
                           "dtype": [[f"f{i}", "u1"] for i in range(n)]})
    return [header, b"\x80", array, b"\x00"]


def good_train(tid: int) -> list[bytes]:
    header = msgpack.packb({"source": "s", "content": "msgpack",
                            "metadata": {"timestamp.tid": tid}})
    return [header, msgpack.packb({"x": 1})]


def _sender(port_queue: Any, go: Any, kind: str, n: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.sndhwm = 0
    port_queue.put(sock.bind_to_random_port("tcp://127.0.0.1"))
    message = hostile_message(kind, n)
    go.wait()
    sock.send_multipart(good_train(1))
    sock.send_multipart(message)
    for tid in range(2, 200):  # good trains until the reader has one (or gives up)
        sock.send_multipart(good_train(tid))
        if not go.is_set():  # the reader is done
            break
        time.sleep(0.05)
    sock.close(linger=0)
    ctx.term()


def measure_hostile(kind: str, n: int) -> dict[str, Any]:
    from kb_streams import Client, ProtocolError

    mp = multiprocessing.get_context("spawn")
    ports, go = mp.Queue(), mp.Event()
    sender = mp.Process(target=_sender, args=(ports, go, kind, n), daemon=True)
    sender.start()
    me = psutil.Process()
    result: dict[str, Any] = {"scenario": kind}
    try:
        with Client(f"tcp://127.0.0.1:{ports.get(timeout=60)}", sock="PULL", timeout=120) as c:
            go.set()
            c.next()
            rss, cpu, wall = me.memory_info().rss, time.process_time(), time.monotonic()
            try:
                c.next()
                error = ""
            except ProtocolError as exc:
                error = str(exc)
            result.update(cpu_s=time.process_time() - cpu, wall_s=time.monotonic() - wall,
                          rss_mb=(me.memory_info().rss - rss) / 2**20, error_chars=len(error),
                          error=error[:120])
            try:
                c.next()
                result["goes_on"] = True
            except (TimeoutError, ProtocolError):
                result["goes_on"] = False
    finally:
        go.clear()
        sender.terminate()
        sender.join(10)
    return result


# -- misbehaving readers of a REP server ----------------------------------------------------------


def measure_rep(scenario: str, requests: int) -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    try:
        endpoint = child.stdout.readline().strip()

        def sent() -> int:
            child.stdin.write("\n")
            child.stdin.flush()
            return int(child.stdout.readline())

        polite = ctx.socket(zmq.REQ)
        polite.connect(endpoint)
        polite.send(b"next")
        polite.recv_multipart()
        server = psutil.Process(child.pid)
        before = server.memory_info().rss
        bad = ctx.socket(zmq.DEALER)
        bad.rcvhwm = 1
        bad.connect(endpoint)
        if scenario == "rep-greedy":
            for _ in range(requests):
                bad.send_multipart([b"", b"next"])
            deadline = time.monotonic() + 120
            while sent() < requests + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            bad.send_multipart([b"", b"x" * (100 * 2**20)])
            time.sleep(2)  # a benchmark, not a test: let the server take the request in
        during = server.memory_info().rss
        bad.close(linger=0)
        polite.send(b"next")
        served = bool(polite.poll(10_000))
        return {"scenario": scenario, "rss_before_mb": before / 2**20,
                "rss_growth_mb": (during - before) / 2**20, "still_serves": served}
    finally:
        child.kill()
        child.wait(10)
        ctx.destroy(linger=0)


def main(args: argparse.Namespace) -> int:
    results = [measure_hostile(kind, args.n) for kind in HOSTILE]
    results += [measure_rep(name, args.requests) for name in ("rep-greedy", "rep-big-request")]
    return print_results(results, args.json, format_table)


def format_table(results: list[dict[str, Any]]) -> str:
    """One line per scenario."""
    lines = []
    for r in results:
        if "cpu_s" in r:
            lines.append(f"{r['scenario']:16} cpu {r['cpu_s']:6.2f} s  wall {r['wall_s']:6.2f} s  "
                         f"rss +{r['rss_mb']:5.0f} MB  error {r['error_chars']} chars  "
                         f"goes on: {r['goes_on']}")
        else:
            lines.append(f"{r['scenario']:16} server rss {r['rss_before_mb']:5.0f} MB "
                         f"+{r['rss_growth_mb']:5.0f} MB  still serves: {r['still_serves']}")
    return "\n".join(lines)


if __name__ == "__main__":
    run_as_script(__doc__, add_arguments, main)
