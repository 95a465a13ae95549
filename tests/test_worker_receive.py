"""Receiving on the workers, on a real process cluster fed by real bridge servers (loopback)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import _waiting
import numpy as np
import pytest
from _dask_cluster import ProcessCluster
from _waiting import wait_for
from distributed import Event, get_worker
from streamz import Stream

from kb_streams._receive_order import ReceiveOrder
from kb_streams.cluster import connect
from kb_streams.reduce import RunningStats, merge_all
from kb_streams.server import BridgeServer
from kb_streams.worker_receive import (
    Shard,
    from_karabo_bridge_on_workers,
    module_shards,
)

FIRST = 10_000
MODULE = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"



def module_data(tid: int, module: int) -> np.ndarray:
    """(fs, ss, pulse) like the online pipeline, reproducible per train and module."""
    return np.random.default_rng([tid, module]).random((16, 8, 2), dtype=np.float32)


def trains(n: int, modules=range(4), first: int = FIRST) -> Iterator[tuple[dict, dict]]:
    for tid in range(first, first + n):
        data = {MODULE.format(m): {"image.data": module_data(tid, m)} for m in modules}
        yield data, {src: {"timestamp.tid": tid} for src in data}


def module_sums(train, fail_on: int | None = None, delay: float = 0.0) -> tuple:
    """Worker side: per-module sums of one train (a small result)."""
    if train.train_id == fail_on:
        raise ValueError(f"bad train {train.train_id}")
    time.sleep(delay)
    sums = {src: float(train[src, "image.data"].ndarray().sum(dtype=np.float64))
            for src in train.sources}
    return train.train_id, get_worker().name, sums


def expected_sums(tid: int, modules=range(4)) -> dict:
    return {MODULE.format(m): float(module_data(tid, m).sum(dtype=np.float64)) for m in modules}


def train_stats(train) -> tuple[str, RunningStats]:
    """Worker side: this train's partial per-pixel statistics (and where they were made)."""
    stack = np.stack([train[src, "image.data"].ndarray() for src in train.sources])
    return get_worker().name, RunningStats().update(stack)


def slow_on(train, slow: frozenset = frozenset(), delay: float = 0.0) -> tuple:
    """Worker side: the train ID and worker, after ``delay`` s for the trains in ``slow``."""
    if train.train_id in slow:
        time.sleep(delay)
    return train.train_id, get_worker().name


def block_until(started: str, release: str) -> None:
    """Worker side: hold the worker's only thread until the ``release`` event is set."""
    Event(started).set()
    Event(release).wait(60)


def count_receivers() -> int:
    from kb_streams import _worker_receiver

    return len(_worker_receiver._receivers)


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:
    _waiting.wait_until(condition, timeout, what)


def stop(source: from_karabo_bridge_on_workers) -> None:
    source.stop()
    assert source.finished.wait(20), "the source did not stop"


@contextlib.contextmanager
def running(source: from_karabo_bridge_on_workers) -> Iterator[None]:
    """The source started for the block, then stopped (and checked to have stopped)."""
    source.start()
    try:
        yield
    finally:
        stop(source)


@pytest.mark.parametrize(("server_sock", "sock", "n_trains", "rate"),
                         [("REP", "REQ", 30, None), ("PUSH", "PULL", 16, 25)])
