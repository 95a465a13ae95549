"""Received trains reuse memory (glibc tuning in ``kb_streams._malloc``), safely.

Each receiver runs in a fresh interpreter, as a user's program does: the allocator tuning applies
to threads created after it, and page faults are counted for that process alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import zmq
from karabo_bridge import serialize

SOURCE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
PART = 40 << 20  # one 40 MiB array per train: above glibc's largest mmap threshold (32 MiB)
TRAINS = 40
FIRST_TID = 10_000

RECEIVER = textwrap.dedent("""
    import json, resource, sys
    from kb_streams import Client

    endpoint, trains, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def rss():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS:"))

    with Client(endpoint, sock="PULL", timeout=30) as client:
        data, meta = client.next()
        kept = data[{source!r}]["image.data"]  # held while every later train arrives
        kept_tid = meta[{source!r}]["timestamp.tid"]
        values, faults, rss_warm = [], None, None
        for i in range(1, trains):
            if i == warm:
                faults, rss_warm = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, rss()
            data, meta = client.next()
            array = data[{source!r}]["image.data"]
            values.append([meta[{source!r}]["timestamp.tid"], float(array[0]), float(array[-1])])
            del data, meta, array
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({{"kept_tid": kept_tid, "kept": [float(kept.min()), float(kept.max())],
                      "values": values, "faults_per_train": faults / (trains - warm),
                      "rss_growth": rss() - rss_warm}}))
""").format(source=SOURCE)


def push_trains(sock: zmq.Socket, n: int, done: threading.Event) -> None:
    """Send ``n`` trains, train ``i`` filled with the value ``i``."""
    for i in range(n):
        data = {SOURCE: {"image.data": np.full(PART // 4, i, dtype=np.float32)}}
        meta = {SOURCE: {"source": SOURCE, "timestamp.tid": FIRST_TID + i}}
        frames = serialize(data, meta, protocol_version="2.2")
        while not done.is_set():  # bounded by the receiver's run (done is set when it ends)
            if sock.poll(100, zmq.POLLOUT):
                sock.send_multipart(frames, copy=False)
                break


def receive_in_fresh_process(env: dict[str, str] | None = None) -> dict:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.linger = 0
    sock.set_hwm(1)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    done = threading.Event()
    sender = threading.Thread(target=push_trains, args=(sock, TRAINS, done), daemon=True)
    sender.start()
    try:
        out = subprocess.run([sys.executable, "-c", RECEIVER, f"tcp://127.0.0.1:{port}",
                              str(TRAINS), "5"], capture_output=True, text=True, timeout=120,
                             env=env, check=True)
    finally:
        done.set()
        sender.join(10)
        sock.close(linger=0)
        ctx.term()
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def tuned() -> dict:
    return receive_in_fresh_process()


def test_large_parts_reuse_memory_instead_of_faulting_it_in(tuned):
    pages = PART / 4096
    assert tuned["faults_per_train"] < pages / 10  # untuned: every page of every train
    assert tuned["rss_growth"] < 3 * PART  # flat: no train's buffer is kept


def test_a_buffer_viewed_by_an_array_is_never_reused(tuned):
    assert tuned["kept_tid"] == FIRST_TID
    assert tuned["kept"] == [0.0, 0.0]  # train 0's array still reads train 0's data
    assert tuned["values"] == [[FIRST_TID + i, float(i), float(i)] for i in range(1, TRAINS)]
