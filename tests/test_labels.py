"""kb_streams.labels / layouts: zero-copy detector views, layout detection, module stacking."""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest
import xarray as xr
from extra_data import RunDirectory, stack_detector_data
from extra_data.components import AGIPD1M
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.detectors import AGIPDModule
from extra_data.tests.mockdata.jungfrau import JUNGFRAUModule
from karabo_bridge.simulation import data_generator

from kb_streams.labels import label_array, label_source
from kb_streams.layouts import LayoutError
from kb_streams.train import PropertyNameError, SourceNameError, Train

AGIPD = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"
LPD = "FXE_DET_LPD1M-1/DET/{}CH0:xtdf"
DSSC = "SCS_DET_DSSC1M-1/DET/{}CH0:xtdf"
JF = "SPB_IRDA_JF4M/DET/JNGFR{:02}:daqOutput"
EPIX = "MID_EXP_EPIX-1/DET/RECEIVER:daqOutput"
SHAPES = {"AGIPD": (512, 128), "LPD": (256, 256), "DSSC": (128, 512), "JF": (512, 1024),
          "ePix": (704, 768)}
PER_MODULE_DIMS = ("pulse", "slow_scan", "fast_scan")


def _counting(shape, dtype=np.float32):
    return np.arange(np.prod(shape), dtype=np.float64).astype(dtype).reshape(shape)


def _label(source, key, data, **kw):
    return label_array(data[key], source=source, key=key, source_data=data, train_id=10000,
                       **kw)


def _check_view(da, arr, expected_dims):
    assert da.dims == expected_dims
    assert np.shares_memory(da.data, arr), "labelling copied the detector data"


# --- per-module XTDF: found from the pulse IDs, online and file --------------------------


@pytest.mark.parametrize("det,source", [("AGIPD", AGIPD), ("LPD", LPD), ("DSSC", DSSC)])
@pytest.mark.parametrize("layout", ["online", "file"])
def test_xtdf_module_views(det, source, layout):
    ss, fs = SHAPES[det]
    n = 5
    shape = (fs, ss, n) if layout == "online" else (n, ss, fs)
    arr = _counting(shape)
    data = {"image.data": arr, "image.pulseId": np.arange(100, 100 + n, dtype=np.uint64),
            "image.cellId": np.arange(n, dtype=np.uint16)}
    da = _label(source.format(3), "image.data", data)
    _check_view(da, arr, PER_MODULE_DIMS)
    assert da.shape == (n, ss, fs)
    assert da.attrs["layout"] == layout
    expected = arr[7, 2, 4] if layout == "online" else arr[4, 2, 7]
    assert da.sel(pulse=104).values[2, 7] == expected
    assert da.cellId.values.tolist() == list(range(n))
    assert int(da.module) == 3 and int(da.trainId) == 10000


@pytest.mark.parametrize("n_pulses", [10, 256])
def test_lpd_layout_is_found_from_pulse_ids_not_shape(n_pulses):
    """256 x 256 LPD modules defeat shape heuristics (protocol.md §5.3)."""
    online = _counting((256, 256, n_pulses))  # (fs, ss, pulse)
    data = {"image.data": online, "image.pulseId": np.arange(n_pulses, dtype=np.uint64)}
    if n_pulses == 256:  # (256, 256, 256) fits (fs, ss, pulse) and (pulse, ss, fs): never guess
        with pytest.raises(LayoutError, match="layout="):
            _label(LPD.format(0), "image.data", data)
        da = label_array(data["image.data"], source=LPD.format(0), key="image.data",
                         source_data=data, layout="online")
    else:
        da = _label(LPD.format(0), "image.data", data)
    assert da.attrs["layout"] == "online"
    assert da.values[1, 2, 3] == online[3, 2, 1]
    file_like = _counting((n_pulses, 256, 256))
    data = {"image.data": file_like,  # files store IDs as (pulses, 1)
            "image.pulseId": np.arange(n_pulses, dtype=np.uint64)[:, None]}
    da = _label(LPD.format(0), "image.data", data)
    assert da.attrs["layout"] == "file"
    assert da.values[1, 2, 3] == file_like[1, 2, 3]


