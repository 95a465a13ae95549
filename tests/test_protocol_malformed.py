"""Malformed messages raise ProtocolError naming where they broke; fuzzing finds nothing else."""

from __future__ import annotations

import pickle
import time

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb_streams.errors import ProtocolError
from kb_streams.protocol import decode, encode

pack = msgpack.Packer(use_bin_type=True).pack
TID = 1234
META = {"source": "src", "timestamp.tid": TID}
UNPICKLED: list[str] = []


def _record_unpickling(note: str) -> str:
    UNPICKLED.append(note)
    return note


class Trap:
    """Unpickling this would call ``_record_unpickling``: proof that nothing is unpickled."""

    def __reduce__(self):
        return _record_unpickling, ("unpickled!",)


def head(**fields):
    return pack({"source": "src", "content": "msgpack", "metadata": META, **fields})


def arr_head(**fields):
    header = {"source": "src", "content": "array", "path": "a", "dtype": "<u2", "shape": [2]}
    header.update(fields)
    return pack({k: v for k, v in header.items() if v is not DROP})


DROP = object()
GOOD_ARRAY = b"\x01\x00\x02\x00"


def v1(source_values, source="src"):
    return [pack({source: source_values})]


def ndmap(fields=None):
    obj = {b"nd": True, b"type": "<u2", b"kind": b"", b"shape": [2], b"data": GOOD_ARRAY}
    obj.update(fields or {})
    return {k: v for k, v in obj.items() if v is not DROP}


def v1_array(fields=None):
    return v1({"metadata": META, "k": ndmap(fields)})


GOOD_PAYLOAD = pack({"x": 1})


def v2(*arrays, header=None, payload=GOOD_PAYLOAD):
    return [header or head(), payload, *[p for pair in arrays for p in pair]]


