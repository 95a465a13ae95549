"""The offload node on a real process cluster: order, in-flight bound, errors, dead workers."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
import weakref

import numpy as np
import pytest
import xarray as xr
from _dask_cluster import ProcessCluster
from _waiting import wait_until
from distributed import Client, Event, Queue, rejoin, secede
from streamz import Stream
from tornado.ioloop import IOLoop

from kb_streams.cluster import connect
from kb_streams.dask import offload
from kb_streams.offload import Offload, OffloadError
from kb_streams.train import train_id_of

FIRST = 10_000



def labelled(tid: int, size: int = 4) -> xr.DataArray:
    return xr.DataArray(np.full(size, tid - FIRST, np.float64), dims="pulse",
                        coords={"trainId": tid})


def total(x: xr.DataArray, fail_on: int | None = None, delay: float = 0.0) -> tuple[int, float]:
    tid = int(x.trainId)
    if tid == fail_on:
        raise ValueError(f"cannot integrate train {tid}")
    time.sleep(delay)
    return tid, float(x.sum())


def gated(x: int, gate: str, done: str) -> int:
    """Item 0 waits for the gate (leaving its worker thread to others); the others report on a
    queue that they are done."""
    if x == 0:
        secede()
        Event(gate).wait(timeout=60)
        rejoin()
    else:
        Queue(done).put(x, timeout=30)
    return x


def test_results_in_order_and_error_records(cluster: ProcessCluster) -> None:
    client = cluster.client
    source = Stream()
    node = source.offload(total, n=4, client=client, fail_on=FIRST + 5, delay=0.02)
    results, errors = node.sink_to_list(), node.errors.sink_to_list()
    for i in range(12):
        source.emit(labelled(FIRST + i))
    node.drain(timeout=60)
    assert [tid for tid, _ in results] == [FIRST + i for i in range(12) if i != 5]
    assert results[1] == (FIRST + 1, 4.0)
    (error,) = errors
    assert isinstance(error, OffloadError)
    assert error.train_id == FIRST + 5 and error.index == 5 and error.func == "total"
    assert isinstance(error.exception, ValueError) and error.exception.__traceback__ is None
    assert "cannot integrate train 10005" in error.traceback and "in total" in error.traceback
    assert str(error).startswith("train 10005: total failed: ValueError")
    stats = node.stats
    assert node.timeout == 60  # the default: an item never waits forever
    assert (stats.accepted, stats.completed, stats.failed, stats.in_flight) == (12, 11, 1, 0)
    assert stats.max_in_flight <= 4
    assert node.current_value is None


def test_in_flight_bound_backpressure_and_order() -> None:
    """n items in flight, the next emit stays pending; a slow head holds back the others."""
    async def main() -> None:
        async with connect(n_workers=2, asynchronous=True, set_as_default=False) as client:
            gate, done = f"gate-{uuid.uuid4().hex}", f"done-{uuid.uuid4().hex}"
            finished = await Queue(done, client=client)
            source = Stream(asynchronous=True)
            node = source.offload(gated, n=4, client=client, gate=gate, done=done)
            results = node.sink_to_list()
            for x in range(4):
                await asyncio.wait_for(source.emit(x), 10)  # accepted at once
            fifth = asyncio.ensure_future(source.emit(4))
            assert sorted([await finished.get(timeout=30) for _ in range(3)]) == [1, 2, 3]
            # items 1-3 are done but item 0 is not: nothing emitted, the 5th item waits
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(fifth), 0.3)
            assert results == [] and node.stats.in_flight == 4
            await Event(gate, client=client).set()
            await asyncio.wait_for(fifth, 30)
            await node.drain(timeout=30)
            assert results == [0, 1, 2, 3, 4]
            assert node.stats.max_in_flight == 4

    asyncio.run(asyncio.wait_for(main(), 90))


def test_unordered_emits_as_completed(cluster: ProcessCluster) -> None:
    client = cluster.client
    gate, done = f"gate-{uuid.uuid4().hex}", f"done-{uuid.uuid4().hex}"
    Queue(done, client=client)
    source = Stream()
    node = source.offload(gated, n=4, ordered=False, client=client, gate=gate, done=done)
    results = node.sink_to_list()
    for x in range(4):
        source.emit(x)
    wait_until(lambda: len(results) == 3, what="the three ungated results")
    assert sorted(results) == [1, 2, 3]
    Event(gate, client=client).set()
    node.drain(timeout=30)
    assert results[-1] == 0 and len(results) == 4


def test_timeout_reports_a_stuck_item_and_goes_on(cluster: ProcessCluster) -> None:
    client = cluster.client
    gate, done = f"gate-{uuid.uuid4().hex}", f"done-{uuid.uuid4().hex}"
    Queue(done, client=client)
    source = Stream()
    node = source.offload(gated, n=2, client=client, timeout=1.0, gate=gate, done=done)
    results, errors = node.sink_to_list(), node.errors.sink_to_list()
    try:
        for x in range(4):
            source.emit(x)
        node.drain(timeout=30)
    finally:
        Event(gate, client=client).set()  # free the worker thread
    assert results == [1, 2, 3]
    (error,) = errors
    assert error.index == 0 and isinstance(error.exception, TimeoutError)
    assert node.stats.timed_out == 1


@pytest.mark.parametrize("retries", [0, 1])
def test_killed_worker_costs_at_most_its_items(cluster: ProcessCluster, retries: int) -> None:
    """SIGKILL a worker mid-stream: large scattered items; nothing hangs, order is kept, and
    the lost items are re-submitted (retries=1) or reported (retries=0)."""
    client = Client(cluster.address, set_as_default=False, direct_to_workers=True, timeout=30)
    try:
        n_items = 16
        source = Stream()
        node = source.offload(total, n=4, client=client, retries=retries, timeout=30, delay=0.15)
        results, errors = node.sink_to_list(), node.errors.sink_to_list()
        victim = "w" + str(max(int(name[1:]) for name in cluster.workers))

        def kill_when_busy() -> None:
            wait_until(lambda: len(results) >= 3, what="the first results")
            cluster.kill(victim)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        started = time.monotonic()
        for i in range(n_items):
            source.emit(labelled(FIRST + i, size=250_000))  # 2 MB: scattered, not in the task
        node.drain(timeout=60)
        killer.join(timeout=60)
        assert not killer.is_alive() and victim not in cluster.workers
        assert time.monotonic() - started < 60
        done = [tid for tid, _ in results]
        lost = sorted(e.train_id for e in errors)
        assert done == sorted(done)
        assert sorted(done + lost) == [FIRST + i for i in range(n_items)]
        assert node.stats.bytes_scattered >= len(done) * 2_000_000
        assert node.stats.bytes_in_tasks == 0
        if retries:
            assert errors == [] and len(done) == n_items
        else:
            assert len(lost) <= 4  # at most the items in flight
            assert node.stats.resubmitted == 0
    finally:
        client.close(timeout=10)


def test_graph_on_other_loops_than_the_client(cluster: ProcessCluster) -> None:
    """A graph on its own loop thread (built before any client) and an async graph in a running
    loop both hand their work to a sync client's loop thread."""
    loop = IOLoop(make_current=False)
    thread = threading.Thread(target=loop.start, daemon=True)
    thread.start()
    try:
        source = Stream(loop=loop)  # e.g. a source created before the Dask client
        node = source.offload(total, client=cluster.client)
        assert node.loop is loop
        results = node.sink_to_list()
        for i in range(3):
            source.emit(labelled(FIRST + i))
        node.drain(timeout=30)
        assert [tid for tid, _ in results] == [FIRST, FIRST + 1, FIRST + 2]
    finally:
        loop.add_callback(loop.stop)
        thread.join(timeout=10)

    async def main() -> list:
        source = Stream(asynchronous=True)
        node = source.offload(total, client=cluster.client)
        out = node.sink_to_list()
        for i in range(3):
            await source.emit(labelled(FIRST + i))
        await node.drain(timeout=30)
        return out

    assert [tid for tid, _ in asyncio.run(asyncio.wait_for(main(), 60))] == [
        FIRST, FIRST + 1, FIRST + 2]


