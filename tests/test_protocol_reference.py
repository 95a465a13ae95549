"""Our codec against the reference, karabo_bridge 0.7.0, in both directions."""

from __future__ import annotations

import threading

import _protocol_strategies as strat
import karabo_bridge
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from kb_streams.protocol import decode, deserialize, encode, serialize

# What the reference can send: 2.2 has no default= hook (numpy scalars only at the top level,
# never np.bool_), and neither version sends datetime64 arrays (no buffer protocol).
REF_ARRAYS = strat.ndarrays(datetimes=False)
REF_TOP_SCALARS = strat.numpy_scalars().filter(lambda v: not isinstance(v, np.bool_))
REF_TRAINS = {
    "2.2": strat.trains(st.one_of(strat.nested_values(strat.plain_leaves()), REF_TOP_SCALARS),
                        REF_ARRAYS),
    "1.0": strat.trains(strat.nested_values(st.one_of(strat.plain_leaves(),
                                                      strat.numpy_scalars())), REF_ARRAYS),
}


@pytest.mark.parametrize("version", ["2.2", "1.0"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_reference_messages_decode_as_the_reference_decodes_them(version, data):
    train, meta = data.draw(REF_TRAINS[version])
    parts = karabo_bridge.serialize(train, meta, protocol_version=version)
    msg = decode(parts)
    assert msg.protocol_version == version
    strat.assert_same(list(deserialize(parts)), list(karabo_bridge.deserialize(parts)))


@pytest.mark.parametrize("version", ["2.2", "1.0"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_our_messages_are_the_reference_messages(version, data):
    train, meta = data.draw(REF_TRAINS[version])
    ours = serialize(train, meta, protocol_version=version)
    theirs = karabo_bridge.serialize(train, meta, protocol_version=version)
    assert [bytes(p) for p in ours] == [bytes(p) for p in theirs]

    got_data, got_meta = karabo_bridge.deserialize(ours)
    assert got_meta == meta
    for src, values in train.items():
        expected = {k: (v if isinstance(v, np.ndarray) else strat.as_received(v, version))
                    for k, v in values.items()}
        if version == "1.0":
            expected["metadata"] = meta[src]
        strat.assert_same(dict(sorted(got_data[src].items())), dict(sorted(expected.items())), src)


@pytest.mark.parametrize("version", ["2.2", "1.0"])
def test_reference_reads_what_only_we_can_send(version):
    """Values the reference serializer fails on, but its deserializer reads from us."""
    train = {"s": {"flag": np.bool_(True), "l": [np.int8(1), {"f": np.float32(0.5)}],
                   "strided": np.arange(12, dtype="u2").reshape(3, 4)[:, ::2]}}
    data, meta = karabo_bridge.deserialize(encode(train, {"s": {"timestamp.tid": 8}},
                                                  protocol_version=version))
    assert meta == {"s": {"timestamp.tid": 8}}
    assert bool(data["s"]["flag"]) is True and data["s"]["l"][1]["f"] == 0.5
    np.testing.assert_array_equal(data["s"]["strided"], train["s"]["strided"])


def test_reference_reads_our_empty_train():
    assert karabo_bridge.serialize({}) == []  # what crashes the reference's sender
    assert karabo_bridge.deserialize(encode({})) == ({}, {})


def test_datetime_arrays_reach_the_reference_in_2_2():
    times = np.array(["2024-01-01T00:00:00.5", "2024-01-02"], "datetime64[ns]")
    data, _ = karabo_bridge.deserialize(encode({"s": {"t": times}}))
    np.testing.assert_array_equal(data["s"]["t"], times)


def test_reference_array_before_msgpack_part_is_fixed():
    parts = karabo_bridge.serialize({"s": {"a": np.arange(3), "x": 1}}, {"s": {}})
    swapped = parts[2:] + parts[:2]
    with pytest.raises(KeyError):
        karabo_bridge.deserialize(swapped)
    assert decode(swapped).data["s"]["x"] == 1


WIRE_TRAIN = {"det": {"image.data": np.arange(100_000, dtype=">f4").reshape(10, 10_000), "n": 3}}
WIRE_META = {"det": {"source": "det", "timestamp.tid": 10_001}}


def test_reference_server_to_our_decoder(tcp_endpoint):
    server = karabo_bridge.ServerInThread(tcp_endpoint, sock="REP")
    server.start()
    try:
        with zmq.Context() as ctx, ctx.socket(zmq.REQ) as req:
            req.linger, req.rcvtimeo = 0, 10_000
            req.connect(tcp_endpoint)
            server.feed(WIRE_TRAIN, WIRE_META)
            req.send(b"next")
            frames = req.recv_multipart(copy=False)
    finally:
        server.stop()
    msg = decode(frames)
    assert msg.meta == WIRE_META and msg.data["det"]["n"] == 3
    np.testing.assert_array_equal(msg.data["det"]["image.data"], WIRE_TRAIN["det"]["image.data"])


def test_our_encoder_to_reference_client(tcp_endpoint):
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.linger, rep.rcvtimeo = 0, 10_000
    rep.bind(tcp_endpoint)

    def answer_one_request():
        if rep.recv() == b"next":
            rep.send_multipart(encode(WIRE_TRAIN, WIRE_META), copy=False)

    thread = threading.Thread(target=answer_one_request)
    thread.start()
    try:
        with karabo_bridge.Client(tcp_endpoint, timeout=10) as client:
            data, meta = client.next()
    finally:
        thread.join(15)
        rep.close()
        ctx.term()
    assert meta == WIRE_META and data["det"]["n"] == 3
    np.testing.assert_array_equal(data["det"]["image.data"], WIRE_TRAIN["det"]["image.data"])
