"""A server that sends its last trains and closes: a slow client still receives every one.

A reply that has fully arrived sits in the client's socket queue; the socket monitor then reports
the disconnect. Reconnecting at that point must not throw the queued trains away.
"""

from __future__ import annotations

import select
import subprocess
import time

import numpy as np
import pytest
import zmq

from kb_streams.client import Client
from kb_streams.server import BridgeServer

N_TRAINS = 5
WAIT = 30.0


def trains(first: int, n: int = N_TRAINS, size: int = 1_000_000):
    for tid in range(first, first + n):
        yield ({"DET/0": {"image.data": np.full(size, tid % 256, np.uint8)}},
               {"DET/0": {"timestamp.tid": tid}})


def wait_for_queued_reply_and_disconnect(client: Client, timeout: float = WAIT) -> None:
    """Bounded wait until a complete reply is queued and the monitor has seen the server go."""
    core = client._core
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (client._socket.get(zmq.EVENTS) & zmq.POLLIN
                and core.monitor.get(zmq.EVENTS) & zmq.POLLIN):
            return
        zmq.zmq_poll([(core.monitor, zmq.POLLIN)], 10)
    raise TimeoutError("no queued reply and disconnect event")


def receive_all(client: Client, before_last: callable) -> list[int]:
    """Read the trains slowly: the last one only once the server is gone."""
    tids = []
    for _ in range(N_TRAINS - 1):
        tids.append(client.next_message().train_id)
    before_last()
    wait_for_queued_reply_and_disconnect(client)
    tids.append(client.next_message().train_id)
    return tids


@pytest.mark.parametrize("prefetch", [2, 3])
def test_last_train_survives_our_server_closing(tcp_endpoint, prefetch):
    server = BridgeServer(tcp_endpoint, sock="REP")
    server.start(trains(100), trains=N_TRAINS)
    with Client(tcp_endpoint, timeout=WAIT, prefetch=prefetch) as client:
        def server_done() -> None:
            assert server.wait(WAIT)
            server.close(linger=WAIT)

        tids = receive_all(client, server_done)
        assert tids == list(range(100, 100 + N_TRAINS))
        assert client.stats.trains == N_TRAINS and client.stats.gaps == 0


@pytest.fixture(scope="module")
def five_train_run(tmp_path_factory):
    """A mock EuXFEL run (extra-data's mock XGM) of 5 trains, 10000-10004."""
    from extra_data.tests.mockdata.mkfile import write_file
    from extra_data.tests.mockdata.xgm import XGM

    directory = tmp_path_factory.mktemp("run5")
    write_file(str(directory / "RAW-R0001-DA01-S00000.h5"),
               [XGM("SA1_XTD2_XGM/DOOCS/MAIN")], ntrains=N_TRAINS)
    return directory


def test_last_train_survives_extra_data_serve_files_exiting(five_train_run, tcp_endpoint):
    proc = subprocess.Popen(["karabo-bridge-serve-files", str(five_train_run), tcp_endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 60)[0], "serve-files printed nothing"
        assert "Streamer started on" in proc.stdout.readline()
        with Client(tcp_endpoint, timeout=WAIT, prefetch=2) as client:
            tids = receive_all(client, lambda: proc.wait(WAIT))
            assert proc.returncode == 0, proc.stderr.read()
            assert tids == list(range(10000, 10000 + N_TRAINS))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
