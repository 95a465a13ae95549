"""kb_streams.train: train ID, timestamps, look-ups, select, views on what a client returns."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import xarray as xr
from karabo_bridge import Client, ServerInThread, deserialize, serialize

from kb_streams.components import AGIPD1M
from kb_streams.errors import KBStreamsError
from kb_streams.protocol import Message
from kb_streams.train import PropertyNameError, SourceNameError, Train

XGM = "SA1_XTD2_XGM/XGM/DOOCS:output"
MOTOR = "SA1_XTD2_MOTOR/MOTOR/DELAY"
DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"


def _meta(tid, sec="1795612356", frac="759750800000000000", **extra):
    return {"timestamp.tid": tid, "timestamp.sec": sec, "timestamp.frac": frac, **extra}


def _train(tid=10000):
    data = {
        XGM: {"data.intensityTD": np.arange(10.0), "data.nPulses": 10},
        MOTOR: {"actualPosition": 1.25, "name": "delay"},
        DET: {"image.data": np.zeros((128, 512, 4), np.float32),
              "image.pulseId": np.arange(4, dtype=np.uint64),
              "image.cellId": np.arange(4, dtype=np.uint16)},
    }
    return Train(data, {src: _meta(tid, source=src) for src in data}, protocol_version="2.2")


# --- timestamps --------------------------------------------------------------------------


def test_timestamp_is_exact_integer_nanoseconds():
    # 19 significant digits: a float64 cannot hold this, the integer arithmetic can
    train = Train({XGM: {}}, {XGM: _meta(1, frac="123456789987654321")})
    assert train.timestamp.dtype == np.dtype("datetime64[ns]")
    assert int(train.timestamp.astype("int64")) == 1795612356_123456789


def test_timestamp_short_fraction_is_padded_on_the_right():
    train = Train({XGM: {}}, {XGM: _meta(1, frac="75")})
    assert int(train.timestamp.astype("int64")) == 1795612356_750000000


def test_timestamp_falls_back_to_float_then_nat():
    train = Train({XGM: {}}, {XGM: {"timestamp.tid": 1, "timestamp": 1795612356.25}})
    assert int(train.timestamp.astype("int64")) == 1795612356_250000000
    empty = Train({XGM: {}}, {XGM: {"timestamp.tid": 1}})
    assert np.isnat(empty.timestamp)
    assert empty.age is None


def test_age_counts_from_the_timestamp():
    now = time.time()
    sec, frac = f"{now:.6f}".split(".")
    train = Train({XGM: {}}, {XGM: _meta(1, sec=sec, frac=frac.ljust(18, "0"))})
    assert 0 <= train.age < 60


# --- train ID and metadata ---------------------------------------------------------------


def test_train_id_and_sources():
    train = _train()
    assert train.train_id == 10000
    assert isinstance(train.train_id, int)
    assert train.sources == sorted([XGM, MOTOR, DET])
    assert train.protocol_version == "2.2"
    assert train.train_id_conflicts == {}
    assert DET in train and "nope" not in train and len(train) == 3


def test_disagreeing_train_ids_keep_the_first_and_are_recorded(caplog):
    data = {"A/B/1": {}, "A/B/2": {}, "A/B/3": {}}
    meta = {"A/B/1": {"timestamp.tid": 5}, "A/B/2": {"timestamp.tid": 6},
            "A/B/3": {"timestamp.tid": 5}}
    with caplog.at_level(logging.DEBUG, logger="kb_streams.train"):
        train = Train(data, meta)
    assert train.train_id == 5
    assert train.train_id_conflicts == {"A/B/2": 6}
    assert "disagree" in caplog.text and "'A/B/2': 6" in caplog.text


@pytest.mark.parametrize("layout", ["1.0 nested", "2.1 flat", "no train id"])
def test_metadata_found_inside_the_data(layout):
    if layout == "1.0 nested":
        data = {XGM: {"metadata": _meta(42), "x": 1}}
    elif layout == "2.1 flat":
        data = {XGM: {"metadata.timestamp.tid": 42, "metadata.timestamp.sec": "1795612356",
                      "metadata.timestamp.frac": "759750800000000000", "x": 1}}
    else:
        data = {XGM: {"x": 1}}
    train = Train(data, {XGM: {}})
    if layout == "no train id":
        assert train.train_id is None and np.isnat(train.timestamp)
        assert "train None" in str(pytest.raises(KeyError, train.__getitem__, "Q").value)
    else:
        assert train.train_id == 42
        assert int(train.timestamp.astype("int64")) == 1795612356_759750800
    assert train[XGM].keys() == ["x"]


def test_from_message_duck_type():
    msg = Message({XGM: {"x": np.ones(3)}}, {XGM: _meta(7)}, "1.0", 100)
    train = Train.from_message(msg)
    assert (train.train_id, train.protocol_version) == (7, "1.0")
    assert train.data is msg.data


# --- look-ups ----------------------------------------------------------------------------


def test_key_view_is_the_array_itself():
    train = _train()
    kd = train[XGM, "data.intensityTD"]
    assert kd.ndarray() is train.data[XGM]["data.intensityTD"]
    assert kd.name == f"{XGM}.data.intensityTD"
    assert (kd.shape, kd.dtype, kd.ndim, kd.nbytes) == ((10,), np.dtype(float), 1, 80)
    scalar = train[MOTOR, "actualPosition"]
    assert scalar.shape == () and scalar.ndarray() == 1.25
    assert "10000" in repr(kd)


def test_missing_source_error_names_train_and_close_matches():
    train = _train(10042)
    with pytest.raises(SourceNameError) as info:
        train["SA1_XTD2_XGM/XGM/DOOCS:outptu"]
    message = str(info.value)
    assert "10042" in message and "DOOCS:outptu" in message and repr(XGM) in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, KBStreamsError)
    assert not message.startswith('"')  # not KeyError's repr of the message


def test_missing_key_error_names_source_and_close_matches():
    train = _train(10042)
    with pytest.raises(PropertyNameError) as info:
        train[XGM, "data.intensityTd"]
    message = str(info.value)
    assert "10042" in message and XGM in message and "'data.intensityTD'" in message
    with pytest.raises(KeyError, match="available|none"):
        train[XGM, "zzzzzz"]
    with pytest.raises(TypeError):
        train[XGM, "a", "b"]


def test_source_view_keys_skip_metadata():
    train = Train({XGM: {"metadata": _meta(1), "b": 1, "a": np.ones(2)}})
    assert train[XGM].keys() == ["a", "b"]
    assert list(train[XGM]) == ["a", "b"]
    assert train[XGM].meta["timestamp.tid"] == 1


# --- select ------------------------------------------------------------------------------


def test_select_globs_share_arrays_and_keep_train_id():
    train = _train(10007)
    sel = train.select("*/DET/*", "image.*Id")
    assert sel.sources == [DET]
    assert sel[DET].keys() == ["image.cellId", "image.pulseId"]
    assert sel.data[DET]["image.pulseId"] is train.data[DET]["image.pulseId"]
    assert (sel.train_id, sel.timestamp) == (train.train_id, train.timestamp)
    assert train.select("*", "nothing*").sources == []
    assert train.select().sources == train.sources


def test_select_pairs_and_dict():
    train = _train()
    sel = train.select([("*XGM*", "data.n*"), MOTOR])
    assert sel.sources == sorted([XGM, MOTOR])
    assert sel[XGM].keys() == ["data.nPulses"]
    assert sel[MOTOR].keys() == ["actualPosition", "name"]
    sel = train.select({XGM: None, MOTOR: {"name"}})
    assert sel[XGM].keys() == ["data.intensityTD", "data.nPulses"]
    assert sel[MOTOR].keys() == ["name"]
    with pytest.raises(SourceNameError):
        train.select({"NOT/A/SOURCE": None})


# --- xarray ------------------------------------------------------------------------------


def test_source_dataset_and_key_array():
    train = _train(10003)
    ds = train[DET].xarray()
    assert isinstance(ds, xr.Dataset)
    assert int(ds.trainId) == 10003 and ds.trainId.dtype == np.uint64
    assert ds["image.data"].dims == ("pulse", "slow_scan", "fast_scan")
    assert ds["image.pulseId"].dims == ("pulse",)
    assert ds.attrs["source"] == DET and ds.attrs["protocol"] == "2.2"
    assert np.shares_memory(ds["image.data"].values, train.data[DET]["image.data"])
    da = train[XGM, "data.intensityTD"].xarray()
    assert da.name == f"{XGM}.data.intensityTD" and da.dims == ("dim_0",)
    assert da.attrs == {}  # as EXtra-data's KeyData.xarray(); the time is train.timestamp
    mixed = train[MOTOR].xarray()
    assert mixed["name"].item() == "delay" and float(mixed["actualPosition"]) == 1.25
    with pytest.raises(PropertyNameError):
        train[DET].xarray(keys=["image.nope"])


# --- real bridge messages from the reference package (an independent peer) ---------------


@pytest.mark.parametrize("version", ["1.0", "2.2"])
def test_train_from_reference_serializer(version):
    data = {DET: {"image.data": np.arange(128 * 512 * 2, dtype=np.uint16).reshape(128, 512, 2),
                  "image.pulseId": np.array([10, 12], np.uint64)}}
    meta = {DET: _meta(10011, source=DET)}
    got_data, got_meta = deserialize(serialize(data, meta, protocol_version=version))
    train = Train(got_data, got_meta, protocol_version=version)
    assert train.train_id == 10011
    assert int(train.timestamp.astype("int64")) == 1795612356_759750800
    da = train[DET, "image.data"].xarray()  # as EXtra-data would read it from a file
    assert da.dims == ("trainId", "dim_0", "dim_1")
    assert da.trainId.values.tolist() == [10011, 10011]
    assert np.shares_memory(da.values, got_data[DET]["image.data"])
    np.testing.assert_array_equal(da.values, data[DET]["image.data"].transpose(2, 1, 0))
    labelled = AGIPD1M(train).get_array("image.data")  # detector labels: the detector object
    assert labelled.dims == ("module", "pulse", "slow_scan", "fast_scan")
    assert labelled.pulse.values.tolist() == [10, 12] and int(labelled.train) == 10011


def test_train_over_a_real_socket(tcp_endpoint):
    data = {DET: {"image.data": np.ones((128, 512, 3), np.float32),
                  "image.pulseId": np.arange(3, dtype=np.uint64)}}
    with ServerInThread(tcp_endpoint) as server:
        server.feed(data, {DET: _meta(10020, source=DET)})
        with Client(tcp_endpoint, timeout=10) as client:
            got_data, got_meta = client.next()
    train = Train(got_data, got_meta)
    assert train.train_id == 10020
    image = train[DET, "image.data"]
    assert image.value is got_data[DET]["image.data"]
    assert np.shares_memory(image.xarray().values, image.value)  # a view
    assert image.ndarray().shape == (3, 512, 128)  # EXtra-data's (frame, ss, fs)


def test_train_id_of_a_reduction_result_is_its_last_train():
    from kb_streams.reduce import RunningStats
    from kb_streams.train import train_id_of

    stats = RunningStats()
    for tid in (5, 6):
        stats.update(xr.DataArray([1.0, 2.0], dims="pulse", coords={"trainId": tid}))
    assert train_id_of(stats.result()) == 6
    assert train_id_of(stats.result()["mean"]) == 6
    assert train_id_of((0.5, stats.result()["mean"])) == 6
    assert train_id_of(xr.DataArray(1.0, attrs={"last_train_id": None})) is None