def test_trains_reduced_on_workers_in_order(cluster: ProcessCluster, server_sock: str, sock: str,
                                            n_trains: int, rate: float | None) -> None:
    """REQ on REP and PULL on PUSH: the bridge hands different trains to the two workers."""
    client = cluster.client
    client.run(__import__, __name__)  # so that both workers connect at about the same time
    fail_on = FIRST + 7
    with BridgeServer(sock=server_sock) as server:
        # PUSH sends to whichever receivers are connected, so pace it a little
        server.start(trains(n_trains), rate=rate)
        source = Stream.from_karabo_bridge_on_workers(
            server.endpoint, module_sums, client, sock=sock, timeout=0.5, wait=5,
            kwargs={"fail_on": fail_on, "delay": 0.01})
        results, errors = source.sink_to_list(), source.errors.sink_to_list()
        with running(source):
            wait_until(lambda: len(results) + len(errors) >= n_trains, what="all trains")
    tids = [tid for tid, _, _ in results]
    assert tids == [FIRST + i for i in range(n_trains) if FIRST + i != fail_on]
    assert all(sums == expected_sums(tid) for tid, _, sums in results)
    assert {worker for _, worker, _ in results} == set(cluster.workers)  # both received trains
    (error,) = errors
    assert error.train_id == fail_on and isinstance(error.exception, ValueError)
    assert error.receiver in ("r0", "r1") and "bad train" in error.traceback
    stats = source.stats
    assert (stats.emitted, stats.errors, stats.late, stats.incomplete) == (n_trains - 1, 1, 0, 0)
    assert stats.skipped == 1  # the failed train
    # only the small results crossed into this process
    assert stats.bytes_received >= n_trains * 4 * 16 * 8 * 2 * 4
    assert stats.bytes_results < stats.bytes_received / 4
    # the workers' bridge clients were closed on stop
    assert set(client.run(count_receivers).values()) == {0}


def test_killed_worker_mid_stream(cluster: ProcessCluster) -> None:
    """SIGKILL a receiving worker: the other goes on, order holds, at most its trains are lost,
    and each lost train is an error record naming the worker (issue 9 item 7)."""
    n_trains = 40
    with BridgeServer(sock="REP") as server:
        server.start(trains(n_trains))
        source = Stream.from_karabo_bridge_on_workers(
            server.endpoint, module_sums, cluster.client, n=2, timeout=0.5, wait=2,
            kwargs={"delay": 0.08})
        results, errors = source.sink_to_list(), source.errors.sink_to_list()
        with running(source):
            wait_until(lambda: len(results) >= 6, what="the first results")
            victim = results[-1][1]
            address = cluster.worker_addresses()[victim]
            cluster.kill(victim)
            wait_until(lambda: server.stats.trains == n_trains, what="all trains sent")
            idle = source.stats.idle
            # both receivers found the bridge empty: everything received has come back
            wait_until(lambda: source.stats.idle >= idle + 2 and source.stats.buffered == 0,
                       what="the receivers to drain")
    tids = [tid for tid, _, _ in results]
    assert tids == sorted(set(tids))
    assert n_trains - 8 <= len(tids) <= n_trains  # lost: at most the dead worker's trains
    assert all(worker != victim for _, worker, _ in results[7:])
    assert source.stats.reassigned >= 1
    lost = sorted(set(range(FIRST, FIRST + n_trains)) - set(tids))
    assert lost and sorted(e.train_id for e in errors) == lost
    assert all(e.worker == address and e.exception is None and "lost" in e.reason
               and e.endpoint == server.endpoint for e in errors), errors
    assert source.stats.lost == source.stats.errors == len(lost)


def test_sharded_modules_merged_per_train(cluster: ProcessCluster) -> None:
    """Two receivers, each with its own bridge and modules; partial results merged per train."""
    n_trains = 10
    with BridgeServer(sock="REP") as first, BridgeServer(sock="REP") as second:
        first.start(trains(n_trains, modules=[0, 1]))
        second.start(trains(n_trains, modules=range(4)))  # this one keeps modules 2 and 3
        shards = [Shard(first.endpoint, name="Q1"),
                  Shard(second.endpoint, select=[MODULE.format(2), MODULE.format(3)], name="Q2")]

        def merge(parts: list) -> tuple:
            (tid, _, sums_a), (tid_b, _, sums_b) = parts
            assert tid == tid_b
            return tid, {**sums_a, **sums_b}

        source = Stream.from_karabo_bridge_on_workers(shards, module_sums, cluster.client,
                                                      merge=merge, timeout=0.5, wait=5)
        results = source.sink_to_list()
        with running(source):
            wait_until(lambda: len(results) >= n_trains, what="all merged trains")
    assert [tid for tid, _ in results] == list(range(FIRST, FIRST + n_trains))
    assert all(sums == expected_sums(tid) for tid, sums in results)
    assert source.stats.incomplete == 0 and source.stats.received == 2 * n_trains


