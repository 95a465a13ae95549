"""kb_streams.reduce: mergeable online reductions and the streamz node driving them."""

from __future__ import annotations

import logging
import pickle
import warnings

import hypothesis.strategies as st
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays
from streamz import Stream

from kb_streams.reduce import (
    BinnedStats,
    Histogram,
    PumpProbe,
    RollingMean,
    RunningStats,
    merge_all,
)

SETTINGS = settings(max_examples=40, deadline=None)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
maybe_nan = st.one_of(finite, st.just(np.nan))
cuts = st.lists(st.integers(0, 16), max_size=4)


def _labelled(values, index):
    values = np.asarray(values, dtype=np.float64)
    return xr.DataArray(values, dims=("pulse",) + tuple(f"d{i}" for i in range(values.ndim - 1)),
                        coords={"pulse": np.arange(values.shape[0]) * 2,
                                "trainId": 10000 + index},
                        name="SA1_XGM/XGM/DOOCS:output.data.intensityTD",
                        attrs={"source": "SA1_XGM/XGM/DOOCS:output",
                               "timestamp": np.datetime64(index, "s")})


def _single_and_merged(factory, items, cut_points, feed=lambda r, x: r.update(x)):
    single = factory()
    for item in items:
        feed(single, item)
    bounds = [0, *sorted(min(c, len(items)) for c in cut_points), len(items)]
    parts = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        part = factory()
        for item in items[start:stop]:
            feed(part, item)
        parts.append(pickle.loads(pickle.dumps(part)))  # as if gathered from a worker
    return single, parts


def _same_result(single, merged, *, square=()):
    assert merged.n_updates == single.n_updates
    assert (merged.first_train_id, merged.last_train_id) == (single.first_train_id,
                                                            single.last_train_id)
    if single.n_updates == 0:
        for reduction in (single, merged):
            with pytest.raises(ValueError, match="no data"):
                reduction.result()
        return
    a, b = single.result(), merged.result()
    if isinstance(a, xr.Dataset):
        for name in set(square) & set(a.data_vars):  # sqrt magnifies rounding near zero
            a[name], b[name] = a[name] ** 2, b[name] ** 2
    xr.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-6)
    assert a.attrs == b.attrs


# --- merge over any split equals one pass ------------------------------------------------


@SETTINGS
@given(items=st.lists(arrays(np.float64, (3, 2), elements=finite), max_size=16),
       cut_points=cuts, dim=st.sampled_from([None, "pulse", ("pulse", "d0")]))
def test_running_stats_merge_equals_single_pass(items, cut_points, dim):
    items = [_labelled(v, i) for i, v in enumerate(items)]
    single, parts = _single_and_merged(lambda: RunningStats(dim=dim, ddof=1), items, cut_points)
    _same_result(single, merge_all(parts), square=["std"])
    if items:
        stacked = np.stack([x.values for x in items])
        axes = (0,) + tuple(1 + items[0].dims.index(d) for d in
                            ((dim,) if isinstance(dim, str) else dim or ()))
        np.testing.assert_allclose(single.mean().values, stacked.mean(axis=axes), atol=1e-9)


@SETTINGS
@given(items=st.lists(arrays(np.float64, (4,), elements=maybe_nan), max_size=16),
       cut_points=cuts)
def test_running_stats_skipna_merge(items, cut_points):
    items = [_labelled(v, i) for i, v in enumerate(items)]
    single, parts = _single_and_merged(lambda: RunningStats(skipna=True), items, cut_points)
    _same_result(single, merge_all(parts), square=["std"])
    if items:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            expected = np.nanmean(np.stack([x.values for x in items]), axis=0)
        np.testing.assert_allclose(single.mean().values, expected, atol=1e-9)


@SETTINGS
@given(items=st.lists(arrays(np.float64, (2,), elements=maybe_nan), max_size=16),
       cut_points=cuts, window=st.integers(1, 5), reverse=st.booleans(), skipna=st.booleans())
