"""Our codec against itself: round trips, version detection, zero copy, encoder behaviour."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq
from _protocol_strategies import (
    as_received,
    assert_same,
    ndarrays,
    nested_values,
    numpy_scalars,
    plain_leaves,
    trains,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kb_streams.errors import ProtocolError
from kb_streams.protocol import Message, decode, deserialize, encode, serialize

pack = msgpack.Packer(use_bin_type=True).pack
VALUES = nested_values(st.one_of(plain_leaves(), numpy_scalars()))


def expected_source(values: dict, meta: dict, version: str) -> dict:
    plain = {k: as_received(v, version) for k, v in values.items()
             if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    if version == "1.0":
        return {**{k: plain.get(k, arrays.get(k)) for k in values}, "metadata": meta}
    return {**plain, **arrays}


@pytest.mark.parametrize("version", ["2.2", "1.0"])
@settings(max_examples=60, deadline=None)
@given(train=trains(VALUES, ndarrays()))
def test_round_trip(version, train):
    data, meta = train
    parts = encode(data, meta, protocol_version=version)
    msg = decode(parts)
    assert msg.protocol_version == version
    assert msg.nbytes == sum(memoryview(p).nbytes for p in parts)
    assert msg.meta == meta
    assert msg.train_id == next(iter(meta.values()))["timestamp.tid"]
    assert sorted(msg.data) == sorted(data)
    for src, values in data.items():
        assert_same(msg.data[src], expected_source(values, meta[src], version), src)


@pytest.mark.parametrize("version", ["2.2", "1.0"])
@settings(max_examples=40, deadline=None)
@given(array=ndarrays())
def test_array_round_trip_from_writeable_frames(version, array):
    parts = encode({"src": {"a": array}}, protocol_version=version)
    frames = [bytearray(p) for p in parts]
    got = decode(frames).data["src"]["a"]
    assert_same(got, np.ascontiguousarray(array) if array.ndim else array)
    # 2.2: a view on the received frame, writeable because the frame is; 1.0: a read-only
    # view on the bytes msgpack made, as in karabo_bridge.
    assert got.flags.writeable is (version == "2.2")
    if version == "2.2" and got.nbytes:
        assert np.shares_memory(got, np.frombuffer(frames[-1], np.uint8))


def test_large_train_decodes_without_copy():
    image = np.zeros((16, 64, 64, 32), "f4")
    parts = encode({"det": {"image.data": image}}, {"det": {"timestamp.tid": 1}})
    assert np.shares_memory(np.frombuffer(parts[-1], np.uint8), image)  # zero-copy send
    got = decode(parts).data["det"]["image.data"]
    assert np.shares_memory(got, image)  # zero-copy receive


def test_frames_from_real_socket_are_zero_copy_and_writeable(tcp_endpoint):
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    try:
        for sock in (push, pull):
            sock.linger = 0
        push.bind(tcp_endpoint)
        pull.connect(tcp_endpoint)
        pull.rcvtimeo = 5000
        image = np.arange(200_000, dtype="u2").reshape(2, 100_000)
        push.send_multipart(encode({"det": {"image.data": image}},
                                   {"det": {"timestamp.tid": 42}}), copy=False)
        frames = pull.recv_multipart(copy=False)
    finally:
        push.close()
        pull.close()
        ctx.term()
    msg = decode(frames)
    got = msg.data["det"]["image.data"]
    assert msg.train_id == 42 and msg.protocol_version == "2.2"
    np.testing.assert_array_equal(got, image)
    assert np.shares_memory(got, np.frombuffer(frames[-1].buffer, np.uint8))
    assert got.flags.writeable


@pytest.mark.parametrize("array", [np.arange(4.0), np.zeros((2, 2), "<U1"),
                                   np.zeros((0, 3), "?"), np.zeros((), "f8")])
def test_memoryviews_of_any_format_and_shape_are_accepted(array):
    # karabo_bridge.serialize sends array.data: memoryviews with the array's format and shape
    parts = encode({"s": {"a": array}})
    got = decode([parts[0], parts[1], parts[2], array.data]).data["s"]["a"]
    assert_same(got, array)
    with pytest.raises(ProtocolError, match="not a contiguous buffer"):
        decode([parts[0], parts[1], parts[2], memoryview(np.arange(8.0))[::2]])


def test_zmq_frames_in_memory():
    parts = encode({"s": {"a": np.arange(3), "x": 1}}, {"s": {"timestamp.tid": 9}})
    msg = decode([zmq.Frame(bytes(p)) for p in parts])
    assert msg.data["s"]["x"] == 1 and msg.train_id == 9


def test_pairs_in_any_order():
    arr = np.arange(6, dtype="<i4").reshape(2, 3)
    parts = encode({"a": {"x": 1, "arr": arr}, "b": {"y": 2}}, {"a": {"timestamp.tid": 3},
                                                                 "b": {"timestamp.tid": 3}})
    pairs = [parts[i:i + 2] for i in range(0, len(parts), 2)]
    reordered = [p for pair in reversed(pairs) for p in pair]
    msg = decode(reordered)
    assert msg.data["a"]["x"] == 1 and msg.data["b"] == {"y": 2}
    np.testing.assert_array_equal(msg.data["a"]["arr"], arr)
    assert list(msg.data["a"]) == ["x", "arr"]  # payload keys first, as karabo_bridge gives them
    assert msg.meta == {"a": {"timestamp.tid": 3}, "b": {"timestamp.tid": 3}}


def test_source_with_array_parts_only_gets_empty_metadata():
    header = pack({"source": "s", "content": "array", "path": "a", "dtype": "u1", "shape": [2]})
    msg = decode([header, b"\x01\x02"])
    assert msg.meta == {"s": {}} and msg.protocol_version == "2.2"
    assert msg.data["s"]["a"].tolist() == [1, 2]


@pytest.mark.parametrize("spelling", ["uint16", "<u2", ">u2", "u2"])
def test_both_dtype_spellings(spelling):
    header = pack({"source": "s", "content": "array", "path": "a", "dtype": spelling,
                   "shape": [2]})
    got = decode([pack({"source": "s", "content": "msgpack", "metadata": {}}), b"\x80",
                  header, b"\x01\x00\x02\x00"]).data["s"]["a"]
    assert got.dtype == np.dtype(spelling)
    assert got.tolist() == ([256, 512] if spelling == ">u2" else [1, 2])


def test_protocol_2_0_nested_metadata_is_exposed():
    meta = {"source": "s", "timestamp.tid": 77, "timestamp.sec": "1", "timestamp.frac": "0" * 18}
    parts = [pack({"source": "s", "content": "msgpack"}), pack({"x": 1, "metadata": meta}),
             pack({"source": "s", "content": "array", "path": "a", "dtype": "float32",
                   "shape": [1]}), np.float32(2).tobytes()]
    msg = decode(parts)
    assert msg.protocol_version == "2.0"
    assert msg.meta == {"s": meta}
    assert msg.data["s"]["metadata"] == meta  # left in the data, as received
    assert msg.train_id == 77


def test_protocol_2_1_flattened_metadata_is_exposed_unprefixed():
    flat = {"metadata.source": "s", "metadata.timestamp.tid": 78, "metadata.timestamp": 1.5}
    msg = decode([pack({"source": "s", "content": "msgpack"}), pack({"x": 1, **flat})])
    assert msg.protocol_version == "2.1"
    assert msg.meta == {"s": {"source": "s", "timestamp.tid": 78, "timestamp": 1.5}}
    assert msg.data["s"] == {"x": 1, **flat}
    assert msg.train_id == 78


def test_metadata_in_header_and_data_is_2_2():
    # extra-data sends the metadata in both places
    meta = {"source": "s", "timestamp.tid": 5}
    msg = decode(serialize({"s": {"metadata": meta, "x": 1}}))
    assert msg.protocol_version == "2.2"
    assert msg.meta == {"s": meta} and msg.data["s"]["metadata"] == meta


def test_legacy_image_data():
    header = pack({"source": "cam", "content": "ImageData", "path": "data.image",
                   "dtype": "uint8", "shape": [2, 2], "params": {"bitsPerPixel": 8}})
    msg = decode([pack({"source": "cam", "content": "msgpack", "metadata": {}}), b"\x80",
                  header, bytes(range(4))])
    image = msg.data["cam"]["data.image"]
    assert image["bitsPerPixel"] == 8
    assert image["Data"].tolist() == [[0, 1], [2, 3]]


def test_numpy_scalars_anywhere_become_builtins_in_2_2():
    data = {"s": {"b": np.bool_(True), "i": np.uint64(2**64 - 1), "f": np.float32(0.5),
                  "nested": {"l": [np.int8(-3), (np.bool_(False), np.float16(1.5))]}}}
    got = decode(encode(data, {"s": {"timestamp.tid": np.uint64(4)}}))
    assert_same(got.data["s"], {"b": True, "i": 2**64 - 1, "f": 0.5,
                                "nested": {"l": [-3, [False, 1.5]]}})
    assert got.meta["s"] == {"timestamp.tid": 4}


def test_numpy_scalars_keep_their_type_in_1_0():
    data = {"s": {"b": np.bool_(True), "f": np.float32(0.5), "l": [np.int16(3)],
                  "t": np.datetime64("2024-01-01T00:00:00", "ns"), "c": 1 + 2j}}
    got = decode(encode(data, protocol_version="1.0")).data["s"]
    assert_same(got, {**data["s"], "l": [np.int16(3)], "metadata": {}})


def test_arrays_nested_in_values_in_1_0():
    arr = np.arange(3, dtype=">i8")
    got = decode(encode({"s": {"l": [arr, {"a": arr}]}}, protocol_version="1.0")).data["s"]["l"]
    assert_same(got, [arr, {"a": arr}])


def test_structured_arrays_in_1_0():
    arr = np.zeros(3, [("a", "<i4"), ("b", ">f8", (2,)), ("c", [("d", "u1")])])
    arr["a"] = [1, 2, 3]
    got = decode(encode({"s": {"rec": arr}}, protocol_version="1.0")).data["s"]["rec"]
    assert_same(got, arr)


def test_reference_style_structured_dtype_string_is_read():
    # karabo_bridge.serialize sends str(structured dtype); its own reader cannot parse it
    arr = np.array([(1, 2.0)], [("a", "<i4"), ("b", "<f8")])
    header = pack({"source": "s", "content": "array", "path": "rec", "dtype": str(arr.dtype),
                   "shape": [1]})
    got = decode([pack({"source": "s", "content": "msgpack", "metadata": {}}), b"\x80",
                  header, arr.tobytes()]).data["s"]["rec"]
    assert_same(got, arr)


def test_empty_train_is_one_empty_map_part():
    for version in ("2.2", "1.0"):
        parts = encode({}, protocol_version=version)
        assert parts == [b"\x80"]
        assert decode(parts) == Message({}, {}, "1.0", 1)


def test_source_with_nothing_sends_empty_payload():
    parts = encode({"s": {}}, {"s": {}})
    assert len(parts) == 2 and parts[1] == b"\x80"
    assert deserialize(parts) == ({"s": {}}, {"s": {}})


def test_non_contiguous_arrays_are_sent_in_c_order():
    arr = np.arange(24, dtype="u2").reshape(4, 6)[:, ::2].T
    got = decode(encode({"s": {"a": arr}})).data["s"]["a"]
    np.testing.assert_array_equal(got, arr)
    assert got.flags.c_contiguous


def test_metadata_defaults_to_the_data_and_is_not_mutated():
    meta = {"source": "s", "timestamp.tid": 1}
    data = {"s": {"metadata": meta, "x": 1}}
    msg = decode(encode(data, dummy_timestamps=True))
    assert meta == {"source": "s", "timestamp.tid": 1}
    assert msg.meta["s"]["timestamp.tid"] == 1


@pytest.mark.parametrize("version", ["2.2", "1.0"])
def test_dummy_timestamps(version):
    real = {"timestamp": 1.25, "timestamp.sec": "1", "timestamp.frac": "250000000000000000"}
    msg = decode(encode({"a": {}, "b": {}}, {"a": {"timestamp.tid": 1}, "b": dict(real)},
                        protocol_version=version, dummy_timestamps=True))
    stamped = msg.meta["a"]
    assert isinstance(stamped["timestamp"], float)
    assert stamped["timestamp.sec"].isdigit()
    assert len(stamped["timestamp.frac"]) == 18 and stamped["timestamp.frac"].isdigit()
    assert float(f"{stamped['timestamp.sec']}.{stamped['timestamp.frac']}") == pytest.approx(
        stamped["timestamp"], abs=1e-6)
    assert msg.meta["b"] == real  # never overwritten


def test_unknown_protocol_version_is_value_error():
    for version in ("2.1", "3.0", 2.2):
        with pytest.raises(ValueError, match="Unknown protocol version"):
            encode({"s": {}}, protocol_version=version)


@pytest.mark.parametrize("version", ["2.2", "1.0"])
@pytest.mark.parametrize(
    "values, key, text",
    [
        ({"obj": np.array([1, "a"], dtype=object)}, "obj", "object dtype"),
        ({"deep": {"k": [np.array([None])]}}, "deep", "object dtype"),
        ({"d": {1: "int key"}}, "d", "map key 1 is not a string"),
        ({"big": 2**64}, "big", "cannot encode"),
        ({"set": {1, 2}}, "set", "cannot encode"),
    ],
)
def test_unencodable_values_name_source_and_key(version, values, key, text):
    if version == "2.2" and key == "deep":
        text = "top-level values"
    with pytest.raises(ProtocolError, match=text) as info:
        encode({"src": values}, {"src": {"timestamp.tid": 12}}, protocol_version=version)
    assert (info.value.source, info.value.key, info.value.train_id) == ("src", key, 12)


def test_2_2_refuses_what_the_reference_cannot_read():
    rec = np.zeros(2, [("a", "<i4")])
    with pytest.raises(ProtocolError, match="structured arrays") as info:
        encode({"s": {"rec": rec}})
    assert info.value.key == "rec"
    with pytest.raises(ProtocolError, match="complex") as info:
        encode({"s": {"c": np.complex64(1j)}})
    assert info.value.key == "c"
    assert decode(encode({"s": {"c": np.array(1j)}})).data["s"]["c"] == 1j  # 0-d arrays do


@pytest.mark.parametrize("bad, text", [
    ({1: {}}, "source name 1 is not a string"),
    ({"s": [1]}, "source data must be a dict"),
    ({"s": {2: 1}}, "key 2 is not a string"),
    ([("s", {})], "data must be a dict"),
])
def test_encode_refuses_malformed_trains(bad, text):
    with pytest.raises(ProtocolError, match=text):
        encode(bad)


def test_serialize_and_deserialize_are_drop_ins():
    parts = serialize({"s": {"x": 1}}, {"s": {"timestamp.tid": 3}}, "1.0", False)
    assert len(parts) == 1
    assert deserialize(parts) == ({"s": {"x": 1, "metadata": {"timestamp.tid": 3}}},
                                  {"s": {"timestamp.tid": 3}})
