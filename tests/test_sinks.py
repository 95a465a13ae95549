"""to_karabo_bridge: a graph re-publishes results; our Client and karabo_bridge.Client read them.

Real ZeroMQ sockets on 127.0.0.1. Waits are on events and clients' receive timeouts, all bounded.
"""

from __future__ import annotations

import configparser
import logging
import threading
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from karabo_bridge import Client as ReferenceClient
from streamz import Stream

from kb_streams import Client, Message
from kb_streams.server import BridgeServer
from kb_streams.sinks import SinkStats, to_bridge_train, to_karabo_bridge
from kb_streams.train import Train

RESULTS = "kb_streams/results"
READER_SOCK = {"PUSH": "PULL", "REP": "REQ", "PUB": "SUB"}
WARM_UP = "warm-up"
TIMEOUT = 5.0
SUB_TIMEOUT = 0.2  # a SUB reader retries this often: PUB drops results until it is subscribed
MAX_WARM_UPS = 100
MAX_RETRIES = int(TIMEOUT / SUB_TIMEOUT)


@pytest.fixture
def upstream():
    source = Stream()
    yield source
    for node in list(source.downstreams):
        if isinstance(node, to_karabo_bridge):
            node.close()


def roi_sums(train_id: int, pulses: int = 3) -> xr.DataArray:
    """A per-pulse result as a pipeline makes it: labelled, with its train ID as a coordinate."""
    return xr.DataArray(np.arange(pulses, dtype=np.float32) + train_id % 1000, dims="pulse",
                        name="roi_sum", coords={"pulse": np.arange(pulses), "trainId": train_id})


def open_reader(kind: str, node: to_karabo_bridge):
    sock = READER_SOCK[node.server.sock]
    timeout = SUB_TIMEOUT if sock == "SUB" else TIMEOUT
    if kind == "reference":
        return ReferenceClient(node.endpoint, sock=sock, timeout=timeout)
    return Client(node.endpoint, sock=sock, timeout=timeout)


def subscribe(reader, upstream: Stream) -> None:
    """Emit warm-up results until a SUB reader gets one: PUB drops all until it is connected."""
    for _ in range(MAX_WARM_UPS):
        upstream.emit({WARM_UP: {"n": 1}})
        try:
            data, _ = reader.next()
        except TimeoutError:
            continue
        if WARM_UP in data:
            return
    pytest.fail(f"no warm-up result reached the subscriber in {MAX_WARM_UPS} tries")


def next_result(reader) -> tuple[dict, dict]:
    """The next result, skipping warm-ups still on their way (SUB readers retry timeouts)."""
    for _ in range(MAX_WARM_UPS + MAX_RETRIES):
        try:
            data, meta = reader.next()
        except TimeoutError:
            continue
        if WARM_UP not in data:
            return data, meta
    pytest.fail("no result arrived")


def emit_and_read(upstream: Stream, reader, item) -> tuple[dict, dict]:
    """One result in lockstep: emit, then read it (REP serves what is waiting at the request)."""
    upstream.emit(item)
    return next_result(reader)


def tid_of(meta: dict, source: str = RESULTS) -> int:
    return meta[source]["timestamp.tid"]


# -- conversion, no sockets ---------------------------------------------------------------------


def test_dataarray_becomes_one_source_of_its_values_and_coordinates():
    image = xr.DataArray(np.ones((2, 3), np.uint16), dims=("slow_scan", "fast_scan"),
                         coords={"fast_scan": [10, 20, 30], "gain": ("slow_scan", [1.0, 2.0]),
                                 "trainId": 10_042})
    data, meta = to_bridge_train(image, 10_042, source="SPB/RESULTS/image")
    values = data["SPB/RESULTS/image"]
    assert sorted(values) == ["data", "fast_scan", "gain", "trainId"]
    np.testing.assert_array_equal(values["data"], image.values)
    np.testing.assert_array_equal(values["gain"], [1.0, 2.0])
    assert values["trainId"] == 10_042 and isinstance(values["trainId"], np.integer)
    assert meta == {"SPB/RESULTS/image": {"source": "SPB/RESULTS/image",
                                          "timestamp.tid": 10_042}}


