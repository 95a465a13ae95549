"""Resetting reductions on a signal: a key's change, a stream of events, a call."""

from __future__ import annotations

import xarray as xr
from streamz import Stream

from kb_streams.reduce import BinnedStats, Histogram, RunningStats, Segments


def stepped(step: int, value: float, tid: int = 0) -> xr.DataArray:
    return xr.DataArray(value, coords={"trainId": tid}, attrs={"step": step})


def test_segments_close_on_a_change_of_key_with_the_final_result_labelled():
    seg = Segments(Histogram(2, (0, 2)), key=lambda x: x.attrs["step"])
    finals = []
    for tid, (step, value) in enumerate([(5, 0.5), (5, 1.5), (6, 1.5), (7, 0.5), (7, 0.5)]):
        finals += seg.update(stepped(step, value, tid))
    assert [(f.attrs["segment"], f.attrs["final"], f.values.tolist()) for f in finals] == [
        (5, 1, [1, 1]), (6, 1, [0, 1])]
    assert finals[0].attrs["first_train_id"] == 0 and finals[0].attrs["last_train_id"] == 1
    assert seg.result().attrs["segment"] == 7 and seg.result().values.tolist() == [2, 0]


def test_an_empty_segment_has_no_final_result():
    seg = Segments(RunningStats(), label="run 1")
    assert seg.close("run 2") is None and seg.label == "run 2" and seg.closed == 0


def test_reduce_online_resets_on_events_from_another_stream():
    values, scan = Stream(), Stream()
    node = values.reduce_online(BinnedStats([0, 1, 2], dim="delay"), reset_on=scan)
    out, finals = node.sink_to_list(), node.finals.sink_to_list()
    scan.emit("scan 1")                      # nothing yet: no final result
    for pair in [(0.5, 1.0), (1.5, 2.0)]:
        values.emit(pair)
    scan.emit("scan 2")
    values.emit((0.5, 3.0))
    assert [f.attrs["segment"] for f in finals] == ["scan 1"]
    assert finals[0]["count"].values.tolist() == [1, 1]
    assert [(o.attrs["segment"], o.attrs["final"]) for o in out] == [
        ("scan 1", 0), ("scan 1", 0), ("scan 1", 1), ("scan 2", 0)]
    assert out[-1]["count"].values.tolist() == [1, 0]


def test_reduce_online_reset_from_user_code_and_snapshots():
    values = Stream()
    node = values.reduce_online(RunningStats(), emit="snapshot")
    finals = node.finals.sink_to_list()
    values.emit(1.0)
    values.emit(3.0)
    final = node.reset(label="after")
    assert finals == [final] and final.final == 1 and float(final.mean()) == 2.0
    assert node.reduction.n_updates == 0 and node.label == "after"
    assert node.reset() is None


def test_a_key_that_fails_is_counted_and_skipped():
    values = Stream()
    node = values.reduce_online(RunningStats(), segment=lambda x: x.attrs["step"])
    values.emit(xr.DataArray(1.0))
    values.emit(stepped(1, 2.0))
    assert node.n_errors == 1 and node.n_items == 1


def test_the_demo_curve_starts_afresh_when_the_scan_comes_back_to_its_start():
    from kb_streams.demo import SCAN_DELAYS, bin_ratios

    ratios = Stream()
    curve = bin_ratios(ratios)
    up_and_down = list(SCAN_DELAYS) + list(SCAN_DELAYS[-2:0:-1])   # one pass, 8 trains
    for delay in up_and_down:
        ratios.emit((delay, 1.0))
    assert curve.result["count"].values.tolist() == [1, 2, 2, 2, 1] and curve.trains == 8
    assert curve.result.attrs["segment"] == 0
    ratios.emit((SCAN_DELAYS[0], 1.0))                             # the next pass begins
    assert curve.result["count"].values.tolist() == [1, 0, 0, 0, 0]
    assert curve.result.attrs["segment"] == 1 and "scan pass 1" in curve.table()
    assert curve.trains == 9


def test_a_graph_using_only_the_finals_keeps_its_node():
    import gc

    values = Stream()
    finals = values.reduce_online(RunningStats(), segment=lambda x: x.attrs["step"]).finals
    out = finals.sink_to_list()
    gc.collect()
    for step in (1, 1, 2):
        values.emit(stepped(step, 1.0))
    assert len(out) == 1