# (id, parts, substrings the message must contain)
CORPUS = [
    ("empty", [], ["empty message"]),
    ("one-buffer-not-list", b"\x80", ["sequence of parts"]),
    ("not-iterable", 5, ["sequence of parts"]),
    ("part-not-buffer", [b"\x80", 7], ["part 1", "not a buffer"]),
    ("part-is-str", ["abc"], ["part 0", "not a buffer"]),
    # protocol 1.0
    ("v1-not-msgpack", [b"\xc1"], ["part 0", "not valid msgpack"]),
    ("v1-truncated", [pack({"src": {"x": "abcdef"}})[:-3]], ["part 0", "not valid msgpack"]),
    ("v1-trailing-bytes", [pack({"src": {}}) + b"\x00"], ["part 0", "ExtraData"]),
    ("v1-not-a-map", [pack([1, 2])], ["part 0", "map of sources"]),
    ("v1-claimed-huge-list", [b"\x81\xa1s\x81\xa1k\xdd\x7f\xff\xff\xff" + b"\0" * 64],
     ["part 0", "exceeds max_array_len"]),
    ("v1-claimed-huge-map", [b"\x81\xa1s\xdf\x7f\xff\xff\xff" + b"\0" * 64],
     ["part 0", "exceeds max_map_len"]),
    ("v1-source-not-map", v1(5), ["source 'src'", "must be a map"]),
    ("v1-bytes-source-name", [pack({b"src": {}})], ["source name b'src'"]),
    ("v1-int-map-key", [pack({1: {}})], ["not valid msgpack", "map key"]),
    ("v1-nested-int-key", v1({"d": {2: 3}}), ["not valid msgpack", "map key"]),
    ("v1-bytes-key", v1({b"k": 1}), ["source 'src'", "non-string key b'k'"]),
    ("v1-metadata-not-map", v1({"metadata": [1]}), ["key 'metadata'", "must be a map"]),
    ("v1-tid-not-int", v1({"metadata": {"timestamp.tid": "1"}}), ["'timestamp.tid'"]),
    ("v1-pickled-object-array",
     v1_array({b"kind": b"O", b"type": [["", "|O"]], b"data": pickle.dumps(Trap())}),
     ["train 1234", "part 0", "source 'src'", "key 'k'", "pickle"]),
    ("v1-object-type", v1_array({b"type": "|O8"}), ["key 'k'", "object dtype"]),
    ("v1-structured-object-field",
     v1_array({b"kind": b"V", b"type": [["a", "|O"]], b"data": b"\0" * 8, b"shape": [1]}),
     ["key 'k'", "object"]),
    ("v1-structured-not-list", v1_array({b"kind": b"V", b"type": 5}), ["key 'k'", "dtype"]),
    ("v1-unknown-kind", v1_array({b"kind": b"Z"}), ["key 'k'", "unknown kind"]),
    ("v1-nd-not-bool", v1_array({b"nd": 1}), ["key 'k'", "not a bool"]),
    ("v1-missing-data", v1_array({b"data": DROP}), ["key 'k'", "b'data'"]),
    ("v1-data-not-bytes", v1_array({b"data": "text"}), ["key 'k'", "b'data'"]),
    ("v1-missing-shape", v1_array({b"shape": DROP}), ["key 'k'", "b'shape'"]),
    ("v1-negative-shape", v1_array({b"shape": [-2]}), ["key 'k'", "non-negative ints"]),
    ("v1-shape-not-list", v1_array({b"shape": 2}), ["key 'k'", "shape must be a list"]),
    ("v1-size-mismatch", v1_array({b"shape": [3]}), ["key 'k'", "needs 6"]),
    ("v1-absurd-shape", v1_array({b"shape": [2**62, 2**62]}), ["key 'k'", "needs"]),
    ("v1-unknown-dtype", v1_array({b"type": "<q9"}), ["key 'k'", "unknown dtype"]),
    ("v1-bad-scalar-size",
     v1({"metadata": META, "k": {b"nd": False, b"type": "<f8", b"data": b"\0" * 4}}),
     ["key 'k'", "numpy scalar"]),
    ("v1-bad-complex", v1({"k": {b"complex": True, b"data": "1+"}}), ["key 'k'", "complex"]),
    ("v1-nested-bad-array", v1({"k": [{"x": ndmap({b"shape": [5]})}]}), ["key 'k'", "needs"]),
    ("v1-ext-type", v1({"metadata": META, "k": msgpack.ExtType(5, b"x")}),
     ["train 1234", "key 'k'", "extension type 5"]),
    ("v1-timestamp-ext", v1({"k": [msgpack.Timestamp(1, 0)]}), ["key 'k'", "timestamp"]),
    ("v1-timestamp-root", [pack(msgpack.Timestamp(1, 0))], ["part 0", "timestamp"]),
    # protocol 2.x framing and headers
    ("odd-parts", v2() + [arr_head()], ["train 1234", "part 2", "odd number of parts"]),
    ("header-not-msgpack", [b"\xc1", b"\x80"], ["part 0", "header is not valid msgpack"]),
    ("header-trailing-bytes", [head() + b"\x00", b"\x80"], ["part 0", "ExtraData"]),
    ("header-not-map", [pack(["src"]), b"\x80"], ["part 0", "header must be a map"]),
    ("header-no-source", [pack({"content": "msgpack"}), b"\x80"], ["part 0", "lacks 'source'"]),
    ("header-source-int", [pack({"source": 3, "content": "msgpack"}), b"\x80"],
     ["part 0", "'source' must be a string"]),
    ("header-no-content", [pack({"source": "src"}), b"\x80"],
     ["part 0", "source 'src'", "lacks 'content'"]),
    ("header-content-bytes", [pack({"source": "src", "content": b"msgpack"}), b"\x80"],
     ["part 0", "'content' must be a string"]),
    ("header-ext", [pack({"source": "src", "content": msgpack.ExtType(1, b"")}), b"\x80"],
     ["part 0", "extension type 1"]),
    ("unknown-content", v2((pack({"source": "src", "content": "pickle.HIGHEST_PROTOCOL"}),
                            pickle.dumps(Trap()))),
     ["train 1234", "part 2", "source 'src'", "unknown content 'pickle.HIGHEST_PROTOCOL'"]),
    # msgpack parts
    ("payload-not-msgpack", v2(payload=b"\xc1"), ["train 1234", "part 1", "payload"]),
    ("payload-trailing", v2(payload=pack({}) + b"\x90"), ["part 1", "ExtraData"]),
    ("payload-not-map", v2(payload=pack([1])), ["part 1", "source 'src'", "must be a map"]),
    ("payload-bytes-key", v2(payload=pack({b"x": 1})), ["part 1", "non-string key b'x'"]),
    ("payload-int-key", v2(payload=pack({"x": {1: 2}})), ["part 1", "map key"]),
    ("payload-ext", v2(payload=pack({"x": [msgpack.ExtType(9, b"")]})),
     ["part 1", "key 'x'", "extension type 9"]),
    ("payload-timestamp", v2(payload=pack({"t": msgpack.Timestamp(5, 0)})),
     ["part 1", "key 't'", "timestamp"]),
    ("metadata-not-map", v2(header=pack({"source": "src", "content": "msgpack",
                                         "metadata": "x"})), ["part 0", "key 'metadata'"]),
    ("tid-not-int", v2(header=head(metadata={"timestamp.tid": 1.5})), ["'timestamp.tid'"]),
    ("duplicate-msgpack", v2() + v2(), ["train 1234", "part 2", "second 'msgpack' part"]),
    ("legacy-metadata-not-map", [pack({"source": "src", "content": "msgpack"}),
                                 pack({"metadata": 3})], ["source 'src'", "must be a map"]),
    # array parts
    ("array-no-path", v2((arr_head(path=DROP), GOOD_ARRAY)), ["part 2", "lacks a string 'path'"]),
    ("array-path-int", v2((arr_head(path=5), GOOD_ARRAY)), ["part 2", "'path' must be a string"]),
    ("array-no-dtype", v2((arr_head(dtype=DROP), GOOD_ARRAY)),
     ["train 1234", "part 2", "source 'src'", "key 'a'", "lacks 'dtype'"]),
    ("array-no-shape", v2((arr_head(shape=DROP), GOOD_ARRAY)), ["key 'a'", "lacks 'shape'"]),
    ("array-shape-not-list", v2((arr_head(shape="2"), GOOD_ARRAY)), ["key 'a'", "shape must"]),
    ("array-shape-negative", v2((arr_head(shape=[-2]), GOOD_ARRAY)), ["non-negative ints"]),
    ("array-shape-float", v2((arr_head(shape=[2.0]), GOOD_ARRAY)), ["non-negative ints"]),
    ("array-shape-bool", v2((arr_head(shape=[True, 2]), GOOD_ARRAY)), ["non-negative ints"]),
    ("array-shape-too-big-int", v2((arr_head(shape=[2**64 - 1]), GOOD_ARRAY)),
     ["non-negative ints"]),
    ("array-too-many-dims", v2((arr_head(shape=[1] * 65), GOOD_ARRAY)), ["65 dimensions"]),
    ("array-absurd-shape", v2((arr_head(shape=[2**40, 2**40, 2**40]), GOOD_ARRAY)),
     ["payload has 4 bytes"]),
    ("array-zero-dim-huge", v2((arr_head(shape=[0, 2**63 - 1]), b"")),
     ["key 'a'", "cannot build array"]),
    ("array-short-payload", v2((arr_head(), GOOD_ARRAY[:3])), ["part 2", "payload has 3 bytes"]),
    ("array-long-payload", v2((arr_head(), GOOD_ARRAY + b"\0")), ["payload has 5 bytes"]),
    ("array-dtype-O", v2((arr_head(dtype="O"), b"\0" * 16)), ["key 'a'", "object dtype"]),
    ("array-dtype-object", v2((arr_head(dtype="object"), b"\0" * 16)), ["object dtype"]),
    ("array-dtype-bogus", v2((arr_head(dtype="uint17"), GOOD_ARRAY)), ["unknown dtype 'uint17'"]),
    ("array-dtype-int", v2((arr_head(dtype=2), GOOD_ARRAY)), ["dtype must be a string"]),
    ("array-dtype-subarray", v2((arr_head(dtype="(2,)u1"), GOOD_ARRAY)), ["sub-array dtype"]),
    ("array-dtype-zero-size", v2((arr_head(dtype="V0", shape=[0]), b"")), ["zero-size dtype"]),
    ("array-dtype-huge-string", v2((arr_head(dtype="u" * 10_000), GOOD_ARRAY)), ["too long"]),
    ("array-structured-object", v2((arr_head(dtype="[('a', 'O')]"), b"\0" * 16)), ["object"]),
    ("array-structured-code", v2((arr_head(dtype="[__import__('os').getpid()]"), GOOD_ARRAY)),
     ["unreadable structured dtype"]),
    ("array-structured-bad-field", v2((arr_head(dtype=[["a"]]), GOOD_ARRAY)),
     ["structured dtype field"]),
    ("array-duplicate", v2((arr_head(), GOOD_ARRAY), (arr_head(), GOOD_ARRAY)),
     ["part 4", "key 'a'", "second array part"]),
    ("image-data-bad-params", v2((arr_head(content="ImageData", params=[1]), GOOD_ARRAY)),
     ["key 'a'", "params"]),
]