def test_dataset_mappings_numbers_and_arrays():
    ratio = xr.Dataset({"on": ("delay", [1.0, 2.0]), "off": ("delay", [3.0, 4.0])},
                       coords={"delay": [-1.0, 1.0], "detector": "AGIPD"})
    data, _ = to_bridge_train(ratio, 1)
    assert sorted(data[RESULTS]) == ["delay", "detector", "off", "on"]
    assert data[RESULTS]["detector"].shape == ()  # a 0-d string array stays an array
    assert to_bridge_train({"mean": 1.5, "n": np.int64(3)}, 1)[0] == {
        RESULTS: {"mean": 1.5, "n": 3}}
    nested, meta = to_bridge_train({"A/ROI": {"sum": 1}, "B/ROI": {"sum": xr.DataArray(2.0)}}, 4)
    assert nested == {"A/ROI": {"sum": 1}, "B/ROI": {"sum": 2.0}}
    assert {tid_of(meta, src) for src in meta} == {4}
    assert to_bridge_train(np.float32(2.5), 1)[0] == {RESULTS: {"data": np.float32(2.5)}}
    array = np.arange(4)
    assert to_bridge_train(array, 1)[0][RESULTS]["data"] is array
    names = xr.DataArray(np.array(["a", "b"], dtype=object), dims="module")
    assert to_bridge_train(names, 1)[0][RESULTS]["data"] == ["a", "b"]


def test_pairs_and_trains_go_out_as_they_are_with_a_train_id_where_missing():
    data = {"SA1/XGM": {"energy": 1.0}, "SA1/MOTOR": {"position": 2.0}}
    meta = {"SA1/XGM": {"timestamp.tid": 7, "timestamp": 1.5}}
    out_data, out_meta = to_bridge_train((data, meta), 99)
    assert out_data is data
    assert out_meta["SA1/XGM"] == {"timestamp.tid": 7, "timestamp": 1.5, "source": "SA1/XGM"}
    assert tid_of(out_meta, "SA1/MOTOR") == 99
    train = Train(data, meta)
    assert to_bridge_train(train, 99)[0] is data
    message = Message(data, meta, "2.2", 0)
    assert to_bridge_train(message, 99) == (data, out_meta)


@pytest.mark.parametrize("item, error", [
    ("text", TypeError), ([1, 2], TypeError), (None, TypeError), ({}, ValueError),
])
def test_what_cannot_be_published_is_refused(item, error):
    with pytest.raises(error):
        to_bridge_train(item, 1)


# -- publishing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sock", ["PUSH", "REP", "PUB"])
@pytest.mark.parametrize("kind", ["ours", "reference"])
def test_both_clients_read_the_results_and_their_train_ids(upstream, sock, kind):
    node = upstream.to_karabo_bridge(sock=sock)
    assert node.endpoint.startswith("tcp://127.0.0.1:")
    with open_reader(kind, node) as reader:
        if sock == "PUB":
            subscribe(reader, upstream)
        data, meta = emit_and_read(upstream, reader, roi_sums(10_001))
        np.testing.assert_array_equal(data[RESULTS]["roi_sum"], [1.0, 2.0, 3.0])
        assert data[RESULTS]["roi_sum"].dtype == np.float32
        assert tid_of(meta) == 10_001 and meta[RESULTS]["timestamp"] > 0
        data, meta = emit_and_read(upstream, reader, {"mean": 0.5, "trainId": 10_002})
        assert data[RESULTS] == {"mean": 0.5, "trainId": 10_002} and tid_of(meta) == 10_002
        data, meta = emit_and_read(upstream, reader, 7)  # carries no train ID: the last one seen
        assert data[RESULTS] == {"data": 7} and tid_of(meta) == 10_002
        data, meta = emit_and_read(upstream, reader, Train(
            {"SA1/XGM": {"energy": np.float64(1.25)}}, {"SA1/XGM": {"timestamp.tid": 10_003}}))
        assert data["SA1/XGM"]["energy"] == 1.25 and tid_of(meta, "SA1/XGM") == 10_003
    stats = node.stats
    assert (stats.unsendable, stats.dropped, stats.last_train_id) == (0, 0, 10_003)
    assert stats.published == stats.received


