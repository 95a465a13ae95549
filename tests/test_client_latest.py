"""Keep-newest under a slow consumer: the train got is the newest, skipped trains are 'dropped'.

A PUB server sends 2 MB trains at 20 Hz. The consumer is slow by waiting, after each train, until
the server has sent ``BEHIND`` more (an event, not a sleep). Then the train it gets must be one of
the newest sent: before the keep-newest receiver, it was the one at the head of the backlog that
ZeroMQ and the kernel had queued (``BEHIND`` or more trains old), and the trains the publisher
dropped for it were counted as gaps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from _waiting import wait_for, wait_until
from streamz import Stream

from kb_streams.client import AsyncClient, Client
from kb_streams.server import BridgeServer

SRC = "DET/0"
BEHIND = 8  # trains the server sends while the consumer works on one
TOLERANCE = 2  # trains newer than the one got that may still be on their way
ROUNDS = 4


def fresh_trains(nbytes: int = 2_000_000) -> Iterator[tuple[dict, dict]]:
    image = np.ones(nbytes, np.uint8)  # sent zero-copy, never modified
    tid = 1000
    while True:
        yield {SRC: {"image.data": image}}, {SRC: {"timestamp": time.time(), "timestamp.tid": tid}}
        tid += 1


@pytest.fixture
def publisher(tcp_endpoint) -> Iterator[BridgeServer]:
    server = BridgeServer(tcp_endpoint, sock="PUB")
    server.start(fresh_trains(), rate=20)
    yield server
    server.stop()


def work_until_server_is_ahead(server: BridgeServer) -> int:
    """The slow consumer's work: lasts until the server sent BEHIND more trains; the newest ID."""
    target = server.stats.trains + BEHIND
    wait_until(lambda: server.stats.trains >= target, timeout=30, what=f"{BEHIND} trains sent")
    return server.stats.last_train_id


def check_accounting(got: list[int], stats) -> None:
    assert got == sorted(got)
    skipped = got[-1] - got[0] + 1 - len(got)
    assert stats.dropped + stats.gaps == skipped
    assert stats.dropped >= skipped - TOLERANCE * ROUNDS  # skipped on purpose: dropped, no gap


def test_client_next_latest_gets_one_of_the_newest_trains(publisher):
    got = []
    with Client(publisher.endpoint, sock="SUB", timeout=30) as client:
        got.append(client.next_message(latest=True).train_id)
        client.stats.gaps = client.stats.dropped = 0  # counted from the first train got
        for _ in range(ROUNDS):
            newest_sent = work_until_server_is_ahead(publisher)
            got.append(client.next_message(latest=True).train_id)
            assert got[-1] >= newest_sent - TOLERANCE, (got, newest_sent)
        check_accounting(got, client.stats)


def test_async_client_next_latest_gets_one_of_the_newest_trains(publisher):
    async def main() -> None:
        got = []
        async with AsyncClient(publisher.endpoint, sock="SUB", timeout=30) as client:
            got.append((await client.next_message(latest=True)).train_id)
            client.stats.gaps = client.stats.dropped = 0
            for _ in range(ROUNDS):
                newest_sent = await asyncio.to_thread(work_until_server_is_ahead, publisher)
                got.append((await client.next_message(latest=True)).train_id)
                assert got[-1] >= newest_sent - TOLERANCE, (got, newest_sent)
            check_accounting(got, client.stats)

    asyncio.run(main())


def test_source_sub_gets_one_of_the_newest_trains_under_a_slow_sink(publisher):
    source = Stream.from_karabo_bridge(publisher.endpoint, sock="SUB", timeout=5)
    got, newest = [], []
    done = threading.Event()

    def slow(train) -> None:
        got.append(train.train_id)
        if len(got) == 1:
            return
        if len(got) > ROUNDS:
            done.set()
            return
        newest.append(work_until_server_is_ahead(publisher))  # blocks the graph meanwhile

    source.sink(slow)
    source.start()
    try:
        assert done.wait(60)
    finally:
        source.stop()
        assert source.join(5)
    for newest_sent, train_id in zip(newest, got[2:], strict=False):
        assert train_id >= newest_sent - TOLERANCE, (got, newest)
    stats = source.stats
    assert stats.dropped > 0 and stats.dropped >= stats.gaps


def test_close_stops_the_keep_newest_thread(publisher):
    def newest_threads() -> int:
        return sum(t.name == "kb-streams-newest" for t in threading.enumerate())

    before = newest_threads()
    client = Client(publisher.endpoint, sock="SUB", timeout=30)
    client.next(latest=True)
    assert newest_threads() == before + 1
    client.close()
    assert wait_for(lambda: newest_threads() == before, timeout=5)