@pytest.mark.parametrize("parts, expected", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_malformed_message(parts, expected):
    with pytest.raises(ProtocolError) as info:
        decode(parts)
    text = str(info.value)
    for piece in expected:
        assert piece in text, f"{piece!r} not in {text!r}"
    assert not UNPICKLED


def test_error_attributes_are_set():
    with pytest.raises(ProtocolError) as info:
        decode(v2((arr_head(shape=[3]), GOOD_ARRAY)))
    err = info.value
    assert (err.part, err.source, err.key, err.train_id) == (2, "src", "a", TID)
    assert "needs 6" in err.reason


def test_corpus_entries_are_otherwise_valid():
    """The corpus's building blocks decode: each case breaks exactly what it names."""
    assert decode(v2((arr_head(), GOOD_ARRAY))).data["src"]["a"].tolist() == [1, 2]
    assert decode(v1_array()).data["src"]["k"].tolist() == [1, 2]


VALID_MESSAGES = [
    encode({"src/a": {"x": [1, "two", {"k": b"3"}], "img": np.arange(12, dtype="<u2")},
            "src/b": {"y": 1.5, "z": np.zeros((2, 3), ">f4")}},
           {"src/a": META, "src/b": META}),
    encode({"src/a": {"x": [1, "two"], "img": np.arange(6, dtype="u1").reshape(2, 3),
                      "s": np.float32(3)}}, {"src/a": META}, protocol_version="1.0"),
    [pack({"source": "s", "content": "msgpack"}), pack({"metadata": META, "v": 1}),
     pack({"source": "s", "content": "ImageData", "path": "im", "dtype": "uint8",
           "shape": [2], "params": {"p": 1}}), b"\x01\x02"],
]
VALID = [[bytes(p) for p in message] for message in VALID_MESSAGES]


def _decode_or_protocol_error(parts):
    start = time.monotonic()
    try:
        decode(parts)
    except ProtocolError:
        pass
    assert time.monotonic() - start < 2.0
    assert not UNPICKLED


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.binary(max_size=64), max_size=6))
def test_fuzz_random_bytes(parts):
    _decode_or_protocol_error(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(
    [p for message in VALID for p in message] + [b"\x80", b"", b"\xc0", pack({})]), max_size=8))
