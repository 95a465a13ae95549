"""BridgeServer: sockets, requests, pacing, feeding, stopping, asyncio; real ZeroMQ on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio
from _waiting import wait_for

from kb_streams._serving import NextItem as _NextItem
from kb_streams._serving import Pacer as _Pacer
from kb_streams._serving import Poll as _Poll
from kb_streams._serving import Send as _Send
from kb_streams.protocol import decode
from kb_streams.server import BridgeServer, ServerStats

SOURCE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
READER = {"REP": zmq.REQ, "PUB": zmq.SUB, "PUSH": zmq.PULL}


def make_train(tid: int) -> tuple[dict, dict]:
    image = (np.arange(2 * 8 * 4, dtype=np.uint16).reshape(2, 8, 4) + tid % 1000)
    data = {SOURCE: {"image.data": image, "header.pulseCount": 2}}
    meta = {SOURCE: {"source": SOURCE, "timestamp.tid": tid}}
    return data, meta


def trains(first: int = 10_000, count: int | None = None):
    tid = first
    while count is None or tid < first + count:
        yield make_train(tid)
        tid += 1


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def connect(ctx: zmq.Context, endpoint: str, server_sock: str, timeout: float = 5.0):
    sock = ctx.socket(READER[server_sock])
    sock.linger = 0
    sock.rcvtimeo = int(timeout * 1000)
    if server_sock == "PUB":
        sock.subscribe(b"")
    sock.connect(endpoint)
    return sock


def receive(sock: zmq.Socket, server_sock: str) -> list[zmq.Frame]:
    if server_sock == "REP":
        sock.send(b"next")
    return sock.recv_multipart(copy=False)


def train_id(frames) -> int:
    return decode(frames).train_id


@pytest.mark.parametrize("server_sock", ["REP", "PUSH"])
@pytest.mark.parametrize("protocol", ["2.2", "1.0"])
def test_every_train_arrives_in_order(ctx, server_sock, protocol):
    with BridgeServer(sock=server_sock, protocol_version=protocol) as server:
        reader = connect(ctx, server.endpoint, server_sock)
        server.start(trains(), trains=4)
        messages = [decode(receive(reader, server_sock)) for _ in range(4)]
        assert server.wait(5)
    assert [m.train_id for m in messages] == [10_000, 10_001, 10_002, 10_003]
    assert {m.protocol_version for m in messages} == {protocol}
    expected, _ = make_train(10_003)
    np.testing.assert_array_equal(messages[-1].data[SOURCE]["image.data"],
                                  expected[SOURCE]["image.data"])
    assert messages[-1].data[SOURCE]["header.pulseCount"] == 2
    assert server.stats.trains == 4
    assert server.stats.bytes == sum(m.nbytes for m in messages)
    assert server.stats.last_train_id == 10_003


def test_pub_publishes_to_subscribers(ctx):
    with BridgeServer(sock="PUB") as server:
        reader = connect(ctx, server.endpoint, "PUB")
        server.start(trains(), rate=200)  # endless: a subscriber joins late and drops at HWM 1
        ids = [train_id(receive(reader, "PUB")) for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] >= 10_000


def test_pre_encoded_frames_are_sent_as_they_are(ctx):
    with BridgeServer(sock="REP") as server:
        reader = connect(ctx, server.endpoint, "REP")
        server.start([[b"header", memoryview(b"payload")], [np.arange(3, dtype=np.uint8)]])
        first = [f.bytes for f in receive(reader, "REP")]
        second = [f.bytes for f in receive(reader, "REP")]
    assert first == [b"header", b"payload"]
    assert second == [b"\x00\x01\x02"]
    assert server.stats.bytes == 6 + 7 + 3


def test_endpoints(tcp_endpoint, ipc_endpoint):
    with BridgeServer() as server:  # a free port on loopback
        match = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", server.endpoint)
        assert match and int(match.group(1)) > 0
    port = int(tcp_endpoint.rsplit(":", 1)[1])
    with BridgeServer(port) as server:
        assert server.endpoint == tcp_endpoint
    with BridgeServer(ipc_endpoint, sock="PUSH") as server:
        assert server.endpoint == ipc_endpoint


def test_rep_takes_a_train_only_when_asked(ctx):
    taken: list = []
    with BridgeServer(sock="REP") as server:
        reader = connect(ctx, server.endpoint, "REP")
        server.start(_taken(trains(), taken))
        assert train_id(receive(reader, "REP")) == 10_000
        assert len(taken) == 1  # the next train is made when its request comes: it leaves fresh


def test_bad_request_gets_an_error_reply_and_the_train_is_kept(ctx, caplog):
    with BridgeServer(sock="REP") as server:
        reader = connect(ctx, server.endpoint, "REP")
        server.start(trains(count=2))
        with caplog.at_level(logging.WARNING, logger="kb_streams.server"):
            reader.send(b"give me data")
            assert reader.recv_multipart() == [b"Error: bad request give me data"]
        assert train_id(receive(reader, "REP")) == 10_000
        assert train_id(receive(reader, "REP")) == 10_001
    assert server.stats.bad_requests == 1
    assert "bad request" in caplog.text


def test_dealer_with_requests_in_flight_gets_every_reply(ctx):
    # REP at send HWM 1 silently dropped some replies to pipelined requests (prefetch)
    with BridgeServer(sock="REP") as server:
        dealer = ctx.socket(zmq.DEALER)
        dealer.rcvtimeo = 5000
        dealer.connect(server.endpoint)
        server.start(trains())
        ids = []
        for _ in range(20):
            for _ in range(3):
                dealer.send_multipart([b"", b"next"])
            replies = [dealer.recv_multipart(copy=False) for _ in range(3)]
            assert [r[0].bytes for r in replies] == [b"", b"", b""]
            ids.extend(train_id(r[1:]) for r in replies)
    assert ids == list(range(10_000, 10_060))


def _taken(items, log: list):
    for item in items:
        log.append(item)
        yield item


@pytest.mark.parametrize("state", ["waiting for a request", "no PUSH reader",
                                   "pacing", "idle feed queue"])
def test_stop_is_prompt_and_releases_the_socket(ctx, state):
    sock, rate, items = {"waiting for a request": ("REP", None, trains()),
                         "no PUSH reader": ("PUSH", None, trains()),
                         "pacing": ("PUB", 0.1, trains()),
                         "idle feed queue": ("PUSH", None, None)}[state]
    server = BridgeServer(sock=sock)
    taken: list = []
    server.start(None if items is None else _taken(items, taken), rate=rate)
    assert server.running
    if state == "pacing":  # the first train goes out at once, then 10 s until the next
        deadline = time.monotonic() + 5
        while server.stats.trains == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.stats.trains == 1
    t0 = time.perf_counter()
    server.stop()
    assert time.perf_counter() - t0 < 0.15
    assert not server.running
    assert server._asocket.closed and server._context.closed
    # REP and PUSH take a train only once a reader can have it
    assert len(taken) == (1 if state == "pacing" else 0)
    with pytest.raises(RuntimeError, match="closed"):
        server.start(trains())


def test_rate_paces_without_drift(ctx):
    with BridgeServer(sock="PUSH") as server:
        reader = connect(ctx, server.endpoint, "PUSH")
        server.start(trains(count=11), rate=50)
        arrivals = []
        for _ in range(11):
            receive(reader, "PUSH")
            arrivals.append(time.monotonic())
    span = arrivals[-1] - arrivals[0]
    assert 0.19 <= span < 0.5, span  # 10 periods of 20 ms


def test_pacer_schedule_is_absolute():
    pacer = _Pacer(10)
    assert pacer.delay(100.0) == 0.0
    assert pacer.delay(100.03) == pytest.approx(0.07)  # due at 100.1, not 100.13
    assert pacer.delay(100.1) == pytest.approx(0.1)
    assert pacer.delay(100.9) == 0.0  # fell behind by far: restart instead of bursting
    assert pacer.delay(100.9) == pytest.approx(0.1)
    assert _Pacer(0).delay(1.0) == _Pacer(None).delay(1.0) == 0.0
    with pytest.raises(ValueError):
        _Pacer(-1)


def test_push_waits_for_room_again_when_a_send_finds_none():
    # The reader can go between the poll and the send; sockets cannot stage that race, so the
    # sans-I/O serving loop is driven by hand: each step it asks for, and the outcome it is sent.
    frames = [b"header", b"payload"]
    script = [(_Poll(zmq.POLLOUT), 1), (_NextItem(), frames), (_Send(frames), False),
              (_Poll(zmq.POLLOUT), 0), (_Poll(zmq.POLLOUT), 1), (_Send(frames), True)]
    with BridgeServer(sock="PUSH") as server:
        steps = server._serving(trains=1, rate=None)
        outcome = None
        for expected, answer in script:
            assert steps.send(outcome) == expected
            outcome = answer
        with pytest.raises(StopIteration) as done:
            steps.send(outcome)
    assert done.value.value == 1
    assert (server.stats.trains, server.stats.bytes) == (1, 13)


def test_feed_queue_is_bounded_and_served_in_order(ctx):
    with BridgeServer(sock="PUSH", maxlen=2) as server:
        for tid in (1, 2):  # no reader yet: both stay queued
            server.feed(*make_train(tid), block=False)
        with pytest.raises(queue.Full):
            server.feed(*make_train(3), block=False)
        reader = connect(ctx, server.endpoint, "PUSH")
        server.feed(*make_train(3), timeout=5)
        assert [train_id(receive(reader, "PUSH")) for _ in range(3)] == [1, 2, 3]


def test_a_sent_train_is_not_kept_while_the_next_is_awaited(ctx):
    """Only ZeroMQ holds a train's arrays until they are out, not the serving loop."""
    import weakref

    image = np.arange(10_000, dtype=np.float32)
    sent = weakref.ref(image)
    with BridgeServer(sock="PUSH") as server:
        reader = connect(ctx, server.endpoint, "PUSH")
        server.feed({"SRC": {"image": image}}, {"SRC": {"timestamp.tid": 7}}, timeout=5)
        del image
        assert train_id(receive(reader, "PUSH")) == 7
        # the server now waits for the next train, holding nothing (pyzmq may release
        # zero-copy buffers from its own thread, a moment later)
        assert wait_for(lambda: sent() is None)


