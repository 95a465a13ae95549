"""Offline = online: the same call, spelled as in EXtra-data, on the same train, gives an identical
DataArray to what EXtra-data gives offline.

EXtra-data's mock devices write small runs (``_mock_runs.py``: raw and corrected AGIPD, AGIPD500K,
LPD with a module missing a train, DSSC, JUNGFRAU, ePix100, XGM, a camera; 1 to 512 frames per
train; distinct values everywhere). Each run is served once by EXtra-data's
``karabo-bridge-serve-files`` over loopback (PUSH, and REP for one run) and every train received
once by our ``Client``; the results are compared with EXtra-data reading the same train IDs
offline, with ``xarray.testing.assert_identical``.

One difference the wire imposes: scalars arrive as Python numbers (msgpack keeps no width), so a
``float32`` control value comes back ``float64``; those are compared after casting EXtra-data's
value to the received dtype, and only those.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _mock_runs import COUNTS, COUNTS_MODULES, make_runs
from _waiting import wait_until
from conftest import free_tcp_port
from extra_data import RunDirectory
from extra_data import by_id as ed_by_id
from extra_data import by_index as ed_by_index
from extra_data.components import AGIPD1M as ED_AGIPD1M
from extra_data.components import AGIPD500K as ED_AGIPD500K
from extra_data.components import DSSC1M as ED_DSSC1M
from extra_data.components import JUNGFRAU as ED_JUNGFRAU
from extra_data.components import LPD1M as ED_LPD1M

from kb_streams import Client, Train
from kb_streams.components import (
    AGIPD1M,
    AGIPD500K,
    DSSC1M,
    JUNGFRAU,
    LPD1M,
    by_id,
    by_index,
    ePix100,
)
from kb_streams.layouts import LayoutError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # EXtra-data's raw fallback


class Runs:
    """Each mock run written once, served once, its trains received once (on first use)."""

    def __init__(self, root: Path) -> None:
        self.paths = make_runs(root)
        self._received: dict[str, list[Train]] = {}
        self._offline: dict[str, RunDirectory] = {}

    def offline(self, name: str):
        if name not in self._offline:
            self._offline[name] = RunDirectory(str(self.paths[name]))
        return self._offline[name]

    def received(self, name: str) -> list[Train]:
        if name not in self._received:
            self._received[name] = _serve_and_receive(
                self.paths[name], len(self.offline(name).train_ids),
                sock="REP" if name in REP_RUNS else "PUSH")
        return self._received[name]


#: runs served over REP (read by our REQ client with a request ahead), the others over PUSH
REP_RUNS = {"counts_corr"}


def _serve_and_receive(path: Path, n_trains: int, sock: str = "PUSH") -> list[Train]:
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    log = path.with_suffix(".serve.log")
    with open(log, "wb") as out:  # a pipe nobody reads would block the server when full
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("karabo-bridge-serve-files")), str(path),
             endpoint, "--socket-type", sock], stdout=out, stderr=subprocess.STDOUT)
    try:
        # over REP, serve-files exits after its last reply while our next request is out: the
        # client reconnects, keeping every train already arrived
        reader = {"REP": "REQ", "PUSH": "PULL"}[sock]
        with Client(endpoint, sock=reader, timeout=60, prefetch=2) as client:
            return [Train.from_message(client.next_message()) for _ in range(n_trains)]
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; server said: {log.read_text()[-2000:]}") from exc
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    yield Runs(tmp_path_factory.mktemp("mock_runs"))


def _same(online: xr.DataArray, offline: xr.DataArray, wire_scalar: bool = False) -> None:
    if wire_scalar:  # msgpack keeps no width: float32 arrives as float, ints as int64
        offline = offline.astype(online.dtype)
    offline.attrs.pop("units", None)  # from the file's attributes, which no message carries
    if online.size < LARGE or not _equal_values(online, offline):
        xr.testing.assert_identical(online, offline)  # (with xarray's report of a difference)
        return
    # the values of a 512-frame train are equal (one numpy pass instead of xarray's three):
    # everything else as assert_identical compares it
    assert (online.name, online.dims, online.dtype, online.attrs) == \
        (offline.name, offline.dims, offline.dtype, offline.attrs)
    xr.testing.assert_identical(online.coords.to_dataset(), offline.coords.to_dataset())


#: elements from which :func:`_same` compares the values with numpy first
LARGE = 1_000_000


def _equal_values(online: xr.DataArray, offline: xr.DataArray) -> bool:
    return online.shape == offline.shape and online.dtype == offline.dtype and np.array_equal(
        online.values, offline.values, equal_nan=online.dtype.kind in "fc")


GENERIC = {
    "spb_raw": ["SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "SPB_DET_AGIPD1M-1/DET/2CH0:xtdf",
                "SA1_XTD2_XGM/DOOCS/MAIN", "SA1_XTD2_XGM/DOOCS/MAIN:output",
                "SPB_IRU_CAM/CAM/SIDEMIC:daqOutput"],
    "spb_corr": ["SPB_DET_AGIPD1M-1/CORR/1CH0:output"],
    "hed_raw": ["HED_DET_AGIPD500K2G/DET/7CH0:xtdf"],
    "fxe_raw": ["FXE_DET_LPD1M-1/DET/1CH0:xtdf"],
    "fxe_corr": ["FXE_DET_LPD1M-1/CORR/3CH0:output"],
    "scs_raw": ["SCS_DET_DSSC1M-1/DET/5CH0:xtdf"],
    "scs_corr": ["SCS_DET_DSSC1M-1/CORR/2CH0:output"],
    "jf": ["FXE_XAD_JF1M/DET/JNGFR02:daqOutput"],
    "jf_corr": ["SPB_IRDA_JF4M/CORR/JNGFR01:output", "SPB_IRDA_JF4M/CORR/JNGFR03:output"],
    "epix": ["MID_EXP_EPIX-1/DET/RECEIVER:daqOutput"],
    "epix_corr": ["MID_EXP_EPIX-1/CORR/RECEIVER:output"],
    "counts_raw": [f"{det}/DET/{modno}CH0:xtdf" for det, modno, *_ in COUNTS_MODULES],
    "counts_corr": [f"{det}/CORR/{modno}CH0:output" for det, modno, *_ in COUNTS_MODULES],
}


def test_every_xtdf_family_has_every_frame_count(runs):
    """The coverage the parity tests stand on: each family, raw and corrected, at each count."""
    for name in ("counts_raw", "counts_corr"):
        for det, *_ in COUNTS_MODULES:
            source = next(s for s in GENERIC[name] if s.startswith(det))
            counts = runs.offline(name)[source, "image.data"].data_counts(labelled=False)
            assert sorted(counts) == sorted(COUNTS), (name, source)


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_generic_xarray_matches_keydata_xarray(runs, name):
    """``train[src, key].xarray()`` == ``run[src, key].xarray().sel(trainId=tid)``, every key."""
    run = runs.offline(name)
    compared = 0
    for src in GENERIC[name]:
        for key in sorted(run[src].keys()):
            if run[src, key].dtype.kind in "OSU":  # strings: not arrays on either side
                continue
            offline = run[src, key].xarray()
            for train in runs.received(name):
                if key not in train.data.get(src, {}):  # a module that missed this train
                    assert train.train_id not in run[src, key].drop_empty_trains().train_ids
                    continue
                kd = train[src, key]
                wire_scalar = not isinstance(kd.value, np.ndarray)
                _same(kd.xarray(), offline.sel(trainId=train.train_id), wire_scalar)
                compared += 1
    assert compared >= 4  # two keys of two trains at the least


def test_generic_roi_extra_dims_and_control_spelling(runs):
    run, trains = runs.offline("spb_raw"), runs.received("spb_raw")
    src = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
    for train in trains:
        tid = train.train_id
        one = run.select_trains(ed_by_id[[tid]])
        for roi in (np.s_[0, 10:60, 100:120], np.s_[:, 5:9], np.s_[1]):
            expected = one[src, "image.data"].xarray(roi=roi).sel(trainId=tid)
            _same(train[src, "image.data"].xarray(roi=roi), expected)
            np.testing.assert_array_equal(train[src, "image.data"].ndarray(roi=roi),
                                          expected.values)
        cam = "SPB_IRU_CAM/CAM/SIDEMIC:daqOutput"
        dims = ["y", "x"]
        _same(train[cam, "data.image.pixels"].xarray(extra_dims=dims, name="cam"),
              one[cam, "data.image.pixels"].xarray(extra_dims=dims, name="cam").sel(trainId=tid))
        xgm = "SA1_XTD2_XGM/DOOCS/MAIN"
        assert "beamPosition.ixPos" in train[xgm]
        _same(train[xgm, "beamPosition.ixPos"].xarray(),
              one[xgm, "beamPosition.ixPos"].xarray().sel(trainId=tid), wire_scalar=True)


# family, run, our class, EXtra-data's class, constructor kwargs, get_array kwargs
DETECTOR_CASES = [
    ("agipd-raw", "spb_raw", AGIPD1M, ED_AGIPD1M, {}, {}),
    ("agipd-raw-roi", "spb_raw", AGIPD1M, ED_AGIPD1M, {},
     {"roi": np.s_[0:1, 100:200, 10:40], "astype": np.float32}),
    ("agipd-raw-by-index", "spb_raw", AGIPD1M, ED_AGIPD1M, {}, {"pulses": "index[2:40:3]"}),
    ("agipd-corr", "spb_corr", AGIPD1M, ED_AGIPD1M, {}, {}),
    ("agipd-corr-by-id-cell", "spb_corr", AGIPD1M, ED_AGIPD1M, {},
     {"pulses": "id[0:200:4]", "subtrain_index": "cellId"}),
    ("agipd500k", "hed_raw", AGIPD500K, ED_AGIPD500K, {}, {}),
    ("lpd-raw-missing-module", "fxe_raw", LPD1M, ED_LPD1M, {"modules": [0, 1]}, {}),
    ("lpd-raw-fill", "fxe_raw", LPD1M, ED_LPD1M, {"modules": [0, 1]},
     {"fill_value": 7, "roi": np.s_[3:9, 250:]}),
    ("lpd-corr", "fxe_corr", LPD1M, ED_LPD1M, {}, {}),
    ("dssc-raw", "scs_raw", DSSC1M, ED_DSSC1M, {}, {}),
    ("dssc-corr", "scs_corr", DSSC1M, ED_DSSC1M, {}, {"pulses": "id[[0, 5, 6, 1000]]"}),
    *[(f"{family}-{variant}-every-count", f"counts_{variant}", ours, theirs,
       {"detector_name": detector}, {})
      for family, detector, ours, theirs in [
          ("agipd", "SPB_DET_AGIPD1M-1", AGIPD1M, ED_AGIPD1M),
          ("agipd500k", "HED_DET_AGIPD500K2G", AGIPD500K, ED_AGIPD500K),
          ("lpd", "FXE_DET_LPD1M-1", LPD1M, ED_LPD1M),
          ("dssc", "SCS_DET_DSSC1M-1", DSSC1M, ED_DSSC1M)]
      for variant in ("raw", "corr")],
    ("dssc-corr-every-count-by-id", "counts_corr", DSSC1M, ED_DSSC1M,
     {"detector_name": "SCS_DET_DSSC1M-1"}, {"pulses": "id[100:1000:3]"}),
    ("jungfrau", "jf", JUNGFRAU, ED_JUNGFRAU, {}, {}),
    ("jungfrau-roi", "jf", JUNGFRAU, ED_JUNGFRAU, {}, {"roi": np.s_[2:5, :30, 1000:]}),
    ("jungfrau-corr-16-cells", "jf_corr", JUNGFRAU, ED_JUNGFRAU, {"modules": [1]}, {}),
    ("jungfrau-corr-1-cell", "jf_corr", JUNGFRAU, ED_JUNGFRAU, {"modules": [3]},
     {"roi": np.s_[:, 100:200, :50]}),
]


def _pulses(spec: str, ours: bool):
    kind, _, value = spec.partition("[")
    value = eval("np.s_[" + value)  # noqa: S307 - test parameters written above
    if kind == "id":
        return by_id[value] if ours else ed_by_id[value]
    return by_index[value] if ours else ed_by_index[value]


@pytest.mark.parametrize("case", DETECTOR_CASES, ids=[c[0] for c in DETECTOR_CASES])
def test_detector_get_array_matches_extra_data(runs, case):
    _, name, ours, theirs, init, kwargs = case
    run = runs.offline(name)
    key = "data.adc" if ours is JUNGFRAU else "image.data"
    for train in runs.received(name):
        ours_kw, theirs_kw = dict(kwargs), dict(kwargs)
        if "pulses" in kwargs:
            ours_kw["pulses"] = _pulses(kwargs["pulses"], True)
            theirs_kw["pulses"] = _pulses(kwargs["pulses"], False)
        offline = theirs(run.select_trains(ed_by_id[[train.train_id]]), **init)
        online = ours(train, **init)
        expected = offline.get_array(key, **theirs_kw)
        got = online.get_array(key, **ours_kw)
        if train.train_id not in expected.train:  # no pulse selected in this train
            assert got.shape[1] == 0
            continue
        _same(got, expected.sel(train=train.train_id))
        if ours is not JUNGFRAU:
            assert online.frames_per_train == offline.frames_per_train


def test_missing_module_info(runs):
    run = runs.offline("fxe_raw")
    for train in runs.received("fxe_raw"):
        online = LPD1M(train, modules=[0, 1])
        offline = ED_LPD1M(run.select_trains(ed_by_id[[train.train_id]]), modules=[0, 1])
        np.testing.assert_array_equal(online.data_availability(), offline.data_availability())
        assert (1 in online.missing_modules) == (train.train_id == 10001)
        assert len(online.missing_modules) == 14 + (train.train_id == 10001)


def test_masked_data_matches_extra_data(runs):
    run = runs.offline("spb_corr")
    for train in runs.received("spb_corr"):
        offline = ED_AGIPD1M(run.select_trains(ed_by_id[[train.train_id]]))
        for bits in (None, [1, 2]):
            expected = offline.masked_data(mask_bits=bits).xarray(unstack_pulses=True)
            got = AGIPD1M(train).masked_data(mask_bits=bits).xarray()
            _same(got, expected.sel(train=train.train_id))


@pytest.mark.parametrize("name,src", [("epix", "MID_EXP_EPIX-1/DET/RECEIVER:daqOutput"),
                                      ("epix_corr", "MID_EXP_EPIX-1/CORR/RECEIVER:output")])
def test_epix100_frame(runs, name, src):
    run = runs.offline(name)
    for train in runs.received(name):
        arr = ePix100(train).get_array()
        offline = run[src, "data.image.pixels"].xarray().sel(trainId=train.train_id)
        assert arr.dims == ("slow_scan", "fast_scan") and int(arr.train) == train.train_id
        np.testing.assert_array_equal(arr.values, offline.values)


STACK_CASES = [("spb_corr", AGIPD1M, "SPB_DET_AGIPD1M-1", "CORR", [0, 1])] + [
    (f"counts_{variant}", cls, det, "DET" if variant == "raw" else "CORR", [modno])
    for (det, modno, *_), cls in zip(COUNTS_MODULES, [AGIPD1M, AGIPD500K, LPD1M, DSSC1M],
                                     strict=True)
    for variant in ("raw", "corr")]


@pytest.mark.parametrize("case", STACK_CASES, ids=[f"{c[0]}-{c[2]}" for c in STACK_CASES])
def test_stack_modules_agrees_with_detector_objects(runs, case):
    name, cls, det, kind, modules = case
    channel = "xtdf" if kind == "DET" else "output"
    for train in runs.received(name):
        fast = train.stack_modules("image.data", f"{det}/{kind}/*CH0:{channel}",
                                   modules=modules)
        slow = cls(train, detector_name=det).get_array("image.data")
        if "pulse" not in fast.dims:  # a 1-frame train: stack_modules keeps the frame alone
            fast = fast.expand_dims(pulse=slow.pulse.values, axis=1)
        assert fast.dims == slow.dims
        np.testing.assert_array_equal(fast.values, slow.values)
        np.testing.assert_array_equal(fast.module.values, slow.module.values)
        np.testing.assert_array_equal(fast.pulse.values, slow.pulse.values)


@pytest.mark.parametrize("name,src", [
    ("spb_corr", "SPB_DET_AGIPD1M-1/CORR/0CH0:output"),      # 128 frames: AGIPD's fs size
    ("fxe_corr", "FXE_DET_LPD1M-1/CORR/3CH0:output"),         # 256 frames: LPD's ss and fs
    ("scs_corr", "SCS_DET_DSSC1M-1/CORR/2CH0:output"),        # 512 frames: DSSC's fs size
    *[("counts_corr", f"{det}/CORR/{modno}CH0:output") for det, modno, *_ in COUNTS_MODULES],
])
def test_ambiguous_layout_is_never_guessed(runs, name, src):
    """Corrected data whose shape fits both layouts: the streamer's metadata tells file data;
    the same arrays without it (as a live pipeline sends) raise, unless ``layout=`` says."""
    run = runs.offline(name)
    ambiguous = [t for t in runs.received(name) if np.ndim(t.data[src]["image.pulseId"]) == 1
                 and t[src, "image.data"].shape[0] == t[src, "image.data"].shape[2]]
    assert ambiguous
    for train in ambiguous:
        offline = run[src, "image.data"].xarray().sel(trainId=train.train_id)
        _same(train[src, "image.data"].xarray(), offline)
        live = Train({src: {k: v for k, v in train.data[src].items() if k != "metadata"}},
                     {src: train.meta[src]}, protocol_version="2.2")
        with pytest.raises(LayoutError, match="layout="):
            live[src, "image.data"].xarray()
        _same(live[src, "image.data"].xarray(layout="file"), offline)
        live.data[src]["image.data"] = train[src, "image.data"].value.transpose(2, 1, 0)
        # ^ the calibration pipeline's (fs, ss, pulse), here as a view
        _same(live[src, "image.data"].xarray(layout="online"), offline)


XGM = "SA1_XTD2_XGM/DOOCS/MAIN"


def _graph(source):
    """One pipeline, as a scientist would write it, collecting its results."""
    def analyse(train):
        image = AGIPD1M(train).get_array("image.data", roi=np.s_[0:1, :64, :64])
        return (train.train_id, image.sum("pulse"), train[XGM, "beamPosition.ixPos"].xarray(),
                train[XGM + ":output", "data.intensityTD"].xarray(roi=np.s_[:20]))
    return source.map(analyse).sink_to_list()


def test_from_run_and_the_bridge_feed_a_graph_alike(runs):
    """(b) The same graph fed by ``Stream.from_run`` and by ``karabo-bridge-serve-files``."""
    from streamz import Stream

    import kb_streams.run_source  # noqa: F401 - registers Stream.from_run (as the entry point)

    path, n = runs.paths["spb_raw"], len(runs.offline("spb_raw").train_ids)
    from_files = Stream.from_run(path, rate=None, shuffle_sources=True)
    offline = _graph(from_files)
    from_files.start()
    assert from_files.join(timeout=120) and from_files.finished
    assert from_files.stats.trains == n

    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    with open(path.with_suffix(".b.log"), "wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("karabo-bridge-serve-files")), str(path),
             endpoint, "--socket-type", "PUSH"], stdout=out, stderr=subprocess.STDOUT)
    try:
        live = Stream.from_karabo_bridge(endpoint, sock="PULL", timeout=60)
        online = _graph(live)
        live.start()
        wait_until(lambda: len(online) == n, timeout=120, what=f"{n} trains from the bridge")
        live.stop()
        assert live.join(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert [r[0] for r in offline] == [r[0] for r in online] == runs.offline("spb_raw").train_ids
    for ours, theirs in zip(offline, online, strict=True):
        for a, b in zip(ours[1:], theirs[1:], strict=True):
            xr.testing.assert_identical(a, b)


def test_from_run_selects_trains_and_paces(runs):
    from streamz import Stream

    from kb_streams.run_source import from_run

    run = runs.offline("fxe_corr")
    source = from_run(run, sources=["FXE_DET_LPD1M-1/CORR/3CH0:output"],
                      trains=ed_by_index[1:], rate=20.0)
    assert isinstance(source, Stream)
    got = source.map(lambda t: (t.train_id, t.sources)).sink_to_list()
    started = time.monotonic()
    source.start()
    assert source.join(timeout=60)
    assert got == [(tid, ["FXE_DET_LPD1M-1/CORR/3CH0:output"]) for tid in run.train_ids[1:]]
    assert time.monotonic() - started >= 1 / 20  # two trains, 1/20 s apart at least
