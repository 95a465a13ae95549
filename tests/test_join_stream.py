"""The streamz join node ``join_trains`` and ``Stream.from_karabo_bridge([...])`` over sockets."""

from __future__ import annotations

import numpy as np
import xarray as xr
from _waiting import wait_for
from streamz import Stream

from kb_streams.join import Late
from kb_streams.join_stream import MISSING
from kb_streams.server import BridgeServer
from kb_streams.train import Train


def item(tid: int, value: float = 0.0) -> xr.DataArray:
    return xr.DataArray(value, coords={"trainId": tid})


def test_node_emits_tuples_in_train_order_and_reports_the_rest():
    det, xgm, motor = Stream(stream_name="det"), Stream(stream_name="xgm"), Stream()
    node = det.join_trains(xgm, latest=[motor], window=3, partial="emit")
    out, partial, late = (node.sink_to_list(), node.partial.sink_to_list(),
                          node.late.sink_to_list())
    errors = node.errors.sink_to_list()
    motor.emit(item(0, 0.5))
    det.emit(item(1, 1.0))
    det.emit(item(2, 2.0))
    xgm.emit(item(2, 20.0))           # 2 is complete but waits behind 1
    xgm.emit(item(1, 10.0))
    det.emit(item(3, 3.0))
    det.emit(item(6, 6.0))            # closes 3 without xgm
    xgm.emit(item(3, 30.0))           # late
    xgm.emit(xr.DataArray(1.0))       # no train ID
    assert [(o.train_id, float(o[0]), o.missing) for o in out] == [
        (1, 1.0, ()), (2, 2.0, ()), (3, 3.0, ("xgm",))]
    assert out[0].names == ("det", "xgm", "input2") and float(out[0].as_dict()["input2"]) == 0.5
    assert out[2][1] is MISSING
    assert [(p.train_id, p.present, p.missing, p.reason) for p in partial] == [
        (3, ("det", "input2"), ("xgm",), "window")]
    assert late == [Late(3, "xgm")]
    assert [e["input"] for e in errors] == ["xgm"]
    stats = node.stats
    assert (stats.matched, stats.partial, stats.late, stats.dropped) == (
        2, 1, 1, {"window": 1, "no_train_id": 1})
    node.stop()
    assert node.join(1) and [o.train_id for o in out][-1] == 6


def test_node_timeout_closes_a_train_in_wall_time():
    a, b = Stream(), Stream()
    node = a.join_trains(b, window=1000, timeout=0.2)
    partial = node.partial.sink_to_list()
    try:
        a.emit(item(5))
        assert wait_for(lambda: len(partial) == 1, timeout=5)
        assert partial[0].reason == "timeout" and partial[0].train_id == 5
    finally:
        node.stop()


def bridge_trains(source: str, tids, value=lambda tid: tid):
    for tid in tids:
        yield ({source: {"value": np.float64(value(tid))}},
               {source: {"timestamp.tid": tid}})


def test_from_karabo_bridge_with_a_list_merges_the_bridges_by_train_id():
    tids = range(1000, 1030)
    dropped = {1005, 1017}
    with BridgeServer(sock="PUSH") as det, BridgeServer(sock="PUSH") as slow:
        # unpaced, one server can be all its trains ahead of the other: a window wider than the
        # run keeps every train open, and the timeout closes the two the slow bridge never sends
        node = Stream.from_karabo_bridge([det.endpoint, slow.endpoint], "PULL",
                                         window=len(tids) + 5, timeout=1.0)
        out, partial = node.sink_to_list(), node.partial.sink_to_list()
        node.start()
        try:
            det.start(bridge_trains("DET/A", tids))
            slow.start(bridge_trains("MOTOR/B", [t for t in tids if t not in dropped],
                                     lambda tid: -tid))
            assert wait_for(lambda: len(out) + len(partial) >= len(tids), timeout=10)
        finally:
            node.stop()
            assert node.join(5)
    assert [t.train_id for t in out] == [t for t in tids if t not in dropped]
    assert all(isinstance(t, Train) and t.sources == ["DET/A", "MOTOR/B"] for t in out)
    assert all(t["MOTOR/B", "value"].value == -t.train_id for t in out)
    assert sorted(p.train_id for p in partial) == sorted(dropped)
    assert all(p.missing == (slow.endpoint,) for p in partial)
    assert node.stats.matched == len(tids) - len(dropped)


def test_a_graph_using_only_a_side_stream_keeps_its_join():
    import gc

    a, b = Stream(), Stream()
    partial = a.join_trains(b, window=1).partial.sink_to_list()
    gc.collect()
    a.emit(item(1))
    a.emit(item(2))
    assert [p.train_id for p in partial] == [1]