def test_no_workers_gives_timeout_records_not_a_stall(caplog: pytest.LogCaptureFixture) -> None:
    """A cluster without workers: every item (sent in its task, or scattered) becomes a clear
    TimeoutError record after ``timeout``, with one warning."""
    async def main() -> tuple[Offload, list]:
        async with connect(n_workers=0, processes=False, asynchronous=True,
                           set_as_default=False) as client:
            source = Stream(asynchronous=True)
            node = source.offload(total, n=2, client=client, timeout=1.0)
            errors = node.errors.sink_to_list()
            await source.emit(labelled(FIRST))  # small: inside the task message
            await source.emit(labelled(FIRST + 1, size=250_000))  # 2 MB: scattered
            await node.drain(timeout=30)
            return node, errors

    with caplog.at_level(logging.WARNING, logger="kb_streams.offload"):
        started = time.monotonic()
        node, errors = asyncio.run(asyncio.wait_for(main(), 60))
    assert time.monotonic() - started < 30
    assert sorted(e.train_id for e in errors) == [FIRST, FIRST + 1]
    for error in errors:
        assert isinstance(error.exception, TimeoutError)
        assert "within 1.0 s" in str(error) and "no workers" in str(error), str(error)
    assert (node.stats.timed_out, node.stats.failed, node.stats.in_flight) == (2, 2, 0)
    assert node.stats.bytes_scattered == 0  # the scatter never happened
    assert caplog.text.count("has no workers; 2 item(s) wait each for at most 1.0 s") == 1