def test_distributed_mean_equals_single_process(cluster: ProcessCluster) -> None:
    """Per-pixel mean over trains: partial reductions from two workers, merged in the graph,
    equal one pass over all trains in one process."""
    n_trains = 16
    with BridgeServer(sock="REP") as server:
        # paced, so both receivers are connected long before the last train: a REP server hands
        # trains only to the receivers that have asked, and the second may start a moment later
        server.start(trains(n_trains), rate=10)
        source = Stream.from_karabo_bridge_on_workers(server.endpoint, train_stats,
                                                      cluster.client, timeout=0.5, wait=5)
        partials = source.sink_to_list()
        with running(source):
            wait_until(lambda: len(partials) >= n_trains, what="all partial results")
    assert len({worker for worker, _ in partials}) == 2
    merged = merge_all(stats for _, stats in partials)
    single = RunningStats()
    for tid in range(FIRST, FIRST + n_trains):
        single.update(np.stack([module_data(tid, m) for m in range(4)]))
    got, want = merged.result(), single.result()
    assert float(got["count"]) == float(want["count"]) == n_trains
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-6)
    np.testing.assert_allclose(got["std"], want["std"], rtol=1e-5)


def test_waits_for_a_worker_then_receives(caplog: pytest.LogCaptureFixture) -> None:
    """Started on a cluster without workers, the source warns and waits (submitting nothing,
    reporting nothing), and receives once a worker joins."""
    n_trains = 5
    client = connect(n_workers=0, processes=False, set_as_default=False)
    try:
        with BridgeServer(sock="REP") as server:
            server.start(trains(n_trains))
            source = Stream.from_karabo_bridge_on_workers(server.endpoint, module_sums, client,
                                                          n=1, timeout=0.5, wait=5)
            results, errors = source.sink_to_list(), source.errors.sink_to_list()
            with caplog.at_level(logging.WARNING, logger="kb_streams.worker_receive"):
                with running(source):
                    wait_until(lambda: "has no workers" in caplog.text, timeout=20,
                               what="the warning")
                    assert (results, errors, source.stats.tasks) == ([], [], 0)
                    client.cluster.scale(1)
                    client.wait_for_workers(1, timeout=30)
                    wait_until(lambda: len(results) >= n_trains, what="all trains")
        assert [tid for tid, _, _ in results] == list(range(FIRST, FIRST + n_trains))
        assert errors == []
        assert caplog.text.count("has no workers") == 1  # once, not every second
    finally:
        client.close(timeout=10)


def test_options() -> None:
    with pytest.raises(ValueError, match="every receiver gets every train"):
        from_karabo_bridge_on_workers("tcp://127.0.0.1:1", abs, client=object(), sock="SUB", n=2)
    with pytest.raises(ValueError, match="shard names must differ"):
        from_karabo_bridge_on_workers([Shard("a", name="x"), Shard("b", name="x")], abs,
                                      client=object())
    shards = module_shards("tcp://127.0.0.1:1", 3, modules=16)
    assert [len(s.select) for s in shards] == [6, 5, 5]
    assert shards[0].select[0] == "*/DET/0CH0:*" and shards[0].sock == "SUB"


def worker_logs(cluster: ProcessCluster) -> dict[str, bytes]:
    return {name: (cluster.directory / f"{name}.log").read_bytes() for name in cluster.workers}


