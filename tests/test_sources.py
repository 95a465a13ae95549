"""The streamz source node ``Stream.from_karabo_bridge`` against real bridge servers on loopback.

Servers are the reference ``karabo_bridge.ServerInThread`` (an independent peer) or raw ZeroMQ
sockets where a test needs full control of what goes on the wire.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import zmq
from _waiting import wait_for
from karabo_bridge import ServerInThread, serialize
from streamz import Stream

from kb_streams.sources import SourceStats, from_karabo_bridge
from kb_streams.train import Train

SRC = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
FIRST_TID = 10_000


def train(tid: int, n: int = 64, when: float | None = None) -> tuple[dict, dict]:
    """One small train with timestamps (``when``: epoch seconds; default now)."""
    when = time.time() if when is None else when
    sec = int(when)
    frac = f"{int((when - sec) * 1e18):018d}"
    data = {SRC: {"image.data": np.full(n, tid, dtype=np.uint16), "header.pulseCount": n}}
    meta = {SRC: {"source": SRC, "timestamp": when, "timestamp.tid": tid,
                  "timestamp.sec": str(sec), "timestamp.frac": frac}}
    return data, meta


@contextmanager
def reference_server(endpoint: str, sock: str = "REP", tids=range(FIRST_TID, FIRST_TID + 10),
                     rate: float | None = None, n: int = 64) -> Iterator[ServerInThread]:
    """The reference server, fed from a thread (at ``rate`` Hz, with fresh timestamps)."""
    server = ServerInThread(endpoint, sock=sock, maxlen=2)
    server.start()
    stop = threading.Event()

    def feed() -> None:
        for tid in tids:
            if stop.is_set():
                return
            try:
                server.feed(*train(tid, n), timeout=0.2)
            except Exception:
                if stop.is_set():
                    return
            if rate:
                stop.wait(1 / rate)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield server
    finally:
        stop.set()
        feeder.join(2)
        server.stop()


@pytest.fixture
def sources() -> Iterator[list[from_karabo_bridge]]:
    """Collects the sources a test starts, and stops them whatever happens."""
    started: list[from_karabo_bridge] = []
    yield started
    for source in started:
        source.stop()
    for source in started:
        assert source.join(3), "source did not stop within 3 s"


def test_entry_point_registers_the_source_in_a_fresh_interpreter():
    code = (
        "import streamz, sys\n"
        "assert 'kb_streams' not in sys.modules\n"
        "s = streamz.Stream.from_karabo_bridge('tcp://127.0.0.1:1', timeout=0.1)\n"
        "print(type(s).__module__, type(s).__name__, s.stopped)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["kb_streams.sources", "from_karabo_bridge", "True"]


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sock"):
        Stream.from_karabo_bridge("tcp://127.0.0.1:1", sock="DEALER")
    with pytest.raises(ValueError, match="timeout"):
        Stream.from_karabo_bridge("tcp://127.0.0.1:1", timeout=0)
    assert Stream.from_karabo_bridge("tcp://127.0.0.1:1", sock="sub").latest is True
    assert Stream.from_karabo_bridge("tcp://127.0.0.1:1").latest is False


def test_req_emits_trains_in_order_and_awaits_the_graph(tcp_endpoint, sources):
    busy = []  # (start, end) of each async sink call
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=0.2)
    sources.append(source)

    async def slow_sink(item: Train) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.02)
        busy.append((start, time.monotonic(), item.train_id))

    source.sink(slow_sink)
    kinds = source.map(type).sink_to_list()
    with reference_server(tcp_endpoint, tids=range(FIRST_TID, FIRST_TID + 8)):
        source.start()
        assert wait_for(lambda: len(busy) == 8)
        stats = source.stats
    assert [tid for *_, tid in busy] == list(range(FIRST_TID, FIRST_TID + 8))
    # the source waited for each async sink call to finish before emitting the next train
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(busy, busy[1:], strict=False))
    assert set(kinds) == {Train}
    assert isinstance(stats, SourceStats)
    assert (stats.trains, stats.errors, stats.decode_errors) == (8, 0, 0)
    assert stats.bytes > 8 * 64 * 2
    assert stats.last_train_id == FIRST_TID + 7
    assert 0 <= stats.age_last < 5 and stats.age_mean == stats.age_mean


@contextmanager
def raw_socket(endpoint: str, kind: int) -> Iterator[zmq.Socket]:
    """A bare ZeroMQ socket bound to ``endpoint``: full control of what goes on the wire."""
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.bind(endpoint)
    try:
        yield sock
    finally:
        sock.close()
        ctx.term()


def test_stop_interrupts_the_wait_for_a_train(tcp_endpoint, sources):
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=30)
    sources.append(source)
    with raw_socket(tcp_endpoint, zmq.ROUTER) as server:  # takes requests, never answers
        for _ in range(2):  # stop, and stop again after a restart
            source.start()
            assert server.poll(3000), "no request arrived"  # the source is waiting for a train
            server.recv_multipart()
            started = time.monotonic()
            source.stop()
            assert source.join(2)
            assert time.monotonic() - started < 0.3  # far below the 30 s timeout
            assert source.stopped and source.finished


def test_restarted_server_is_picked_up_without_rebuilding(tcp_endpoint, sources):
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=0.2)
    sources.append(source)
    ids = source.map(lambda t: t.train_id).sink_to_list()
    with reference_server(tcp_endpoint, tids=range(100, 103)):
        source.start()
        assert wait_for(lambda: len(ids) == 3)
    # the first server is gone (with our request pending); a new one binds the same endpoint
    with reference_server(tcp_endpoint, tids=range(200, 203)):
        assert wait_for(lambda: len(ids) == 6, timeout=10)
    assert ids == [100, 101, 102, 200, 201, 202]
    assert not source.stopped


def test_bad_train_is_counted_and_skipped(tcp_endpoint, sources):
    with raw_socket(tcp_endpoint, zmq.PUSH) as push:
        source = Stream.from_karabo_bridge(tcp_endpoint, sock="PULL", timeout=0.2)
        sources.append(source)
        ids = source.map(lambda t: t.train_id).sink_to_list()
        source.start()
        push.send_multipart(serialize(*train(1)))
        push.send_multipart([b"\x81\xa3not", b"a train", b"at all"])  # 3 parts: invalid
        push.send_multipart(serialize(*train(3)))
        assert wait_for(lambda: len(ids) == 2)
        assert ids == [1, 3]
        assert source.stats.decode_errors == 1
        assert not source.stopped


def test_error_in_the_graph_is_counted_and_other_branches_go_on(tcp_endpoint, sources, caplog):
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=0.2)
    sources.append(source)

    def fragile(t: Train) -> int:
        if t.train_id == FIRST_TID + 1:
            raise ValueError("cannot analyse this one")
        return t.train_id

    survived = source.map(fragile).sink_to_list()
    everything = source.map(lambda t: t.train_id).sink_to_list()
    with reference_server(tcp_endpoint, tids=range(FIRST_TID, FIRST_TID + 4)):
        source.start()
        assert wait_for(lambda: len(everything) == 4)
    assert survived == [FIRST_TID, FIRST_TID + 2, FIRST_TID + 3]
    assert everything == list(range(FIRST_TID, FIRST_TID + 4))
    assert source.stats.errors == 1
    assert source.stats.in_flight == 0
    assert f"Train {FIRST_TID + 1}: error in the graph" in caplog.text


def test_crashed_run_leaves_the_source_restartable(sources):
    source = Stream.from_karabo_bridge("tcp://127.0.0.1:1", timeout=0.1, hwm=-1)
    sources.append(source)
    source.start()
    assert source.join(3)  # the client could not be created: run() ended
    assert source.stopped
    source.client_kwargs = {}  # fix it and start again
    source.start()
    assert wait_for(lambda: source.stats.timeouts >= 1, timeout=3)
    assert not source.stopped


def test_max_in_flight_caps_trains_anywhere_in_the_graph(tcp_endpoint, sources):
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=0.2, max_in_flight=2)
    sources.append(source)
    seen_in_flight = []
    release = threading.Event()

    def slow(t: Train) -> int:
        seen_in_flight.append(source.stats.in_flight)
        release.wait(0.05)
        return t.train_id

    # buffer(10) would let the source run 10 trains ahead; the cap allows 2
    done = source.buffer(10).map(slow).sink_to_list()
    with reference_server(tcp_endpoint, tids=range(FIRST_TID, FIRST_TID + 8)):
        source.start()
        assert wait_for(lambda: len(done) == 8)
    assert done == list(range(FIRST_TID, FIRST_TID + 8))
    assert max(seen_in_flight) <= 2
    assert wait_for(lambda: source.stats.in_flight == 0, timeout=1)


def test_stop_is_prompt_while_the_cap_holds_the_source_back(tcp_endpoint, sources):
    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=0.2, max_in_flight=1)
    sources.append(source)
    entered = threading.Event()

    async def stuck(t: Train) -> None:
        entered.set()
        await asyncio.Event().wait()  # never returns: the train stays in the graph

    source.buffer(5).sink(stuck)
    with reference_server(tcp_endpoint, tids=range(FIRST_TID, FIRST_TID + 4)):
        source.start()
        assert entered.wait(5)
        assert wait_for(lambda: source.stats.trains == 1 and source.stats.in_flight == 1)
        started = time.monotonic()
        source.stop()
        assert source.join(3)  # gives up on the stuck train once nothing moves for 0.5 s
        assert time.monotonic() - started < 1.5
    assert source.stats.trains == 1  # the cap held back every further train


def mean_age(ages: list[float]) -> float:
    return sum(ages) / len(ages)


@pytest.mark.parametrize("latest", [True, False])
def test_sub_keeps_data_fresh_under_a_slow_consumer(tcp_endpoint, sources, latest):
    source = Stream.from_karabo_bridge(tcp_endpoint, sock="SUB", timeout=0.2, latest=latest)
    sources.append(source)
    ages: list[float] = []

    def slow(t: Train) -> None:
        ages.append(source.stats.age_last)
        time.sleep(0.25)  # a consumer at 4 Hz behind a 15 Hz publisher

    source.sink(slow)
    with reference_server(tcp_endpoint, sock="PUB", tids=range(FIRST_TID, FIRST_TID + 200),
                          rate=15, n=500_000):  # 1 MB trains
        source.start()
        assert wait_for(lambda: len(ages) >= 9, timeout=6)
    steady = ages[3:9]
    if latest:
        assert max(steady) < 0.3, steady
        assert source.stats.dropped + source.stats.gaps > 0
    else:
        assert mean_age(steady) > 0.3, steady  # HWM 1 alone lets trains queue up and age


def test_runs_inside_a_running_asyncio_loop(tcp_endpoint):
    async def main() -> list[int]:
        source = Stream.from_karabo_bridge(tcp_endpoint, asynchronous=True, timeout=0.2)
        ids = source.map(lambda t: t.train_id).sink_to_list()
        source.start()
        deadline = time.monotonic() + 5
        while len(ids) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        source.stop()
        while not source.finished and time.monotonic() < deadline + 2:
            await asyncio.sleep(0.01)
        return ids

    with reference_server(tcp_endpoint, tids=range(FIRST_TID, FIRST_TID + 3)):
        ids = asyncio.run(main())
    assert ids == list(range(FIRST_TID, FIRST_TID + 3))
