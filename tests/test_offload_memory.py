"""A long offload run keeps memory flat: bridge -> offload -> sink on the real process cluster.

Counts of live objects carry the test (robust on a loaded machine): the client's futures and the
scheduler's tasks stay within what ``n`` items in flight need, and once the run is over no future,
task, worker-held key or ``Train`` is left. RSS is checked too, with a generous bound that only a
real leak (the trains themselves) would cross.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import numpy as np
import psutil
from _dask_cluster import ProcessCluster
from _waiting import wait_until
from distributed import Client
from streamz import Stream

import kb_streams.offload  # noqa: F401 - registers Stream.offload
import kb_streams.sources  # noqa: F401 - registers Stream.from_karabo_bridge
from kb_streams.server import BridgeServer
from kb_streams.train import Train

FIRST = 10_000
N_TRAINS = 400
N = 4  # items in flight
SOURCE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
IMAGE = np.ones((16, 128, 128), np.float32)  # 1 MB per train: scattered, not in the task message
#: What a run may add to a process's RSS between its middle and its end. Leaking the trains of
#: that half would add 200 MB; allocator noise and Dask's bounded histories stay far below.
RSS_BOUND_MB = 64
#: Keys per item in flight: the scattered train and the task.
KEYS_PER_ITEM = 2


def bridge_trains(n: int) -> Iterator[tuple[dict, dict]]:
    for tid in range(FIRST, FIRST + n):
        yield {SOURCE: {"image.data": IMAGE}}, {SOURCE: {"timestamp.tid": tid}}


def first_pixel(train: Train) -> tuple[int, float]:
    """Worker side: a tiny result per train."""
    return train.train_id, float(train[SOURCE, "image.data"].ndarray()[0, 0, 0])


def ours(key: object) -> bool:
    """A key this test's offload node made: a scattered ``Train`` or a ``first_pixel`` task."""
    return str(key).startswith(("Train-", "first_pixel-"))


def scheduler_keys(dask_scheduler) -> int:
    return sum(map(ours, dask_scheduler.tasks))


def worker_keys(dask_worker) -> int:
    return sum(map(ours, dask_worker.data))


def live_trains(older: frozenset[int] = frozenset()) -> int:
    """``Train`` objects alive in this process, leaving out those whose ``id`` is in ``older``."""
    gc.collect()
    return sum(isinstance(o, Train) and id(o) not in older for o in gc.get_objects())


def trains_alive() -> list[Train]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Train)]


class Peaks(threading.Thread):
    """Samples the client's futures and the scheduler's keys of this test until stopped."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.futures = self.keys = self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.01):
            self.futures = max(self.futures, len(self.client.futures))
            self.keys = max(self.keys, self.client.run_on_scheduler(scheduler_keys))
            self.samples += 1


def test_many_trains_through_offload_leave_nothing_behind(cluster: ProcessCluster,
                                                          tcp_endpoint: str) -> None:
    client = Client(cluster.address, set_as_default=False, direct_to_workers=True, timeout=30)
    server = BridgeServer(tcp_endpoint, sock="REP")
    source = Stream.from_karabo_bridge(tcp_endpoint, sock="REQ", timeout=5, prefetch=2)
    node = source.offload(first_pixel, n=N, client=client)
    results, errors = node.sink_to_list(), node.errors.sink_to_list()
    processes = {"graph": psutil.Process()} | {
        name: psutil.Process(pid) for name, pid in client.run(os.getpid).items()}
    peaks = Peaks(client)
    older = trains_alive()  # held, so their ids stay theirs: earlier tests' trains are not ours
    older_ids = frozenset(map(id, older))
    try:
        assert client.run_on_scheduler(scheduler_keys) == 0
        server.start(bridge_trains(N_TRAINS))
        source.start()
        peaks.start()
        trains_in_graph = []
        rss = {}
        for mark in (N_TRAINS // 2, N_TRAINS):
            wait_until(lambda m=mark: len(results) + len(errors) >= m, 60, f"{mark} results")
            trains_in_graph.append(live_trains(older_ids))
            rss[mark] = {name: p.memory_info().rss / 1e6 for name, p in processes.items()}
        source.stop()
        assert source.join(timeout=30), "the source did not stop"
        node.drain(timeout=30)
    finally:
        peaks.stopping.set()
        peaks.join(timeout=10)
        source.stop()
        server.stop()
    try:
        assert errors == []
        assert [tid for tid, _ in results] == list(range(FIRST, FIRST + N_TRAINS))
        assert node.stats.max_in_flight == N and node.stats.bytes_in_tasks == 0
        # while running: only what the items in flight need, in the client and the scheduler
        # (which forgets a key a moment after the client released it: measured 2 N + 2)
        assert peaks.samples > 10
        assert peaks.futures <= KEYS_PER_ITEM * N + 2, peaks.futures
        assert peaks.keys <= 2 * KEYS_PER_ITEM * N, peaks.keys
        # the graph's process holds the items in flight, one waiting for a slot, and the trains
        # the source is emitting
        assert max(trains_in_graph) <= N + 3, trains_in_graph
        # afterwards: nothing (releasing keys is asynchronous, so wait for it, bounded)
        wait_until(lambda: not client.futures, 10, "the client to drop its futures")
        wait_until(lambda: client.run_on_scheduler(scheduler_keys) == 0, 10,
                   "the scheduler to forget the keys")
        wait_until(lambda: sum(client.run(worker_keys).values()) == 0, 10,
                   "the workers to drop the trains")
        assert live_trains(older_ids) == 0
        middle, end = rss[N_TRAINS // 2], rss[N_TRAINS]
        growth = {name: end[name] - middle[name] for name in end}
        assert max(growth.values()) < RSS_BOUND_MB, growth
    finally:
        client.close(timeout=10)