def test_ambiguous_pulse_count_raises_unless_told():
    """AGIPD with 128 pulses: (128, 512, 128) fits both the online and the file layout."""
    arr = _counting((128, 512, 128))
    data = {"image.data": arr, "image.pulseId": np.arange(128, dtype=np.uint64)}
    with pytest.raises(LayoutError, match="layout='online'"):
        _label(AGIPD.format(0), "image.data", data)
    assert _label(AGIPD.format(0), "image.data", data, layout="online").attrs["layout"] == \
        "online"
    forced = _label(AGIPD.format(0), "image.data", data, layout="file")
    assert forced.attrs["layout"] == "file" and forced.values[1, 2, 3] == arr[1, 2, 3]
    custom = _label(AGIPD.format(0), "image.data", data, layout="pulse,ss,fs")
    assert custom.attrs["layout"] == "custom" and custom.values[1, 2, 3] == arr[1, 2, 3]
    tuple_form = _label(AGIPD.format(0), "image.data", data,
                        layout=("fast_scan", "slow_scan", "pulse"))
    assert tuple_form.values[1, 2, 3] == arr[3, 2, 1]
    ds = label_source({**data, "image.gain": arr}, source=AGIPD.format(0),
                      layout={"image.data": "file", "image.gain": "online"})
    assert ds["image.data"].attrs["layout"] == "file"
    assert ds["image.gain"].attrs["layout"] == "online"
    ds = label_source({**data, "ragged": [[1], [2, 3]]}, source=AGIPD.format(0), layout="p,ss,fs")
    assert ds["image.data"].attrs["layout"] == "custom" and ds["image.pulseId"].dims == ("pulse",)
    assert "ragged" not in ds


def test_layout_override_errors_are_clear():
    data = {"image.data": np.zeros((128, 512, 4)), "image.pulseId": np.arange(4)}
    with pytest.raises(LayoutError, match=r"\(128, 512, 4\).*AGIPD.*\(512, 128\)"):
        _label(AGIPD.format(0), "image.data", data, layout="pulse,ss,fs")
    with pytest.raises(LayoutError, match=r"4 axes but .* shape \(128, 512, 4\)"):
        _label(AGIPD.format(0), "image.data", data, layout="pulse,module,ss,fs")
    with pytest.raises(LayoutError, match="'file' layout"):
        _label(AGIPD.format(0), "image.data", data, layout="file")
    with pytest.raises(LayoutError, match="twice"):
        _label(AGIPD.format(0), "image.data", data, layout="ss,ss,fs")


def test_pulse_index_cell_id():
    data = {"image.data": np.zeros((128, 512, 3), np.float32),
            "image.pulseId": np.array([0, 4, 8], np.uint64),
            "image.cellId": np.array([1, 2, 3], np.uint16)}
    da = _label(AGIPD.format(0), "image.data", data, pulse_index="cellId")
    assert da.dims == ("cell", "slow_scan", "fast_scan")
    assert da.cell.values.tolist() == [1, 2, 3] and da.pulseId.values.tolist() == [0, 4, 8]


def test_raw_agipd_file_layout_has_data_gain():
    arr = _counting((4, 2, 512, 128), np.uint16)
    data = {"image.data": arr, "image.cellId": np.arange(4, dtype=np.uint16)[:, None]}
    da = _label(AGIPD.format(0), "image.data", data)
    _check_view(da, arr, ("pulse", "data_gain", "slow_scan", "fast_scan"))
    assert da.attrs["layout"] == "file-raw"


# --- multi-module sources, JUNGFRAU, ePix ------------------------------------------------


@pytest.mark.parametrize("det,source", [("AGIPD", "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED"),
                                        ("LPD", "FXE_DET_LPD1M-1/CAL/APPEND_CORRECTED")])
@pytest.mark.parametrize("layout", ["online", "file"])
def test_combined_xtdf_views(det, source, layout):
    ss, fs = SHAPES[det]
    shape = (16, fs, ss, 3) if layout == "online" else (3, 16, ss, fs)
    arr = _counting(shape)
    data = {"image.data": arr, "image.pulseId": np.arange(3, dtype=np.uint64)}
    da = _label(source, "image.data", data)
    _check_view(da, arr, ("module",) + PER_MODULE_DIMS)
    assert da.module.values.tolist() == list(range(16))
    expected = arr[5, 7, 2, 1] if layout == "online" else arr[1, 5, 2, 7]
    assert da.values[5, 1, 2, 7] == expected


