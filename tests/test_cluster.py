"""Tests of :func:`kb_streams.cluster.connect`, against a real process cluster (``conftest.py``)."""

from __future__ import annotations

import asyncio
import os

import dask
import pytest
from _dask_cluster import ProcessCluster

from kb_streams.cluster import connect


def profiling(dask_worker) -> tuple[bool, bool]:
    """Worker side: whether the profiler is configured, and scheduled."""
    return (dask.config.get("distributed.worker.profile.enabled"),
            "profile" in dask_worker.periodic_callbacks)


# ---------------------------------------------------------------------------------------------
def test_connect_to_scheduler_address(cluster: ProcessCluster) -> None:
    client = connect(cluster.address, set_as_default=False)
    try:
        assert client.direct_to_workers is True
        assert client.submit(pow, 2, 10, pure=False).result(timeout=30) == 1024
        assert len(client.scheduler_info()["workers"]) == 2
    finally:
        client.close(timeout=10)


def test_connect_passes_a_client_through(cluster: ProcessCluster) -> None:
    assert connect(cluster.client) is cluster.client
    with pytest.raises(TypeError, match="only apply to a local cluster"):
        connect(cluster.address, memory_limit="1GB")


def test_connect_local_owns_its_cluster() -> None:
    client = connect(n_workers=1, set_as_default=False)
    try:
        cluster = client.cluster
        assert client.submit(sum, [1, 2, 3], pure=False).result(timeout=30) == 6
        (worker,) = client.scheduler_info()["workers"]
        assert worker.startswith("tcp://127.0.0.1:")
        assert client.direct_to_workers is True
        # the scheduler's HTTP endpoint (health, metrics) listens on loopback only
        hosts = {sock.getsockname()[0] for sock in cluster.scheduler.http_server._sockets.values()}
        assert hosts == {"127.0.0.1"}
        # Dask's MALLOC_TRIM_THRESHOLD_ (doubles the cost of receiving trains) is left out
        trim = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        assert list(trim.values()) == [os.environ.get("MALLOC_TRIM_THRESHOLD_")]
        # Dask's profiler (its history grows a busy worker's memory for 17 minutes) is off
        assert list(client.run(profiling).values()) == [(False, False)]
    finally:
        client.close(timeout=10)
    assert cluster.status.name == "closed"


def test_connect_async_inside_running_loop() -> None:
    """An async client; its workers (started after connect returns) get the profile option."""
    async def main() -> tuple[int, list]:
        async with connect(n_workers=1, asynchronous=True, set_as_default=False,
                           profile=True) as client:
            return (await client.submit(abs, -5, pure=False),
                    list((await client.run(profiling)).values()))

    assert asyncio.run(asyncio.wait_for(main(), 60)) == (5, [(True, True)])


def test_process_cluster_is_separate_processes(cluster: ProcessCluster) -> None:
    pids = cluster.client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