def test_feed_while_serving_an_iterable_is_an_error():
    with BridgeServer(sock="PUSH") as server:
        server.start(trains())
        with pytest.raises(RuntimeError, match="iterable"):
            server.feed(*make_train(1), block=False)
        with pytest.raises(RuntimeError, match="already serving"):
            server.serve(trains())


def test_serve_in_this_thread_stops_after_n_trains(ctx):
    with BridgeServer(sock="PUSH") as server:
        reader = connect(ctx, server.endpoint, "PUSH")
        assert server.serve(trains(), trains=3) == 3
        assert [train_id(receive(reader, "PUSH")) for _ in range(3)] == [10_000, 10_001, 10_002]
        assert not server.running


def test_bad_items_are_skipped_and_logged(ctx, caplog):
    items = [make_train(10_001), [], make_train(10_002)]
    items[0][0][SOURCE]["bad"] = object()  # cannot be packed
    with BridgeServer(sock="PUSH") as server, caplog.at_level(logging.WARNING):
        reader = connect(ctx, server.endpoint, "PUSH")
        assert server.serve(items) == 1
        assert train_id(receive(reader, "PUSH")) == 10_002
    assert server.stats.skipped == 2
    assert "train 10001" in caplog.text


def test_error_in_the_iterable_is_raised_by_wait():
    def failing():
        yield make_train(1)
        raise RuntimeError("simulator broke")

    with BridgeServer(sock="PUB") as server:
        server.start(failing())
        with pytest.raises(RuntimeError, match="simulator broke"):
            server.wait(5)