def test_rolling_mean_merge_equals_single_pass(items, cut_points, window, reverse, skipna):
    items = [_labelled(v, i) for i, v in enumerate(items)]
    single, parts = _single_and_merged(lambda: RollingMean(window, skipna=skipna), items,
                                       cut_points)
    merged = merge_all(parts[::-1] if reverse else parts)  # train IDs put them in order
    _same_result(single, merged)
    if items:
        window_values = np.stack([x.values for x in items[-window:]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            expected = (np.nanmean if skipna else np.mean)(window_values, axis=0)
        np.testing.assert_allclose(single.result().values, expected, atol=1e-9)


@SETTINGS
@given(items=st.lists(st.floats(-5, 5), max_size=12), cut_points=cuts)
def test_rolling_mean_without_train_ids_keeps_arrival_order(items, cut_points):
    single, parts = _single_and_merged(lambda: RollingMean(3), items, cut_points)
    _same_result(single, merge_all(parts))


@SETTINGS
@given(items=st.lists(arrays(np.float64, (5,), elements=st.one_of(
           st.floats(-8, 8), st.just(np.nan), st.just(np.inf), st.just(-np.inf))), max_size=12),
       cut_points=cuts, uniform=st.booleans())
def test_histogram_merge_equals_single_pass(items, cut_points, uniform):
    def factory():
        return Histogram(4, range=(-5, 5)) if uniform else Histogram([-5, -1, 0, 2.5, 5])

    items = [_labelled(v, i) for i, v in enumerate(items)]
    single, parts = _single_and_merged(factory, items, cut_points)
    _same_result(single, merge_all(parts))
    if items:
        values = np.concatenate([x.values for x in items])
        res = single.result()
        total = int(res.sum()) + res.attrs["underflow"] + res.attrs["overflow"]
        assert total + res.attrs["nan"] == values.size
        assert res.attrs["nan"] == int(np.isnan(values).sum())
        assert res.attrs["overflow"] == int((values > 5).sum())


@SETTINGS
@given(items=st.lists(st.tuples(st.one_of(st.floats(-2, 12), st.just(np.nan)),
                                arrays(np.float64, (2,), elements=finite)), max_size=16),
       cut_points=cuts)
def test_binned_stats_merge_equals_single_pass(items, cut_points):
    items = [(by, _labelled(v, i)) for i, (by, v) in enumerate(items)]
    single, parts = _single_and_merged(lambda: BinnedStats([0, 2, 5, 10], dim="delay",
                                                           ddof=1), items, cut_points)
    _same_result(single, merge_all(parts), square=["std", "sem"])
    in_bin = [(by, x) for by, x in items if 2 <= by < 5]
    if in_bin:
        mean = single.result()["mean"].sel(delay=3.5).values
        np.testing.assert_allclose(mean, np.mean([x.values for _, x in in_bin], axis=0),
                                   atol=1e-9)


@SETTINGS
@given(items=st.lists(st.tuples(st.floats(0, 3), arrays(np.float64, (4,), elements=finite)),
                      max_size=12),
       cut_points=cuts, binned=st.booleans())
def test_pump_probe_merge_equals_single_pass(items, cut_points, binned):
    def factory():
        into = BinnedStats(3, range=(0, 3), dim="delay") if binned else RunningStats()
        return PumpProbe(on=slice(0, None, 2), off=[2, 6], into=into)  # off by pulse ID

    items = [(by, _labelled(v, i)) for i, (by, v) in enumerate(items)]
    feed = (lambda r, item: r.update(item[1], by=item[0])) if binned else \
        (lambda r, item: r.update(item[1]))
    single, parts = _single_and_merged(factory, items, cut_points, feed)
    _same_result(single, merge_all(parts), square=["std", "sem"])
    if items and not binned:
        on = np.mean([x.values[[0, 2]].mean() for _, x in items])
        off = np.mean([x.values[[1, 3]].mean() for _, x in items])
        got = single.result()["mean"]
        np.testing.assert_allclose(got.sel(signal=["on", "off", "on-off"]).values,
                                   [on, off, on - off], atol=1e-9)


# --- contract details --------------------------------------------------------------------


@pytest.mark.parametrize("factory", [
    lambda: RunningStats(), lambda: RollingMean(2), lambda: Histogram(3, range=(0, 3)),
    lambda: BinnedStats([0, 1, 2]), lambda: PumpProbe(on=[True, False], off=[False, True]),
])
def test_reset_forgets_everything(factory):
    def feed(reduction, value):
        x = np.array([value, 0.5])
        return reduction.update((0.5, x)) if isinstance(reduction, BinnedStats) \
            else reduction.update(x)

    reduction = factory()
    feed(feed(reduction, 9.0), 7.0)
    assert reduction.reset() is reduction
    assert reduction.n_updates == 0
    with pytest.raises(ValueError, match="no data"):
        reduction.result()
    fresh = feed(factory(), 1.0)
    xr.testing.assert_identical(feed(reduction, 1.0).result(), fresh.result())


def test_results_keep_coordinates_and_drop_per_train_labels():
    stats = RunningStats()
    for i in range(3):
        stats.update(_labelled(np.full((3, 2), float(i)), i))
    mean = stats.mean()
    assert mean.dims == ("pulse", "d0") and mean.pulse.values.tolist() == [0, 2, 4]
    assert "trainId" not in mean.coords and "timestamp" not in mean.attrs
    assert mean.attrs["source"] == "SA1_XGM/XGM/DOOCS:output"
    assert (mean.attrs["first_train_id"], mean.attrs["last_train_id"]) == (10000, 10002)
    assert mean.name == "SA1_XGM/XGM/DOOCS:output.data.intensityTD"
    transposed = _labelled(np.full((3, 2), 3.0), 3).transpose()
    assert float(stats.update(transposed).mean()[0, 0]) == 1.5  # aligned by dim name


def test_welford_is_stable_with_a_large_offset():
    rng = np.random.default_rng(1)
    values = 1e9 + rng.random((200, 3))
    stats = RunningStats()
    for row in values:
        stats.update(row)
    np.testing.assert_allclose(stats.var().values, values.var(axis=0), rtol=1e-6)


def test_state_is_result_sized_and_holds_no_input():
    big = np.ones((64, 512, 128), np.float32)  # a 16 MB "train"
    stats = RunningStats(dim="dim_0").update(big)
    roll = RollingMean(4, dim="dim_0").update(big)
    result_bytes = 512 * 128 * 8
    assert len(pickle.dumps(stats)) < 2 * result_bytes + 10_000
    assert len(pickle.dumps(roll)) < result_bytes + 10_000
    assert float(stats.mean()[0, 0]) == 1.0


def test_merge_refuses_different_kinds_and_parameters():
    with pytest.raises(ValueError, match="different parameters"):
        Histogram(3, range=(0, 1)).merge(Histogram(4, range=(0, 1)))
    with pytest.raises(TypeError, match="cannot merge"):
        RunningStats().merge(RollingMean(2))
    with pytest.raises(ValueError, match="shape"):
        RunningStats().update(np.ones(3)).merge(RunningStats().update(np.ones(4)))
    with pytest.raises(TypeError, match="by="):
        BinnedStats([0, 1]).update(np.ones(3))
    with pytest.raises(ValueError, match="selects no pulse"):
        PumpProbe(on=slice(5, None), off=slice(0, 1)).update(np.ones(4))
    assert (RunningStats().update(1.0) + RunningStats().update(3.0)).n_updates == 2


# --- the streamz node --------------------------------------------------------------------


def test_stream_node_survives_a_bad_train(caplog):
    source = Stream()
    node = source.reduce_online(RunningStats(dim="pulse"))
    results = node.sink_to_list()
    with caplog.at_level(logging.ERROR, logger="kb_streams.reduce.stream"):
        source.emit(_labelled([1.0, 2.0, 3.0], 0))
        source.emit(_labelled([[1.0], [2.0]], 1))  # another dim: cannot be pooled
        source.emit(_labelled([5.0, 6.0, 7.0], 2))
    assert [float(r["mean"]) for r in results] == [2.0, 4.0]
    assert node.n_errors == 1 and isinstance(node.last_error, ValueError)
    assert "train 10001" in caplog.text


def test_stream_node_snapshots_every_n_and_merges_partials():
    source = Stream()
    snapshots = source.reduce_online(Histogram(2, range=(0, 2)), emit="snapshot",
                                     every=2).sink_to_list()
    for value in [0.5, 1.5, 1.5, 0.5, 1.0]:
        source.emit(np.array([value]))
    assert [s.n_updates for s in snapshots] == [2, 4]
    assert snapshots[0].counts.tolist() == [1, 1]  # not changed by later updates

    # partial results (e.g. gathered from Dask workers) merge into a running total
    total = Stream()
    merged = total.reduce_online(Histogram(2, range=(0, 2))).sink_to_list()
    for part in snapshots:
        total.emit(part)
    assert merged[-1].values.tolist() == [3, 3]

    with pytest.raises(ValueError, match="emit"):
        Stream().reduce_online(RunningStats(), emit="everything")
    with pytest.raises(ValueError, match="every"):
        Stream().reduce_online(RunningStats(), every=0)


def test_stream_node_emit_self_and_pump_probe_pairs():
    source = Stream()
    curve = PumpProbe(on=slice(0, None, 2), off=slice(1, None, 2),
                      into=BinnedStats([0, 1, 2], dim="delay"))
    out = source.reduce_online(curve, emit="self").sink_to_list()
    source.emit((0.5, np.array([4.0, 1.0, 4.0, 1.0])))
    source.emit((1.5, np.array([2.0, 1.0, 2.0, 1.0])))
    assert out == [curve, curve]
    diff = curve.result()["mean"].sel(signal="on-off").values.tolist()
    assert diff == [3.0, 1.0]