def test_reference_simulator_layouts_agree():
    """karabo_bridge's simulator (an independent peer) in its online and file-like layouts."""
    for data_like in ("online", "file"):
        data, meta = next(data_generator("AGIPD", raw=True, datagen="zeros", data_like=data_like))
        train = Train(data, meta)
        (source,) = train.sources
        da = _label(source, "image.data", train.data[source])
        assert da.dims == ("module",) + PER_MODULE_DIMS and da.shape == (16, 64, 512, 128)
        assert np.shares_memory(da.data, data[source]["image.data"])
        gain = _label(source, "image.gain", train.data[source])  # single-module quirk
        assert gain.dims == PER_MODULE_DIMS


@pytest.mark.parametrize("layout", ["online", "file", "stacked-online"])
def test_jungfrau_views(layout):
    cells = 16
    if layout == "online":
        source, arr = JF.format(2), _counting((512, 1024, cells))
        dims, probe = ("cell", "slow_scan", "fast_scan"), lambda a: a[3, 5, 7]
    elif layout == "file":
        source, arr = JF.format(2), _counting((cells, 512, 1024))
        dims, probe = ("cell", "slow_scan", "fast_scan"), lambda a: a[7, 3, 5]
    else:
        source, arr = "SPB_IRDA_JF4M/CORR/APPEND", _counting((2, 512, 1024, cells))
        dims, probe = ("module", "cell", "slow_scan", "fast_scan"), lambda a: a[1, 3, 5, 7]
    data = {"data.adc": arr, "data.memoryCell": np.arange(cells)[::-1].copy(),
            "data.frameNumber": np.arange(cells)}
    da = _label(source, "data.adc", data)
    _check_view(da, arr, dims)
    assert da.cell.values[0] == cells - 1
    index = (1, 7, 3, 5) if layout == "stacked-online" else (7, 3, 5)
    assert da.values[index] == probe(arr)
    if "module" in dims:
        assert da.module.values.tolist() == [1, 2]  # JUNGFRAU modules count from 1
    else:
        assert int(da.module) == 2
    frames = _label(source, "data.frameNumber", data)
    assert frames.dims == ("cell",)


@pytest.mark.parametrize("shape", [(1, 704, 768), (704, 768, 1), (704, 768)])
def test_epix_frames_are_2d_views(shape):
    arr = _counting(shape)
    da = _label(EPIX, "data.image", {"data.image": arr})
    _check_view(da, arr, ("slow_scan", "fast_scan"))
    assert da.values[3, 5] == arr.reshape(704, 768)[3, 5]


def test_camera_images_are_2d_and_other_camera_keys_are_not():
    source = "SPB_IRU_SIDEMIC_CAM:daqOutput"
    data = {"data.image.data": _counting((1024, 1280)), "data.image.binning": np.ones(2),
            "data.background": np.zeros((4, 4))}
    image = _label(source, "data.image.data", data)
    _check_view(image, data["data.image.data"], ("slow_scan", "fast_scan"))
    assert _label(source, "data.background", data).dims == ("dim_0", "dim_1")
    assert _label(source, "data.image.binning", data).dims == ("dim_0",)


# --- non-detector data -------------------------------------------------------------------


def test_other_data_like_extra_data():
    src = "SA1_XTD2_XGM/XGM/DOOCS:output"
    ts = np.datetime64(1795612356_759750800, "ns")
    data = {"x": 2.5, "v": np.arange(3.0), "names": ["a", "bc"], "nested": {"a": 1}}
    scalar = label_array(data["x"], source=src, key="x", train_id=5, timestamp=ts,
                         protocol="2.2")
    assert scalar.dims == () and float(scalar) == 2.5
    assert scalar.name == f"{src}.x"
    assert scalar.attrs == {"source": src, "key": "x", "timestamp": ts, "protocol": "2.2"}
    assert scalar.trainId.dtype == np.uint64 and int(scalar.trainId) == 5
    vector = label_array(data["v"], source=src, key="v")
    assert vector.dims == ("dim_0",) and "trainId" not in vector.coords
    assert np.isnat(vector.attrs["timestamp"]) and vector.attrs["protocol"] == "unknown"
    assert label_array(data["names"], source=src, key="names").values.tolist() == ["a", "bc"]
    with pytest.raises(TypeError, match="nested"):
        label_array(data["nested"], source=src, key="nested")
    ds = label_source(data, source=src, train_id=5)
    assert sorted(ds.data_vars) == ["names", "v", "x"]