def test_receiver_not_started_holds_nothing_back(cluster: ProcessCluster) -> None:
    """A receiver whose worker is busy (as while it imports on a cold start) has received
    nothing, so it cannot deliver an earlier train: the other one's results flow at once, long
    before ``wait`` (30 s) would let them go."""
    client = cluster.client
    busy = sorted(cluster.worker_addresses().values())[1]
    started, release = f"started-{time.monotonic_ns()}", f"release-{time.monotonic_ns()}"
    blocker = client.submit(block_until, started, release, workers=[busy], pure=False)
    try:
        assert Event(started, client=client).wait(30), "the blocking task did not start"
        with BridgeServer(sock="REP") as server:
            server.start(trains(400), rate=10)
            source = Stream.from_karabo_bridge_on_workers(server.endpoint, slow_on, client, n=2,
                                                          timeout=0.5, wait=30, max_buffered=1000)
            results = source.sink_to_list()
            source.start()
            try:
                wait_until(lambda: len(results) >= 5, timeout=20, what="results within wait")
            finally:
                Event(release, client=client).set()
                stop(source)
    finally:
        Event(release, client=client).set()
        blocker.result(timeout=30)
    tids = [tid for tid, _ in results]
    assert tids == sorted(set(tids)) and source.stats.late == 0
    assert source.stats.probes >= 1


def test_idle_receiver_cannot_let_a_train_it_took_pass(cluster: ProcessCluster) -> None:
    """Both receivers idle, then the bridge hands train t to one and t + 1 to the other, which
    returns first: t + 1 waits for t (here far less than ``wait``); nothing is late or skipped."""
    rounds, first = 3, FIRST + 100
    slow = frozenset(range(first, first + 2 * rounds, 2))  # t of every pair
    with BridgeServer(sock="REP") as server:
        source = Stream.from_karabo_bridge_on_workers(
            server.endpoint, slow_on, cluster.client, n=2, timeout=0.3, wait=30,
            kwargs={"slow": slow, "delay": 0.6})
        results = source.sink_to_list()
        with running(source):
            wait_until(lambda: sum(cluster.client.run(count_receivers).values()) == 2,
                       what="both receivers")
            pairs = trains(2 * rounds, first=first)
            for r in range(rounds):
                idle = source.stats.idle
                # both receivers have asked the bridge and reported idle since
                wait_until(lambda idle=idle: source.stats.idle >= idle + 4, what="idle receivers")
                for _ in range(2):
                    server.feed(*next(pairs))
                wait_until(lambda r=r: len(results) + source.stats.late >= 2 * r + 2,
                           timeout=20, what="both trains of the pair")
    tids = [tid for tid, _ in results]
    assert tids == list(range(first, first + 2 * rounds))
    assert len({worker for _, worker in results}) == 2  # each pair was split over the receivers
    assert (source.stats.late, source.stats.skipped) == (0, 0)


def test_stop_is_quiet_and_frees_the_workers(cluster: ProcessCluster) -> None:
    """Stopping closes the receivers first, so the tasks waiting for a train end at once: the
    workers are free for the next source, and none is left running (cancelled, it would run on
    until its receive timeout, and a worker closed meanwhile logs a CancelledError warning)."""
    before = worker_logs(cluster)
    with BridgeServer(sock="REP") as server:
        server.start(trains(6))
        source = Stream.from_karabo_bridge_on_workers(server.endpoint, slow_on, cluster.client,
                                                      n=2, timeout=5, wait=5)
        results = source.sink_to_list()
        with running(source):
            wait_until(lambda: len(results) >= 6, what="all trains")
            wait_until(lambda: source.stats.tasks >= 10, what="tasks waiting for trains")

    def executing(dask_worker) -> int:
        return len(dask_worker.state.executing)

    # the tasks that waited up to 5 s for a train ended with the stop
    assert set(cluster.client.run(executing).values()) == {0}
    after = worker_logs(cluster)
    logged = b"".join(log[len(before.get(name, b"")):] for name, log in after.items())
    assert b"CancelledError" not in logged


