"""Shared fixtures: loopback endpoints that never collide between tests."""

from __future__ import annotations

import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _dask_cluster import ProcessCluster


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def forget_sinks() -> Iterator[None]:
    """streamz keeps every sink alive in a module-level set; let each test's graph go with it.

    Without this, the items a test's ``sink_to_list`` collected stay alive for the whole session,
    and a later test counting live ``Train`` objects counts theirs too.
    """
    from streamz.sinks import _global_sinks

    before = set(_global_sinks)
    yield
    _global_sinks.intersection_update(before)


@pytest.fixture
def tcp_endpoint() -> str:
    """A ``tcp://127.0.0.1:<port>`` endpoint on a currently free port."""
    return f"tcp://127.0.0.1:{free_tcp_port()}"


@pytest.fixture
def ipc_endpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh ``ipc://`` endpoint in a short temporary directory (ipc paths are length-limited)."""
    directory = Path(tmp_path_factory.mktemp("ipc", numbered=True))
    return f"ipc://{directory / uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """One real process cluster per session: ``dask scheduler`` + 2 ``dask worker`` on 127.0.0.1."""
    cluster = ProcessCluster(tmp_path_factory.mktemp("dask"), n_workers=2)
    yield cluster
    cluster.close()


@pytest.fixture
def cluster(dask_processes: ProcessCluster) -> ProcessCluster:
    """The shared process cluster with its 2 workers running (replaced if a test killed one)."""
    dask_processes.ensure_workers(2)
    return dask_processes


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The CLI turns SIGINT/SIGTERM into KeyboardInterrupt; put pytest's handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