def test_a_given_context_is_left_open(ctx):
    server = BridgeServer(sock="PUSH", context=ctx)
    server.close()
    server.close()  # twice is fine
    assert server._asocket.closed and not ctx.closed


def test_invalid_arguments():
    with pytest.raises(ValueError, match="socket"):
        BridgeServer(sock="PAIR")
    with pytest.raises(ValueError, match="protocol"):
        BridgeServer(protocol_version="2.1")
    with pytest.raises(zmq.ZMQError, match="cannot bind foo"):
        BridgeServer("foo")


def test_server_stats_rates():
    stats = ServerStats()
    for i in range(11):
        stats.record(1000, train_id=i, now=50.0 + i * 0.1)
    assert stats.rate(now=51.0) == pytest.approx(10.0)
    assert stats.byte_rate(now=51.0) == pytest.approx(10_000.0)
    assert stats.rate(now=60.0) == 0.0  # idle


@contextlib.asynccontextmanager
async def push_server_and_async_reader():
    server = BridgeServer(sock="PUSH")
    actx = zmq.asyncio.Context()
    reader = actx.socket(zmq.PULL)
    reader.connect(server.endpoint)
    try:
        yield server, reader
    finally:
        server.close()
        reader.close(linger=0)
        actx.term()


async def receive_ids(reader: zmq.asyncio.Socket, count: int) -> list[int]:
    return [train_id(await asyncio.wait_for(reader.recv_multipart(copy=False), 5))
            for _ in range(count)]


def test_serve_async_with_async_and_plain_iterables():
    async def source(count):
        for item in trains(count=count):
            yield item
            await asyncio.sleep(0)

    async def main():
        async with push_server_and_async_reader() as (server, reader):
            task = asyncio.create_task(server.serve_async(source(3)))
            got = await receive_ids(reader, 3)
            assert await asyncio.wait_for(task, 5) == 3
            task = asyncio.create_task(server.serve_async(trains(first=20), rate=1000))
            got += await receive_ids(reader, 1)
            task.cancel()  # blocked on the HWM now: cancelling ends it
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.running
        return got

    assert asyncio.run(main()) == [10_000, 10_001, 10_002, 20]


