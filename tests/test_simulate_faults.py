"""kb_streams.simulate faults, and simulated trains through a real bridge socket."""

from __future__ import annotations

import numpy as np
import pytest
from karabo_bridge import Client as ReferenceClient

from kb_streams import protocol
from kb_streams.errors import ProtocolError
from kb_streams.server import BridgeServer
from kb_streams.simulate import CORRUPTIONS, Faults, simulate

AGIPD = "SPB_DET_AGIPD1M-1"


def _tid(item) -> int:
    data, meta = item
    return next(iter(meta.values()))["timestamp.tid"]


def assert_same_train(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for source in a:
        assert sorted(a[source]) == sorted(b[source]), source
        for key, value in a[source].items():
            other = b[source][key]
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype and value.shape == other.shape, (source, key)
                assert np.array_equal(value, other, equal_nan=True), (source, key)
            else:
                assert value == other, (source, key)


def test_skip_every_leaves_gaps() -> None:
    sim = simulate("CAMERA", pool_size=1, extras=(), first_train_id=0,
                   faults={"skip_every": 3})
    assert [_tid(next(sim)) for _ in range(6)] == [0, 1, 3, 4, 6, 7]
    assert sim.truth(2).skipped and not sim.truth(3).skipped


def test_missing_module_per_module_sources() -> None:
    sim = simulate("AGIPD-modules", pulses=1, pool_size=1, extras=(),
                   faults="missing_module=3+7,missing_every=2")
    present = [sorted(next(sim)[0]) for _ in range(4)]
    gone = {f"{AGIPD}/DET/3CH0:xtdf", f"{AGIPD}/DET/7CH0:xtdf"}
    assert [len(p) for p in present] == [16, 14, 16, 14]
    assert not gone & set(present[1]) and gone <= set(present[0])
    jf = simulate("JUNGFRAU", pulses=1, modules=3, pool_size=1, extras=(),
                  faults={"missing_module": [2]})
    assert sorted(next(jf)[0]) == ["FXE_XAD_JF1M/CORR/JNGFR01:output",
                                   "FXE_XAD_JF1M/CORR/JNGFR03:output"]


@pytest.mark.parametrize("raw", [False, True])
def test_missing_module_combined_source_is_filled(raw: bool) -> None:
    sim = simulate("AGIPD", pulses=2, pool_size=1, extras=(), raw=raw,
                   faults={"missing_module": 3})
    data, _ = next(sim)
    combined = data[f"{AGIPD}/CAL/APPEND_{'RAW' if raw else 'CORRECTED'}"]
    image = combined["image.data"]
    assert combined["modulesPresent"] == [m != 3 for m in range(16)]
    if raw:
        assert (image[3] == 0).all() and (image[2] > 0).all()
    else:
        assert np.isnan(image[3]).all() and not np.isnan(image[2]).any()


def _pair(fault: dict):
    """A faulty simulator and a fault-free twin producing the same trains."""
    options = dict(pulses=2, pool_size=2, timestamps="train", extras=("xgm", "delay"))
    faulty, clean = simulate("AGIPD-modules", faults=fault, **options), simulate(
        "AGIPD-modules", **options)
    clean._start_ns = faulty._start_ns  # same timestamps
    return faulty, clean


def test_shuffled_message_decodes_to_the_same_train() -> None:
    faulty, clean = _pair({"shuffle_every": 2})
    for i in range(4):
        item, (data, meta) = next(faulty), next(clean)
        if i % 2 == 0:
            assert isinstance(item, tuple)
            continue
        assert isinstance(item, list)
        ordered = protocol.encode(data, meta)
        assert len(item) == len(ordered)
        headers = [bytes(memoryview(f)) for f in item[::2]]
        assert headers != [bytes(memoryview(f)) for f in ordered[::2]]
        message = protocol.decode(item)
        assert message.meta == meta
        assert_same_train(message.data, data)


@pytest.mark.parametrize("protocol_version", ["2.2", "1.0"])
def test_corrupted_messages_raise_protocol_error(protocol_version: str) -> None:
    faulty, clean = _pair({"corrupt_every": 1})
    faulty.protocol_version = protocol_version
    for _ in CORRUPTIONS:
        frames = next(faulty)
        data, meta = next(clean)
        assert isinstance(frames, list)
        with pytest.raises(ProtocolError):
            protocol.decode(frames)
    # corruption never touches the pool: the next clean encode still decodes
    assert_same_train(protocol.decode(protocol.encode(data, meta)).data, data)


def test_faults_combine_and_parse() -> None:
    faults = Faults.parse(["skip_every=5", "shuffle_every=2,corrupt_every=3"])
    kinds = [None if faults.skipped(i) else faults.wire_fault(i) for i in range(6)]
    assert kinds == [None, "shuffle", "corrupt", "shuffle", None, "corrupt"]
    assert Faults.parse(None) == Faults() and not Faults().active
    spec = Faults.parse({"missing_module": "3+4", "missing_every": 2, "corrupt_every": 13})
    assert Faults.parse(str(spec)) == spec


def test_simulated_trains_through_a_bridge_socket(ipc_endpoint: str) -> None:
    """Our server sends the simulator's items; the reference client reads them unchanged,
    and a shuffled message reaches a client as the same train."""
    options = dict(pulses=2, pool_size=2, timestamps="train", layout="file", raw=True)
    sim = simulate("AGIPD-modules", faults={"shuffle_every": 3}, **options)
    twin = simulate("AGIPD-modules", **options)
    twin._start_ns = sim._start_ns
    with BridgeServer(ipc_endpoint, sock="REP") as server:
        server.start(sim, trains=2)
        with ReferenceClient(ipc_endpoint, timeout=20) as client:
            for _ in range(2):
                data, meta = client.next()
                expected, expected_meta = next(twin)
                assert meta == expected_meta
                assert_same_train(data, expected)
        assert server.wait(10)
    # the third train is shuffled: a reference client would fail on it, our decoder does not
    frames = next(sim)
    assert isinstance(frames, list)
    wire = [bytes(memoryview(f)) for f in frames]
    assert_same_train(protocol.decode(wire).data, next(twin)[0])


@pytest.mark.parametrize("name", ["AGIPD-modules", "AGIPD", "LPD", "JUNGFRAU", "EPIX", "CAMERA"])
@pytest.mark.parametrize("layout", ["online", "file"])
def test_every_simulator_round_trips_the_codec(name: str, layout: str) -> None:
    """Both protocol versions carry every simulated train unchanged (types included)."""
    sim = simulate(name, pulses=None if name in ("EPIX", "CAMERA") else 2, pool_size=1,
                   layout=layout)
    data, meta = next(sim)
    for version in ("2.2", "1.0"):
        message = protocol.decode(protocol.encode(data, meta, protocol_version=version))
        assert message.protocol_version == version
        assert message.meta == meta
        # 1.0 carries the metadata inside the data; compare the rest
        assert_same_train(_without_metadata(message.data), _without_metadata(data))


def _without_metadata(data: dict) -> dict:
    return {source: {k: v for k, v in values.items() if k != "metadata"}
            for source, values in data.items()}
