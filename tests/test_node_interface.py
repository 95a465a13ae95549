"""One node interface: every source, sink and Dask node has ``stats``, ``errors``, ``finished``,
``join()`` and ``stop()``, and each failure is one record on ``errors`` and one count in stats."""

from __future__ import annotations

import numpy as np
import zmq
from _dask_cluster import ProcessCluster
from _waiting import wait_until
from streamz import Stream

from kb_streams.dask.offload import Offload
from kb_streams.dask.on_workers import from_karabo_bridge_on_workers
from kb_streams.nodes import Finished
from kb_streams.protocol import serialize
from kb_streams.records import ErrorRecord
from kb_streams.server import BridgeServer
from kb_streams.sinks import to_karabo_bridge
from kb_streams.sources import from_karabo_bridge
from kb_streams.stats import NodeStats

FIRST = 20_000
SRC = "SA1_XTD2_XGM/XGM/DOOCS:output"


def train(tid: int) -> tuple[dict, dict]:
    return {SRC: {"data.intensityTD": np.full(4, tid, np.float32)}}, {SRC: {"timestamp.tid": tid}}


def assert_interface(node: Stream) -> None:
    assert isinstance(node.stats, NodeStats)
    assert isinstance(node.errors, Stream)
    assert isinstance(node.finished, Finished)
    assert callable(node.join) and callable(node.stop)


def test_the_bridge_source_reports_each_failure_once(tcp_endpoint: str) -> None:
    """A train that cannot be decoded and one the graph raised on: a record each, counted."""
    context = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.bind(tcp_endpoint)
    source = from_karabo_bridge(tcp_endpoint, sock="PULL", timeout=0.2)
    assert_interface(source)
    assert source.finished and source.join(0)  # not started: nothing to do

    def fragile(t):
        if t.train_id == FIRST + 2:
            raise ZeroDivisionError("division by zero")
        return t.train_id

    ids = source.map(fragile).sink_to_list()
    errors = source.errors.sink_to_list()
    source.start()
    try:
        assert not source.finished
        push.send_multipart(serialize(*train(FIRST)))
        push.send_multipart([b"\x81\xa3not", b"a train", b"at all"])
        push.send_multipart(serialize(*train(FIRST + 2)))
        push.send_multipart(serialize(*train(FIRST + 3)))
        wait_until(lambda: len(ids) == 2 and len(errors) == 2, 10, "trains and errors")
    finally:
        source.stop()
        assert source.join(5)
        push.close(linger=0)
    assert source.finished
    assert all(isinstance(e, ErrorRecord) and e.endpoint == tcp_endpoint for e in errors)
    undecodable, raised = errors
    assert undecodable.node == "from_karabo_bridge" and "decode" in undecodable.reason
    assert raised.train_id == FIRST + 2 and isinstance(raised.exception, ZeroDivisionError)
    assert raised.exception.__traceback__ is None and "ZeroDivisionError" in raised.traceback
    assert source.stats.failures == len(errors)


def test_the_sink_reports_an_unsendable_item() -> None:
    upstream = Stream()
    node = to_karabo_bridge(upstream, sock="PUSH")
    try:
        assert_interface(node)
        assert not node.finished
        errors = node.errors.sink_to_list()
        upstream.emit(({SRC: {"x": 1}}, {SRC: {"timestamp.tid": FIRST}}))
        upstream.emit("not a result")
        (error,) = errors
        assert error.train_id == FIRST and error.reason == "unsendable"
        assert isinstance(error.exception, TypeError) and error.endpoint == node.endpoint
        assert node.stats.failures == 1 and node.stats.items == 0  # nobody read it yet
    finally:
        node.close()
    assert node.finished and node.join(0)


def test_the_dask_nodes_have_the_same_interface(cluster: ProcessCluster) -> None:
    node = Offload(Stream(), np.negative, client=cluster.client)
    assert_interface(node)
    assert node.finished  # nothing in flight
    with BridgeServer(sock="REP") as server:
        source = from_karabo_bridge_on_workers(server.endpoint, len, cluster.client)
        assert_interface(source)
        assert source.finished and source.stats.failures == 0


def test_offload_is_finished_once_nothing_is_in_flight(cluster: ProcessCluster) -> None:
    source = Stream()
    node = source.offload(np.negative, n=2, client=cluster.client)
    results, errors = node.sink_to_list(), node.errors.sink_to_list()
    for x in (1, 2, "three"):
        source.emit(x)
    assert node.join(60)
    assert node.finished and results == [-1, -2] and node.stats.items == 2
    (error,) = errors
    assert error.index == 2 and node.stats.failures == 1
    assert isinstance(error.exception, TypeError) and "negative" in error.traceback