def test_fuzz_recombined_parts(parts):
    _decode_or_protocol_error(parts)


@settings(max_examples=300, deadline=None)
@given(message=st.sampled_from(VALID), data=st.data())
def test_fuzz_mutations(message, data):
    parts = [bytearray(p) for p in message]
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "shuffle", "duplicate", "drop",
                                          "byte"]))
        if not parts:
            break
        i = data.draw(st.integers(0, len(parts) - 1))
        if kind == "flip" and parts[i]:
            pos = data.draw(st.integers(0, len(parts[i]) - 1))
            parts[i][pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "byte" and parts[i]:
            pos = data.draw(st.integers(0, min(len(parts[i]), 128) - 1))
            parts[i][pos] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            parts[i] = parts[i][:data.draw(st.integers(0, len(parts[i])))]
        elif kind == "shuffle":
            parts = data.draw(st.permutations(parts))
        elif kind == "duplicate":
            parts.insert(i, bytearray(parts[i]))
        elif kind == "drop":
            del parts[i]
    _decode_or_protocol_error(parts)


ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=6), st.binary(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6,
)
DTYPES = st.sampled_from(["<u2", "uint16", ">f4", "bool", "O", "object", "(2,)f4", "V0", "U",
                          "M8[ns]", "a", "i4,f8", "[('a', '<i4')]", "[('a', 'O')]", "c16",
                          "[[[[[[[[[[[[1]]]]]]]]]]]]", "S2", "<U1"])
SHAPES = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 2**31, 2**63 - 1, 2**64 - 1]), max_size=4)
PAYLOADS = st.one_of(st.binary(max_size=16), st.sampled_from([b"", GOOD_ARRAY, b"\x80"]),
                     ANY_VALUE.map(pack))


def _maybe(strategy):
    return st.one_of(strategy, ANY_VALUE, st.just(DROP))


HEADERS = st.fixed_dictionaries({
    "source": _maybe(st.sampled_from(["src", "other"])),
    "content": _maybe(st.sampled_from(["msgpack", "array", "ImageData", "pickle"])),
    "path": _maybe(st.sampled_from(["a", "b"])),
    "dtype": _maybe(DTYPES),
    "shape": _maybe(SHAPES),
    "metadata": _maybe(st.just(META)),
    "params": _maybe(st.just({"p": 1})),
}).map(lambda h: pack({k: v for k, v in h.items() if v is not DROP}))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(HEADERS, PAYLOADS), min_size=1, max_size=4))
def test_fuzz_structured_headers(pairs):
    _decode_or_protocol_error([p for pair in pairs for p in pair])


@settings(max_examples=200, deadline=None)
@given(fields=st.fixed_dictionaries({
    b"nd": _maybe(st.booleans()), b"type": _maybe(DTYPES), b"kind": _maybe(
        st.sampled_from([b"", b"V", b"O", b"x"])),
    b"shape": _maybe(SHAPES), b"data": _maybe(st.sampled_from([GOOD_ARRAY, b"", b"\0" * 8])),
    b"complex": _maybe(st.just(True)),
}))
def test_fuzz_v1_numpy_maps(fields):
    _decode_or_protocol_error(v1_array(fields))