# --- zero-copy cost does not grow with the pulse count -----------------------------------


def _peak_bytes(func):
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_labelling_cost_independent_of_pulses():
    peaks = {}
    for n in (1, 352):
        data = {"image.data": np.zeros((128, 512, n), np.float32),  # 92 MB for 352 pulses
                "image.pulseId": np.arange(n, dtype=np.uint64),
                "image.cellId": np.arange(n, dtype=np.uint16)}
        train = Train({AGIPD.format(0): data}, {AGIPD.format(0): {"timestamp.tid": 1}})
        peaks[n] = _peak_bytes(lambda t=train: t[AGIPD.format(0), "image.data"].xarray())
        assert np.shares_memory(train[AGIPD.format(0), "image.data"].xarray().data,
                                data["image.data"])
    assert peaks[352] < 200_000, peaks  # coordinates only, never the 92 MB of pixels


# --- stacking modules --------------------------------------------------------------------


def _modules(numbers, dtype=np.float32, n=3):
    return {AGIPD.format(m): {"image.data": np.full((128, 512, n), m + 1, dtype),
                              "image.pulseId": np.arange(n, dtype=np.uint64) * 2}
            for m in numbers}


def test_stack_modules_fills_missing_modules_with_nan():
    data = _modules([0, 2, 15])
    train = Train(data, {s: {"timestamp.tid": 9} for s in data}, protocol_version="2.2")
    arr = train.stack_modules()
    assert arr.dims == ("module",) + PER_MODULE_DIMS and arr.shape == (16, 3, 512, 128)
    assert arr.module.values.tolist() == list(range(16))
    assert arr.module_present.values.nonzero()[0].tolist() == [0, 2, 15]
    assert arr.pulse.values.tolist() == [0, 2, 4]
    assert float(arr.sel(module=15)[0, 0, 0]) == 16.0
    assert np.isnan(arr.sel(module=1)).all()
    assert int(arr.trainId) == 9 and arr.attrs["key"] == "image.data"
    assert not np.shares_memory(arr.data, data[AGIPD.format(0)]["image.data"])


def test_stack_modules_integers_fill_zero_or_promote():
    data = _modules([1, 3], dtype=np.uint16)
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    arr = train.stack_modules(modules=4)
    assert arr.dtype == np.uint16 and arr.shape[0] == 4
    assert (arr.sel(module=0) == 0).all() and (arr.sel(module=3) == 4).all()
    assert arr.module_present.values.tolist() == [False, True, False, True]
    as_float = train.stack_modules(modules=[1, 2, 3], dtype=np.float32)
    assert as_float.module.values.tolist() == [1, 2, 3]
    assert np.isnan(as_float.sel(module=2)).all()
    assert train.stack_modules(modules=4, fill_value=7).sel(module=0).min() == 7
    with pytest.raises(ValueError, match="cannot be stored"):
        train.stack_modules(modules=4, fill_value=-1)
    with pytest.raises(ValueError, match=r"not among the expected modules \[0, 1\]"):
        train.stack_modules(modules=2)


def test_stack_modules_allocates_once():
    data = _modules(range(4), n=8)
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    out_bytes = 16 * 8 * 512 * 128 * 4
    peak = _peak_bytes(lambda: train.stack_modules())
    assert out_bytes <= peak < out_bytes * 1.05