@pytest.mark.parametrize("kind", ["ours", "reference"])
def test_protocol_1_0(upstream, kind):
    node = upstream.to_karabo_bridge(sock="PUSH", protocol_version="1.0")
    with open_reader(kind, node) as reader:
        data, meta = emit_and_read(upstream, reader, roi_sums(10_005))
    np.testing.assert_array_equal(data[RESULTS]["pulse"], [0, 1, 2])
    assert tid_of(meta) == 10_005


def test_dataarray_round_trips_values_and_coordinates(upstream):
    image = xr.DataArray(
        np.arange(12, dtype=np.float64).reshape(3, 4), dims=("slow_scan", "fast_scan"),
        name="mean_image",
        coords={"slow_scan": [5, 6, 7], "fast_scan": np.linspace(0, 1, 4),
                "gain": (("slow_scan", "fast_scan"), np.ones((3, 4), np.uint8)),
                "trainId": 10_010})
    node = upstream.to_karabo_bridge(sock="PUSH", source="SPB/RESULTS/image")
    with Client(node.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        data, meta = emit_and_read(upstream, reader, image.T)  # not C-contiguous: sent in C order
    values = data["SPB/RESULTS/image"]
    assert set(values) == {"mean_image", "slow_scan", "fast_scan", "gain", "trainId"}
    np.testing.assert_array_equal(values["mean_image"], image.values.T)
    for name in ("slow_scan", "fast_scan", "gain"):
        np.testing.assert_array_equal(values[name], image.T[name].values)
        assert values[name].dtype == image[name].dtype
    assert values["trainId"] == 10_010 == tid_of(meta, "SPB/RESULTS/image")


def image_sum(train: Train) -> xr.DataArray:
    total = train["DET/0", "image.data"].xarray().sum().rename("image_sum")
    return total.assign_coords(trainId=train.train_id)


def test_a_graph_republishes_what_it_receives():
    """Bridge in -> from_karabo_bridge -> map -> to_karabo_bridge -> bridge out."""
    first, count = 20_001, 5
    trains = [({"DET/0": {"image.data": np.full((4, 4), tid % 100, np.uint16)}},
               {"DET/0": {"timestamp.tid": tid}}) for tid in range(first, first + count)]
    with BridgeServer(sock="PUSH") as upstream_server:
        upstream_server.start(trains)
        source = Stream.from_karabo_bridge(upstream_server.endpoint, sock="PULL", timeout=1.0)
        node = source.map(image_sum).to_karabo_bridge(sock="PUSH")
        try:
            with Client(node.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
                source.start()
                results = [reader.next() for _ in range(count)]
        finally:
            source.stop()
            source.join(timeout=TIMEOUT)
            node.close()
    assert [tid_of(meta) for _, meta in results] == list(range(first, first + count))
    assert [int(data[RESULTS]["image_sum"]) for data, _ in results] == [
        16 * (tid % 100) for tid in range(first, first + count)]


def test_items_without_train_ids_are_counted_until_one_comes(upstream):
    node = upstream.to_karabo_bridge(sock="PUSH")
    with Client(node.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        ids = [tid_of(emit_and_read(upstream, reader, item)[1])
               for item in (1.0, 2.0, roi_sums(30_000), 3.0)]
    assert ids == [1, 2, 30_000, 30_000]


# -- never stalling -----------------------------------------------------------------------------


def emit_all_in_a_thread(upstream: Stream, items) -> None:
    """Emit every item from another thread; fail unless all emits return in time."""
    done = threading.Event()

    def run():
        for item in items:
            upstream.emit(item)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert done.wait(TIMEOUT), "the graph stalled on the sink"
    thread.join(TIMEOUT)


@pytest.mark.parametrize("sock", ["PUSH", "REP"])
def test_without_a_reader_the_oldest_results_are_dropped_and_nothing_blocks(upstream, sock):
    queue_size, count, first = 4, 50, 40_000
    node = upstream.to_karabo_bridge(sock=sock, queue_size=queue_size)
    emit_all_in_a_thread(upstream, [roi_sums(tid) for tid in range(first, first + count)])
    assert node.stats == SinkStats(received=count, published=0, dropped=count - queue_size,
                                   queued=queue_size)
    with Client(node.endpoint, sock=READER_SOCK[sock], timeout=TIMEOUT) as reader:
        _, meta = reader.next()
    if sock == "REP":  # a request gets the newest result; the older ones waiting are dropped
        assert tid_of(meta) == first + count - 1
        assert node.stats.dropped == count - 1
    else:  # PUSH sends in order what the queue kept: the newest queue_size
        assert tid_of(meta) == first + count - queue_size


def test_pub_without_subscribers_sends_everything_at_once(upstream):
    count = 200
    node = upstream.to_karabo_bridge(sock="PUB", queue_size=2)
    emit_all_in_a_thread(upstream, [roi_sums(tid) for tid in range(count)])
    stats = node.stats
    assert stats.received == count
    assert stats.published + stats.dropped + stats.queued == count
    assert stats.published >= 1 and stats.queued <= 2


def test_a_copy_is_sent_unless_told_otherwise(upstream):
    running_mean = np.zeros(3)
    copied = upstream.to_karabo_bridge(sock="PUSH")
    shared = upstream.to_karabo_bridge(sock="PUSH", copy=False)
    upstream.emit(running_mean)  # waits in both queues: no reader yet
    running_mean += 5  # the graph updates its array in place
    with Client(copied.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        assert reader.next()[0][RESULTS]["data"].tolist() == [0.0, 0.0, 0.0]
    with Client(shared.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        assert reader.next()[0][RESULTS]["data"].tolist() == [5.0, 5.0, 5.0]


# -- failures and closing -----------------------------------------------------------------------


def test_a_bad_item_is_logged_with_its_train_id_counted_and_skipped(upstream, caplog):
    node = upstream.to_karabo_bridge(sock="PUSH")
    unpicklable = xr.DataArray(np.array([object()], dtype=object), dims="x",
                               coords={"trainId": 50_002})
    items = [roi_sums(50_001), unpicklable, "not a result", {},
             {"nested": {1: 2}, "n": 3}, roi_sums(50_006)]
    with caplog.at_level(logging.WARNING, logger="kb_streams.sinks"):
        for item in items:
            upstream.emit(item)
    with Client(node.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        received = [tid_of(reader.next()[1]) for _ in range(2)]
    assert received == [50_001, 50_006]
    assert node.stats.unsendable == 4 and node.stats.published == 2
    assert "train 50002" in caplog.text


def test_close_releases_the_port(upstream, tcp_endpoint):
    node = upstream.to_karabo_bridge(tcp_endpoint, sock="PUSH")
    upstream.emit(1.0)
    node.close()
    node.close()  # twice is fine
    assert node.stats.dropped == 1  # it was still waiting for a reader
    upstream.emit(2.0)  # after closing: counted, not raised
    assert node.stats.dropped == 2
    with BridgeServer(tcp_endpoint, sock="PUSH") as server:
        assert server.endpoint == tcp_endpoint


def test_destroy_disconnects_and_releases_the_port(upstream, tcp_endpoint):
    node = upstream.to_karabo_bridge(tcp_endpoint)
    node.destroy()
    assert not upstream.downstreams
    with BridgeServer(tcp_endpoint, sock="PUB"):
        pass


def test_stop_stops_the_upstream_source_and_releases_the_port(tcp_endpoint):
    source = Stream.from_karabo_bridge("tcp://127.0.0.1:1", sock="PULL", timeout=1.0)
    node = source.to_karabo_bridge(tcp_endpoint)
    source.start()
    node.stop()
    assert source.join(timeout=TIMEOUT)
    with BridgeServer(tcp_endpoint, sock="PUB"):
        pass


@pytest.mark.parametrize("sock", ["PUB", "PUSH", "REP"])
def test_closing_the_server_itself_does_not_wait_for_a_result(upstream, sock):
    node = upstream.to_karabo_bridge(sock=sock)
    closed = threading.Event()

    def close():
        node.server.close()
        closed.set()

    threading.Thread(target=close, daemon=True).start()
    assert closed.wait(TIMEOUT)
    node.close()


def test_a_server_can_be_given(upstream, ipc_endpoint):
    server = BridgeServer(ipc_endpoint, sock="PUSH", protocol_version="1.0", hwm=4)
    node = upstream.to_karabo_bridge(server=server)
    assert node.server is server and node.endpoint == ipc_endpoint
    with ReferenceClient(ipc_endpoint, sock="PULL", timeout=TIMEOUT) as reader:
        data, meta = emit_and_read(upstream, reader, roi_sums(60_000))
    assert tid_of(meta) == 60_000
    node.close()
    assert "closed" in repr(server)  # closed with the node


def test_bad_arguments_are_refused(upstream):
    with BridgeServer(sock="PUSH") as server:
        with pytest.raises(ValueError, match="either server= or sock"):
            upstream.to_karabo_bridge(sock="PUB", server=server)
        server.feed({"A": {"x": 1}}, {"A": {"timestamp.tid": 1}})  # now serving, no reader
        with pytest.raises(ValueError, match="already serving"):
            upstream.to_karabo_bridge(server=server)
    with pytest.raises(ValueError, match="queue_size"):
        upstream.to_karabo_bridge(queue_size=0)
    with pytest.raises(ValueError, match="unsupported server socket"):
        upstream.to_karabo_bridge(sock="DEALER")
    with pytest.raises(RuntimeError, match="closed"):
        upstream.to_karabo_bridge(server=server)  # closed when its with block ended
    assert not upstream.downstreams  # nothing half-built left connected


def test_registered_as_a_streamz_sinks_entry_point():
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    lines = config["options.entry_points"]["streamz.sinks"].strip().splitlines()
    entry_points = [EntryPoint(*(part.strip() for part in line.split("=")), "streamz.sinks")
                    for line in lines]
    assert [(ep.name, ep.load()) for ep in entry_points
            if ep.name == "to_karabo_bridge"] == [("to_karabo_bridge", to_karabo_bridge)]


def test_the_republish_example_publishes_what_it_says(monkeypatch):
    from itertools import islice

    from kb_streams.cli.run import load_pipeline
    from kb_streams.simulate import simulate

    pipeline = load_pipeline(Path(__file__).resolve().parent.parent / "examples" / "republish.py")
    monkeypatch.setitem(pipeline.__globals__, "SOCK", "PUSH")  # so that no result can be missed
    source = Stream()
    node, status = pipeline(source)
    try:
        with Client(node.endpoint, sock="PULL", timeout=TIMEOUT) as reader:
            for data, meta in islice(simulate("AGIPD-modules", pulses=4), 3):
                source.emit(Train(data, meta))
            results = [reader.next() for _ in range(3)]
        assert "3 published, 0 dropped, 0 unsendable" in status()
    finally:
        node.close()
    first = 10_000_000_000
    result_source = pipeline.__globals__["RESULT_SOURCE"]
    assert [tid_of(meta, result_source) for _, meta in results] == [first, first + 1, first + 2]
    values = results[-1][0][result_source]
    assert values["roi_sum"].shape == (4,) and values["mean_image"].shape == (32, 32)
    assert values["trainId"] == first + 2