def test_sharded_start_drops_trains_a_shard_never_had(cluster: ProcessCluster) -> None:
    """A shard whose bridge starts later never delivers the first trains: they are dropped as
    soon as it delivers a later one, not after ``wait`` (30 s)."""
    n_trains = 10
    with BridgeServer(sock="REP") as first, BridgeServer(sock="REP") as second:
        first.start(trains(n_trains, modules=[0, 1]))
        second.start(trains(n_trains - 3, modules=[2, 3], first=FIRST + 3))
        shards = [Shard(first.endpoint, name="Q1"), Shard(second.endpoint, name="Q2")]
        source = Stream.from_karabo_bridge_on_workers(shards, module_sums, cluster.client,
                                                      timeout=0.5, wait=30)
        results = source.sink_to_list()
        with running(source):
            wait_until(lambda: len(results) >= n_trains - 3, timeout=20, what="merged trains")
    assert [parts["Q1"][0] for parts in results] == list(range(FIRST + 3, FIRST + n_trains))
    assert source.stats.incomplete == 3


def test_order_out_of_order_returns() -> None:
    """Results of one receiver that come back out of order hold back the trains between."""
    order = ReceiveOrder()
    order.returned("a", 1, 105)  # seq 0 (some train before 105) is still on its way
    assert not order.passes(105, first_seen=0.0)
    order.returned("a", 0, 103)
    assert order.floor == 105 and order.passes(106, first_seen=0.0)
    assert not order.passes(107, first_seen=0.0)


def test_order_idle_with_a_train_out() -> None:
    """Seen idle while a train it handed out is still away: clear only once that one is back."""
    order = ReceiveOrder()
    order.returned("a", 0, 100)
    order.empty("a", taken=2, when=5.0)  # seq 1 handed out, not back yet
    assert not order.passes(110, first_seen=4.0)
    order.returned("a", 1, 104)
    assert order.passes(110, first_seen=4.0) and not order.passes(110, first_seen=6.0)


def test_order_failed_task_and_lost_worker() -> None:
    order = ReceiveOrder()
    order.empty("a", taken=1, when=1.0)
    order.returned("a", 1, 102)
    assert not order.passes(103, first_seen=0.0)  # seq 0 may still come
    order.failed()  # ... but it was taken by a task that failed
    assert order.passes(103, first_seen=0.0)
    order.returned("a", 2, 110)
    order.empty("a", taken=4, when=2.0)  # seq 3 out
    order.restart(when=3.0)  # its worker is gone: seq 3 is lost
    assert order.passes(120, first_seen=3.0) and not order.passes(120, first_seen=3.5)
    order.returned("a", 3, 111)  # a straggler of the old instance changes nothing
    order.returned("b", 0, 130)  # a new receiver instance
    assert order.epoch == "b" and order.floor == 130


def test_a_receiver_keeps_no_train_it_has_handed_out():
    """Else every train would land in fresh memory while the previous one lingers."""
    import weakref

    from kb_streams._worker_receiver import Receiver, ReceiverSpec

    def train(tid: int) -> tuple[dict, dict]:
        return {"SRC": {"x": np.zeros(1000)}}, {"SRC": {"timestamp.tid": tid}}

    with BridgeServer(sock="PUSH") as server:
        server.feed(*train(FIRST), timeout=10)
        spec = ReceiverSpec("session", "r0", server.endpoint, "PULL", None, poll=10.0,
                            receive_timeout=1.0, prefetch=1, hwm=1)
        receiver = Receiver(spec, ("session", "r0"))
        try:
            kind, seq, message = receiver.get(10.0)
            assert (kind, seq, message.train_id) == ("train", 0, FIRST)
            handed_out = weakref.ref(message)
            del message
            # the receiver now waits for the next train, which has not been sent
            assert wait_for(lambda: handed_out() is None)
            server.feed(*train(FIRST + 1), timeout=10)
            kind, seq, message = receiver.get(10.0)
            assert (kind, seq, message.train_id) == ("train", 1, FIRST + 1)
        finally:
            receiver.close()