@pytest.mark.parametrize("layout", ["online", "file"])
def test_stack_modules_copies_once_into_the_modules_memory_order(layout):
    """One allocation laid out as the modules arrive (a memcpy per module), seen transposed."""
    n = 3
    shape = (128, 512, n) if layout == "online" else (n, 512, 128)
    data = {AGIPD.format(m): {"image.data": _counting(shape) + 1000 * m,
                              "image.pulseId": np.arange(n, dtype=np.uint64)} for m in (0, 1, 3)}
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    arr = train.stack_modules(modules=4)
    base = arr.data.base
    assert base is not None and base.flags.c_contiguous and base.nbytes == arr.nbytes
    assert base.shape == (4,) + shape  # (module, fs, ss, pulse) online: no transposition
    assert np.shares_memory(arr.data, base)
    assert arr.data.flags.c_contiguous == (layout == "file")
    assert not any(np.shares_memory(base, d["image.data"]) for d in data.values())
    # the values are the canonical (module, pulse, ss, fs) stack, NaN for module 2
    views = [data[AGIPD.format(m)]["image.data"] for m in (0, 1, 3)]
    if layout == "online":
        views = [v.transpose(2, 1, 0) for v in views]
    expected = np.stack(views[:2] + [np.full_like(views[0], np.nan)] + views[2:])
    assert arr.shape == (4, n, 512, 128)
    np.testing.assert_array_equal(arr.values, expected)


def test_stack_modules_roi_copies_only_the_roi():
    data = {AGIPD.format(m): {"image.data": _counting((128, 512, 4)) + m,
                              "image.pulseId": np.arange(4, dtype=np.uint64)} for m in (0, 5)}
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    roi = np.s_[198:230, 57:89]
    part = train.stack_modules(roi=roi)
    assert part.dims == ("module",) + PER_MODULE_DIMS and part.shape == (16, 4, 32, 32)
    full = train.stack_modules()
    xr.testing.assert_identical(part, full.isel(slow_scan=roi[0], fast_scan=roi[1]))
    assert train.stack_modules(roi=np.s_[10:20]).shape == (16, 4, 10, 128)
    as_isel = {"slow_scan": roi[0], "fast_scan": roi[1]}
    xr.testing.assert_identical(train.stack_modules(roi=as_isel), part)
    xr.testing.assert_identical(train.stack_modules(roi={"fast_scan": roi[1]}),
                                full.isel(fast_scan=roi[1]))
    with pytest.raises(TypeError, match="not \\['pulse'\\]"):
        train.stack_modules(roi={"pulse": slice(0, 2)})
    with pytest.raises(TypeError, match="roi must be slices"):
        train.stack_modules(roi=(3, 4))
    with pytest.raises(ValueError, match="roi selects pixels"):
        train.stack_modules("image.pulseId", roi=roi)


def test_stack_modules_errors():
    data = _modules([0, 1])
    data[AGIPD.format(1)]["image.data"] = np.zeros((128, 512, 4), np.float32)
    data[AGIPD.format(1)]["image.pulseId"] = np.arange(4, dtype=np.uint64)
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    with pytest.raises(ValueError, match="differ in shape.*train 9"):
        train.stack_modules()
    with pytest.raises(SourceNameError, match="no source matches"):
        train.stack_modules(sources="*/CORR/*")
    with pytest.raises(PropertyNameError, match="image.gain"):
        train.stack_modules("image.gain")


def test_stack_jungfrau_modules_count_from_one():
    data = {JF.format(m): {"data.adc": np.full((512, 1024, 2), m, np.float32),
                           "data.memoryCell": np.arange(2)} for m in (1, 3)}
    train = Train(data, {s: {"timestamp.tid": 9} for s in data})
    arr = train.stack_modules("data.adc", "*/DET/JNGFR*")
    assert arr.dims == ("module", "cell", "slow_scan", "fast_scan")
    assert arr.module.values.tolist() == [1, 2, 3]
    assert arr.module_present.values.tolist() == [True, False, True]
    assert float(arr.sel(module=3)[0, 0, 0]) == 3.0


# --- against extra-data's own reading of (mock) run files --------------------------------


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    for modno in (0, 1, 3):
        write_file(str(path / f"RAW-R0001-AGIPD{modno:02}-S00000.h5"),
                   [AGIPDModule(AGIPD.format(modno)[:-5], frames_per_train=4)],
                   ntrains=2, chunksize=2, format_version="1.0")
    write_file(str(path / "RAW-R0001-JNGFR01-S00000.h5"),
               [JUNGFRAUModule("SPB_IRDA_JF4M/DET/JNGFR01")], ntrains=2, chunksize=1,
               format_version="1.0")
    return RunDirectory(str(path))


