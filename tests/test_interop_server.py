"""The published ``karabo_bridge.Client`` reads our BridgeServer: REP, PUB, PUSH; 2.2 and 1.0."""

from __future__ import annotations

import numpy as np
import pytest
from karabo_bridge import Client as ReferenceClient

from kb_streams.server import BridgeServer

SOURCE = "SPB_XTD9_XGM/DOOCS/MAIN:output"
CLIENT_SOCK = {"REP": "REQ", "PUB": "SUB", "PUSH": "PULL"}


def trains(first: int = 10_000):
    tid = first
    while True:
        data = {SOURCE: {"data.intensityTD": np.linspace(0, 1, 1000, dtype=np.float32) + tid,
                         "pulseEnergy.photonFlux": 12.5, "beamPosition.name": "XGM"}}
        meta = {SOURCE: {"source": SOURCE, "timestamp.tid": tid,
                         "timestamp.sec": "1700000000", "timestamp.frac": "5" * 18}}
        yield data, meta
        tid += 1


@pytest.mark.parametrize("protocol", ["2.2", "1.0"])
@pytest.mark.parametrize("sock", ["REP", "PUB", "PUSH"])
def test_reference_client_reads_our_server(sock, protocol):
    with BridgeServer(sock=sock, protocol_version=protocol) as server:
        client = ReferenceClient(server.endpoint, sock=CLIENT_SOCK[sock], timeout=10)
        with client:
            # PUB drops what a late or slow subscriber misses: pace it so that is rare
            server.start(trains(), rate=100 if sock == "PUB" else None)
            received = [client.next() for _ in range(3)]
    ids = [meta[SOURCE]["timestamp.tid"] for _, meta in received]
    if sock == "PUB":
        assert ids == sorted(set(ids))
    else:
        assert ids == [10_000, 10_001, 10_002]
    data, meta = received[-1]
    tid = ids[-1]
    np.testing.assert_array_equal(data[SOURCE]["data.intensityTD"],
                                  np.linspace(0, 1, 1000, dtype=np.float32) + tid)
    assert data[SOURCE]["pulseEnergy.photonFlux"] == 12.5
    assert data[SOURCE]["beamPosition.name"] == "XGM"
    assert meta[SOURCE]["timestamp.sec"] == "1700000000"
    assert meta[SOURCE]["timestamp.frac"] == "5" * 18
    if protocol == "1.0":  # the reference leaves 1.0 metadata inside the data as well
        assert data[SOURCE]["metadata"]["timestamp.tid"] == tid