def test_without_timeout_items_wait_for_workers(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """``timeout=None``: an item waits (with a warning) until a worker joins, then completes."""
    monkeypatch.setattr(offload, "STALL_CHECK", 0.1)

    async def main() -> list:
        async with connect(n_workers=0, processes=False, asynchronous=True,
                           set_as_default=False) as client:
            source = Stream(asynchronous=True)
            node = source.offload(total, client=client, timeout=None)
            results = node.sink_to_list()
            await source.emit(labelled(FIRST))
            for _ in range(200):  # bounded: 10 s
                if "has no workers" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "until workers join" in caplog.text and results == []
            client.cluster.scale(1)
            await client.wait_for_workers(1, timeout=30)
            await node.drain(timeout=30)
            return results

    with caplog.at_level(logging.WARNING, logger="kb_streams.offload"):
        assert asyncio.run(asyncio.wait_for(main(), 60)) == [(FIRST, 0.0)]


def test_closed_client_gives_error_records(cluster: ProcessCluster) -> None:
    client = Client(cluster.address, set_as_default=False, timeout=30)
    loop = IOLoop(make_current=False)
    thread = threading.Thread(target=loop.start, daemon=True)
    thread.start()
    try:
        source = Stream(loop=loop)
        node = source.offload(total, client=client)
        errors = node.errors.sink_to_list()
        client.close(timeout=10)
        source.emit(labelled(FIRST))
        node.drain(timeout=30)
        (error,) = errors
        assert isinstance(error.exception, RuntimeError) and "closed" in str(error)
    finally:
        loop.add_callback(loop.stop)
        thread.join(timeout=10)


def test_stopped_client_loop_gives_error_records(cluster: ProcessCluster) -> None:
    """The client's event loop stops while an item is on it: the graph gets an error record
    within about a second, not an eternal wait."""
    client_loop = asyncio.new_event_loop()

    def run_client_loop() -> threading.Thread:
        thread = threading.Thread(target=client_loop.run_forever, daemon=True)
        thread.start()
        return thread

    def on_client_loop(coro):
        return asyncio.run_coroutine_threadsafe(coro, client_loop).result(30)

    async def make_client() -> Client:
        return await Client(cluster.address, asynchronous=True, set_as_default=False)

    async def close_client() -> None:
        await client.close()

    runner = run_client_loop()
    client = on_client_loop(make_client())
    graph_loop = IOLoop(make_current=False)
    graph = threading.Thread(target=graph_loop.start, daemon=True)
    graph.start()
    try:
        source = Stream(loop=graph_loop)
        node = source.offload(total, client=client, timeout=None, delay=1.0)
        errors = node.errors.sink_to_list()
        source.emit(labelled(FIRST))
        client_loop.call_soon_threadsafe(client_loop.stop)
        runner.join(timeout=10)
        node.drain(timeout=10)
        (error,) = errors
        assert isinstance(error.exception, RuntimeError) and "loop stopped" in str(error)
    finally:
        if not runner.is_alive():
            runner = run_client_loop()
        on_client_loop(close_client())
        client_loop.call_soon_threadsafe(client_loop.stop)
        runner.join(timeout=10)
        graph_loop.add_callback(graph_loop.stop)
        graph.join(timeout=10)


def test_offload_keeps_no_reference_to_items(cluster: ProcessCluster) -> None:
    source = Stream()
    node = source.offload(np.sum, client=cluster.client)
    results = node.sink_to_list()
    item = np.ones(100_000)
    ref = weakref.ref(item)
    source.emit(item)
    del item
    node.drain(timeout=30)
    gc.collect()
    assert results == [100_000.0]
    source.current_value = None  # a plain streamz node pins its last item; ours must not
    gc.collect()
    assert ref() is None and node.current_value is None


def test_needs_a_client_and_sane_options() -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        Offload(Stream(), abs, n=0, client=object())
    with pytest.raises(ValueError, match="scatter must be"):
        Offload(Stream(), abs, scatter="sometimes", client=object())
    with pytest.raises(ValueError, match="timeout must be None or"):
        Offload(Stream(), abs, timeout=0, client=object())


def test_train_id_of() -> None:
    class WithId:
        train_id = 7

    assert train_id_of(WithId()) == 7
    assert train_id_of(labelled(FIRST + 3)) == FIRST + 3
    assert train_id_of(xr.DataArray([1, 2], dims="trainId", coords={"trainId": [1, 2]})) is None
    assert train_id_of(({"A": {}}, {"A": {"timestamp.tid": 9}})) == 9
    assert train_id_of({"trainId": 11}) == 11 and train_id_of(1.5) is None
