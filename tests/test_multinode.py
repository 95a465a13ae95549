"""A cluster started as on a batch system: Dask's own ``dask scheduler`` and ``dask worker``
commands (with nannies), the workers started with ``kb_streams._malloc.LARGE_MESSAGE_ENV`` as the
guide says; then ``connect(address)`` with bridges sharded over the workers, and the CLI's
``--dask ADDRESS``, which must leave the cluster it did not start running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _waiting import wait_until
from distributed import get_worker
from streamz import Stream
from test_demo import CLI
from test_worker_receive import FIRST, MODULE, expected_sums, trains

from kb_streams._malloc import LARGE_MESSAGE_ENV
from kb_streams.cluster import connect
from kb_streams.server import BridgeServer
from kb_streams.worker_receive import Shard

START_TIMEOUT = 120  # starting Python processes takes a minute on a loaded 2-core machine
DASK = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")


def _address(scheduler_file: Path, scheduler: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError("dask scheduler exited")
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.05)  # the scheduler writes the file once it listens
    raise TimeoutError("dask scheduler did not start")


@pytest.fixture(scope="module")
def dask_commands(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and ``dask worker --nworkers 2`` (nannies) on 127.0.0.1: its address."""
    if DASK is None:
        pytest.skip("no dask command")
    directory = tmp_path_factory.mktemp("dask-commands")
    scheduler_file = directory / "scheduler.json"
    env = {**os.environ, **LARGE_MESSAGE_ENV,
           "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
           # task functions here are pickled by reference: the scheduler and workers import them
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH")]))}
    log = open(directory / "cluster.log", "wb")  # noqa: SIM115 - closed below
    procs = [subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)], stdout=log, stderr=subprocess.STDOUT,
        env=env)]
    try:
        address = _address(scheduler_file, procs[0])
        procs.append(subprocess.Popen(
            [DASK, "worker", address, "--nworkers", "2", "--nthreads", "1", "--host",
             "127.0.0.1", "--no-dashboard", "--memory-limit", "0", "--death-timeout", "60"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        yield address
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def environ(name: str) -> str | None:
    """Worker side: an environment variable of the worker process."""
    return os.environ.get(name)


def shard_sums(train) -> tuple:
    """Worker side: the train ID, the worker process, and the shard's per-module sums."""
    sums = {src: float(train[src, "image.data"].ndarray().sum(dtype="float64"))
            for src in train.sources}
    return train.train_id, get_worker().name, os.getpid(), sums


def test_connect_to_dask_commands_receives_each_bridge_in_its_own_worker(dask_commands):
    n_trains = 8
    client = connect(dask_commands, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=START_TIMEOUT)
        # the nannies passed the guide's allocator settings on to the worker processes
        assert set(client.run(environ, "MALLOC_ARENA_MAX").values()) == {"1"}
        with BridgeServer(sock="REP") as first, BridgeServer(sock="REP") as second:
            first.start(trains(n_trains, modules=[0, 1]))
            second.start(trains(n_trains, modules=[2, 3]))
            shards = [Shard(first.endpoint, name="Q1"), Shard(second.endpoint, name="Q2")]
            source = Stream.from_karabo_bridge_on_workers(shards, shard_sums, client,
                                                          merge=list, timeout=0.5, wait=10)
            results = source.sink_to_list()
            source.start()
            try:
                wait_until(lambda: len(results) >= n_trains, 60, "all joined trains")
            finally:
                source.stop()
                assert source.finished.wait(20)
    finally:
        client.close()
    assert [parts[0][0] for parts in results] == list(range(FIRST, FIRST + n_trains))
    for parts in results:
        tid = parts[0][0]
        assert {src: s for part in parts for src, s in part[3].items()} == expected_sums(tid)
    # each bridge's bytes went to one worker process only, a different one per shard
    pids = [{parts[i][2] for parts in results} for i in range(2)]
    assert all(len(p) == 1 for p in pids) and pids[0] != pids[1]
    assert MODULE.format(0) in results[0][0][3] and MODULE.format(2) in results[0][1][3]


def test_cli_dask_address_uses_the_running_cluster_and_leaves_it_running(dask_commands):
    proc = subprocess.run([*CLI, "demo", "--dask", dask_commands, "--trains", "10", "--pulses",
                           "2", "--rate", "40", "--xgm-noise", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"dask {dask_commands}" in proc.stdout, proc.stdout
    assert "10 trains processed" in proc.stdout, proc.stdout
    client = connect(dask_commands, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=START_TIMEOUT)  # the CLI closed only its client
    finally:
        client.close()
