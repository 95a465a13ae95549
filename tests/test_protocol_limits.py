"""Bounded decoding (issue 9, item 2): hostile messages are refused before the work they ask for,
with a short error, and the stream goes on. Real sockets on loopback where the wire matters."""

from __future__ import annotations

import threading
from dataclasses import replace

import msgpack
import numpy as np
import pytest
import zmq
from _background import in_background
from _waiting import wait_for
from streamz import Stream

from kb_streams import Client, Limits, ProtocolError
from kb_streams.protocol import decode, encode, find_train_id, source_meta
from kb_streams.train import train_id_of

SHORT = 500  # characters an error message may have at most


def dtype_fields_message(fields: int) -> list[bytes]:
    """A 2.2 train whose one array claims a structured dtype of *fields* one-byte fields.

    10**6 fields make a 12.9 MB header, built as bytes (packing the list takes seconds).
    """
    header = msgpack.packb({"source": "s", "content": "msgpack",
                            "metadata": {"timestamp.tid": 1}})
    array = msgpack.packb({"source": "s", "content": "array", "path": "x", "shape": [],
                           "dtype": None})
    assert array.endswith(b"\xc0")  # the None: replaced by the list of fields
    names = b"".join(msgpack.packb([f"f{i}", "u1"]) for i in range(min(fields, 10_000)))
    fields_list = b"\xdd" + fields.to_bytes(4, "big") + names + (
        msgpack.packb(["f", "u1"]) * max(fields - 10_000, 0))
    return [header, b"\x80", array[:-1] + fields_list, b"\x00" * min(fields, 10)]


def good_train(tid: int) -> list:
    return encode({"s": {"x": np.arange(3)}}, {"s": {"timestamp.tid": tid}})


# -- the codec ----------------------------------------------------------------------------------


def test_a_huge_header_is_refused_unread():
    with pytest.raises(ProtocolError, match="max_header_bytes") as err:
        decode(dtype_fields_message(10**6))  # a 12.9 MB header
    assert len(str(err.value)) < SHORT and err.value.part == 2


def test_dtype_fields_are_capped_and_the_cap_can_be_raised():
    parts = dtype_fields_message(2000)
    parts[3] = b"\x00" * 2000
    with pytest.raises(ProtocolError, match="max_dtype_fields") as err:
        decode(parts)
    assert len(str(err.value)) < SHORT
    assert decode(parts, replace(Limits(), max_dtype_fields=2000)).data["s"]["x"].dtype.itemsize \
        == 2000


def test_dtype_fields_are_capped_in_protocol_1_0_too():
    descr = [[f"f{i}", "<u1"] for i in range(2000)]
    numpy_map = {b"nd": True, b"type": descr, b"kind": b"V", b"shape": [1],
                 b"data": b"\x00" * 2000}
    message = msgpack.packb({"s": {"x": numpy_map, "metadata": {"timestamp.tid": 1}}})
    with pytest.raises(ProtocolError, match="max_dtype_fields") as err:
        decode([message])
    assert err.value.train_id == 1 and len(str(err.value)) < SHORT


def test_parts_are_counted_before_any_is_looked_at():
    with pytest.raises(ProtocolError, match="max_parts") as err:
        decode([b""] * 10**6)
    assert len(str(err.value)) < SHORT
    assert decode(good_train(5), Limits(max_parts=4)).train_id == 5
    with pytest.raises(ProtocolError, match="max_parts"):
        decode(good_train(5), Limits(max_parts=3))


def test_total_bytes_can_be_capped():
    with pytest.raises(ProtocolError, match="max_message_bytes"):
        decode(good_train(5), Limits(max_message_bytes=10))


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_parts"):
        Limits(max_parts=0)


@pytest.mark.parametrize("message", [
    [msgpack.packb({b"s" * 10**6: {}})],                                       # huge source name
    [msgpack.packb({"source": "s", "content": "x" * 10**6}), b""],             # huge content
    [msgpack.packb({"source": "s" * 10**6, "content": "array", "path": "p" * 10**6,
                    "dtype": "u1", "shape": [10**6]}), b""],                   # huge names
], ids=["source", "content", "path"])
def test_error_messages_quote_a_few_hundred_characters_at_most(message):
    with pytest.raises(ProtocolError) as err:
        decode(message)
    assert len(str(err.value)) < SHORT


# -- over a real socket: rejected, counted, the stream goes on ----------------------------------


@pytest.fixture
def push():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.linger = 0
    sock.sndhwm = 0  # queue the whole hostile message at once
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close()
    ctx.term()


def next_good_train(client: Client, sock: zmq.Socket, tid: int) -> int:
    """Send good trains until one arrives (a PUSH may route one to the dropped connection)."""
    for _ in range(20):
        sock.send_multipart(good_train(tid))
        try:
            return client.next()[1]["s"]["timestamp.tid"]
        except TimeoutError:
            continue
    raise AssertionError("no good train arrived after the hostile one")


@pytest.mark.parametrize("hostile", ["dtype_fields", "empty_parts"])
def test_hostile_message_over_a_socket_is_refused_counted_and_the_client_goes_on(push, hostile):
    sock, endpoint = push
    message = dtype_fields_message(10**6) if hostile == "dtype_fields" else [b""] * 10**6
    with Client(endpoint, sock="PULL", timeout=1) as client:
        sock.send_multipart(good_train(1))
        assert client.next()[1]["s"]["timestamp.tid"] == 1
        sock.send_multipart(message)
        del message
        with pytest.raises(ProtocolError) as err:
            for _ in range(30):  # the hostile message may still be on its way
                try:
                    client.next()
                except TimeoutError:
                    continue
        assert len(str(err.value)) < SHORT
        assert client.stats.decode_errors == 1
        assert next_good_train(client, sock, 3) == 3


def test_hostile_messages_do_not_stop_a_stream(push):
    """The issue's hostile header, and empty parts (10**5 here: sending 10**6 takes seconds)."""
    sock, endpoint = push
    source = Stream.from_karabo_bridge(endpoint, sock="PULL", timeout=0.2)
    ids = source.map(lambda train: train.train_id).sink_to_list()
    source.start()

    def feed(stop: threading.Event) -> None:  # good trains after the hostile ones, until one
        sock.send_multipart(dtype_fields_message(10**6))
        sock.send_multipart([b""] * 10**5)
        for tid in range(100, 200):
            if stop.wait(0.05):
                return
            sock.send_multipart(good_train(tid))

    try:
        with in_background(feed):
            assert wait_for(lambda: ids, timeout=60)
            assert source.stats.decode_errors == 2
            assert not source.stopped
    finally:
        source.stop()


# -- one way to find a source's metadata and a train ID (issue 10, item 4) ----------------------


@pytest.mark.parametrize("data, meta", [
    ({"A": {"x": 1}}, {"A": {"timestamp.tid": 7}}),                 # 2.2
    ({"A": {"x": 1, "metadata": {"timestamp.tid": 7}}}, {}),        # 1.0, 2.0, streamer
    ({"A": {"x": 1, "metadata.timestamp.tid": 7}}, {}),             # 2.1
    ({"A": {"x": 1, "metadata.timestamp.tid": 7}}, None),
], ids=["2.2", "nested", "flat", "flat-no-meta"])
def test_every_protocol_version_gives_the_same_answer(data, meta):
    assert source_meta("A", data, meta) == {"timestamp.tid": 7}
    assert find_train_id(data, meta) == 7
    assert train_id_of((data, meta or {})) == 7