def test_serve_async_serves_the_feed_queue():
    async def main():
        async with push_server_and_async_reader() as (server, reader):
            task = asyncio.create_task(server.serve_async(trains=2))
            await asyncio.sleep(0)  # let serve_async claim the queue before feed() would start one
            for tid in (7, 8):
                server.feed(*make_train(tid), block=False)
            got = await receive_ids(reader, 2)
            assert await asyncio.wait_for(task, 5) == 2
        return got

    assert asyncio.run(main()) == [7, 8]


def test_stop_from_another_thread_ends_serve_async():
    async def main(server):
        return await server.serve_async(trains())  # REP without a reader: waits for requests

    server = BridgeServer(sock="REP")
    timer = threading.Timer(0.05, server.stop)
    timer.start()
    t0 = time.perf_counter()
    assert asyncio.run(main(server)) == 0
    assert time.perf_counter() - t0 < 1
    timer.join()
    assert server._asocket.closed


# -- train IDs, whatever the protocol version put the metadata (issue 10, item 4) ---------------


@pytest.mark.parametrize("in_data", [
    {"metadata": {"timestamp.tid": 42}},            # 1.0, 2.0, extra-data's streamer
    {"metadata.timestamp.tid": 42},                  # 2.1, flattened
], ids=["nested", "flat-2.1"])
def test_the_train_id_is_read_wherever_the_metadata_is(ctx, in_data):
    with BridgeServer(sock="PUSH") as server:
        reader = connect(ctx, server.endpoint, "PUSH")
        server.feed({SOURCE: {"x": 1, **in_data}}, timeout=5)
        receive(reader, "PUSH")
        assert wait_for(lambda: server.stats.trains == 1)
    assert server.stats.last_train_id == 42


# -- what a misbehaving reader may cost (issue 9, item 4) ---------------------------------------

_TRAIN_MB = 10
_SERVER_SCRIPT = f"""
import sys
import numpy as np
from kb_streams.server import BridgeServer

def trains():  # a fresh {_TRAIN_MB} MB array per train, as a detector sends
    tid = 0
    while True:
        tid += 1
        yield {{"SRC": {{"image": np.full({_TRAIN_MB} * 2**18, tid, np.float32)}}}}, \\
              {{"SRC": {{"timestamp.tid": tid}}}}

server = BridgeServer(sock="REP").start(trains())
print(server.endpoint, flush=True)
for _ in sys.stdin:  # one line in, the number of trains sent out
    print(server.stats.trains, flush=True)
server.stop()
"""


@contextlib.contextmanager
def _server_process():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        endpoint = child.stdout.readline().strip()
        assert endpoint.startswith("tcp://127.0.0.1:"), endpoint

        def sent() -> int:
            child.stdin.write("\n")
            child.stdin.flush()
            return int(child.stdout.readline())

        yield child, endpoint, sent
    finally:
        child.kill()
        child.wait(10)


def test_a_reader_that_never_reads_pins_a_few_trains_at_most(ctx):
    """500 b'next' from one DEALER that never reads: the server keeps at most a few trains."""
    psutil = pytest.importorskip("psutil")
    with _server_process() as (child, endpoint, sent):
        polite = connect(ctx, endpoint, "REP", timeout=10)
        receive(polite, "REP")  # the server has made and sent a train: its allocator is warm
        before = psutil.Process(child.pid).memory_info().rss

        greedy = ctx.socket(zmq.DEALER)
        greedy.linger = 0
        greedy.rcvhwm = 1  # so the replies back up in the server, not in this process
        greedy.connect(endpoint)
        for _ in range(500):
            greedy.send_multipart([b"", b"next"])
        assert wait_for(lambda: sent() >= 501, timeout=60)
        growth = psutil.Process(child.pid).memory_info().rss - before

        assert train_id(receive(polite, "REP")[0:]) > 0  # the server still serves others
        greedy.close()
    # before: 64 replies queued for the DEALER, +640 MB; now 4 (+ what is in flight)
    assert growth < 12 * _TRAIN_MB * 2**20, f"server grew by {growth / 2**20:.0f} MB"


def test_an_oversized_request_disconnects_its_sender_unread(ctx):
    with BridgeServer(sock="REP") as server:
        server.start(trains())
        big = ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(server.endpoint)
        big.send_multipart([b"", b"x" * 1_000_000])
        polite = connect(ctx, server.endpoint, "REP")
        assert train_id(receive(polite, "REP")) >= 10_000
        assert server.stats.bad_requests == 0  # never received: ZeroMQ dropped the connection