def test_file_train_matches_extra_data(mock_run):
    """A train as extra-data streams it (metadata in the data, file layouts)."""
    tid, data = mock_run.train_from_index(1)
    train = Train(data)  # no meta: read from data[src]['metadata']
    assert train.train_id == tid

    image = _label(AGIPD.format(0), "image.data", train.data[AGIPD.format(0)])
    assert image.dims == ("pulse", "data_gain", "slow_scan", "fast_scan")
    assert np.shares_memory(image.data, data[AGIPD.format(0)]["image.data"])

    stacked = train.stack_modules()
    theirs = stack_detector_data(train.select("*/DET/*CH0:xtdf").data, "image.data")
    np.testing.assert_array_equal(stacked.values, np.moveaxis(theirs, -3, 0))

    ed = AGIPD1M(mock_run, raw=True).get_array("image.data").sel(train=tid)
    ours = stacked.sel(module=ed.module.values)
    assert ours.dims == ed.dims
    np.testing.assert_array_equal(ours.values, ed.values)
    np.testing.assert_array_equal(ours.pulse.values, ed.pulse.values)

    adc = _label("SPB_IRDA_JF4M/DET/JNGFR01:daqOutput", "data.adc",
                 train.data["SPB_IRDA_JF4M/DET/JNGFR01:daqOutput"])
    assert adc.dims == ("cell", "slow_scan", "fast_scan") and int(adc.module) == 1

    ds = train[AGIPD.format(3)].xarray()
    assert isinstance(ds, xr.Dataset) and int(ds.trainId) == tid
    assert ds["image.cellId"].dims == ("pulse", "image.cellId.dim_0")


MODULE_SHAPES = {"AGIPD": (512, 128), "LPD": (256, 256), "DSSC": (128, 512)}
XTDF_SOURCES = {"AGIPD": "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "LPD": "FXE_DET_LPD1M-1/DET/0CH0:xtdf",
                "DSSC": "SCS_DET_DSSC1M-1/DET/0CH0:xtdf"}


@pytest.mark.parametrize("n", [1, 64, 128, 256, 352, 512])
@pytest.mark.parametrize("family", sorted(MODULE_SHAPES))
@pytest.mark.parametrize("kind", ["online", "file-corrected", "file-raw"])
def test_every_frame_count_is_labelled_right_or_refused(family, n, kind):
    """1 to 512 frames: the right axes, or a LayoutError asking for layout= -- never a swap."""
    ss, fs = MODULE_SHAPES[family]
    ids = np.arange(n, dtype=np.uint64)
    if kind == "online":  # the calibration pipeline: (fs, ss, pulse), IDs (n,)
        arr = np.zeros((fs, ss, n), np.uint8)
        data, expected = {"image.pulseId": ids}, arr.transpose(2, 1, 0)
    elif kind == "file-corrected":  # EXtra-data's streamer: (pulse, ss, fs), its metadata
        arr = np.zeros((n, ss, fs), np.uint8)
        data, expected = {"image.pulseId": ids, "metadata": {"source": "x"}}, arr
    else:  # raw files: (pulse, gain, ss, fs), IDs (n, 1)
        arr = np.zeros((n, 2 if family == "AGIPD" else 1, ss, fs), np.uint8)
        data, expected = {"image.pulseId": ids[:, None]}, arr
    rng = np.random.default_rng(n)
    probes = [tuple(int(rng.integers(size)) for size in expected.shape) for _ in range(8)]
    for value, index in enumerate(probes, 1):
        expected[index] = value  # through the view: the pixel at (pulse, [gain,] ss, fs)
    data["image.data"] = arr
    label = functools.partial(label_array, arr, source=XTDF_SOURCES[family], key="image.data",
                              source_data=data, protocol="2.2")
    if kind == "online" and (n, ss, fs) == (fs, ss, n):  # fits (fs, ss, pulse) and (pulse, ss, fs)
        with pytest.raises(LayoutError, match="layout="):
            label()
        da = label(layout="online")
    else:
        da = label()
    assert da.dims[0] == "pulse" and da.dims[-2:] == ("slow_scan", "fast_scan")
    assert da.shape == expected.shape and np.shares_memory(da.values, arr)
    assert [int(da.values[index]) for index in probes] == list(range(1, 9))
