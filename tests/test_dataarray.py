"""The direct DataArray constructor gives what xarray's public constructor gives."""

import numpy as np
import pytest
import xarray as xr

from kb_streams import _dataarray
from kb_streams._dataarray import new_dataarray
from kb_streams.labels import label_array
from kb_streams.simulate import simulate
from kb_streams.train import Train

DIMS = ("pulse", "slow_scan", "fast_scan")

CASES = {
    "pulse index and per-pulse cells": {
        "pulse": ("pulse", np.arange(10, 14, dtype=np.uint64)),
        "cellId": ("pulse", np.arange(4, dtype=np.uint16)),
        "trainId": np.uint64(10_000), "module": 7},
    "float index": {"pulse": ("pulse", np.linspace(0, 1, 4))},
    "string index": {"pulse": ("pulse", np.array(list("abcd")))},
    "no index": {"cellId": ("pulse", np.arange(4))},
    "no coords": {},
}


def test_the_direct_path_is_used_with_the_installed_xarray():
    assert _dataarray._FASTPATH_IDENTICAL, f"xarray {xr.__version__}: labelling got slow"


@pytest.mark.parametrize("coords", CASES.values(), ids=CASES.keys())
def test_same_array_as_the_public_constructor_and_no_copy(coords):
    data = np.arange(4 * 3 * 2, dtype=np.float32).reshape(2, 3, 4).transpose(2, 1, 0)
    fast = new_dataarray(data, DIMS, coords, {"source": "S"}, "S.k")
    public = xr.DataArray(data, dims=DIMS, coords=coords, attrs={"source": "S"}, name="S.k")
    xr.testing.assert_identical(fast, public)
    assert set(fast.xindexes) == set(public.xindexes)
    assert np.shares_memory(fast.data, data)


def test_arrays_sharing_a_cached_index_stay_independent():
    coords = {"pulse": ("pulse", np.arange(4, dtype=np.uint64)), "trainId": np.uint64(1)}
    data = np.zeros((4, 3, 2))
    first = new_dataarray(data, DIMS, coords, {}, "a")
    second = new_dataarray(data, DIMS, coords, {}, "b")
    first.coords["pulse"].attrs["units"] = "pulse ID"
    first = first.assign_coords(pulse=first.pulse + 100)
    assert second.pulse.attrs == {}
    assert second.pulse.values.tolist() == [0, 1, 2, 3]
    assert new_dataarray(data, DIMS, coords, {}, "c").pulse.values.tolist() == [0, 1, 2, 3]


def test_labelled_trains_match_the_public_constructor():
    """Every detector module of a simulated train, labelled, equals the public construction."""
    train = Train(*next(simulate("LPD-modules", pulses=5, pool_size=1)))
    for source in train.select("*/DET/*", "image.data").sources:
        da = label_array(train[source, "image.data"].value, source=source, key="image.data",
                         source_data=train.data[source], train_id=train.train_id)
        rebuilt = xr.DataArray(da.data, dims=da.dims, attrs=da.attrs, name=da.name,
                               coords={name: (c.dims, c.data) if c.dims else c.data
                                       for name, c in da.coords.items()})
        xr.testing.assert_identical(da, rebuilt)
        assert list(da.xindexes) == ["pulse"]
