"""kb_streams.simulate: what each simulator sends, train IDs and timestamps, the pool, the truth."""

from __future__ import annotations

import re
import time
import tracemalloc

import numpy as np
import pytest

from kb_streams.simulate import DETECTORS, Scene, describe, simulate
from kb_streams.simulate.base import field_of
from kb_streams.simulate.geometry import RAW_OFFSET

AGIPD = "SPB_DET_AGIPD1M-1"
LPD = "FXE_DET_LPD1M-1"
XGM = "SA1_XTD2_XGM/XGM/DOOCS"
DELAY = "SPB_AUXT_LIC/DOOCS/PPODL"
MOTOR = "SPB_SMS_USR/MOTOR/UM01"


def expected_detector(name: str, layout: str, raw: bool, p: int) -> dict[str, dict]:
    """{source: {key: (dtype, shape)}} for the main keys, written out from protocol.md."""
    if name in ("AGIPD-modules", "LPD-modules", "AGIPD", "LPD"):
        domain, (ss, fs) = (AGIPD, (512, 128)) if name.startswith("AGIPD") else (LPD, (256, 256))
        g = 2 if name.startswith("AGIPD") else 1
        dtype = "uint16" if raw else "float32"
        ids = (p, 1) if (layout == "file" and raw) else (p,)
        if name.endswith("modules"):
            if layout == "online":
                shape = (fs, ss, p)
            else:
                shape = (p, g, ss, fs) if raw else (p, ss, fs)
            sources = [f"{domain}/DET/{m}CH0:xtdf" for m in range(16)]
        else:
            if layout == "online":
                shape = (16, fs, ss, p)
                sources = [f"{domain}/CAL/APPEND_{'RAW' if raw else 'CORRECTED'}"]
            else:
                shape = (p, g, 16, ss, fs) if raw else (p, 16, ss, fs)
                sources = [f"{domain}/DET/APPEND"]
        keys = {"image.data": (dtype, shape), "image.cellId": ("uint16", ids),
                "image.pulseId": ("uint64", ids), "image.trainId": ("uint64", ids)}
        if not raw:
            keys["image.gain"] = ("uint8", shape)
        elif layout == "online" and name.startswith("AGIPD"):
            keys["image.gain"] = ("uint16", shape)
        return {s: keys for s in sources}
    if name == "JUNGFRAU":
        shape = (512, 1024, p) if layout == "online" else (p, 512, 1024)
        part, channel = ("DET", "daqOutput") if raw else (
            "CORR", "output" if layout == "online" else "daqOutput")
        keys = {"data.adc": ("uint16" if raw else "float32", shape), "data.gain": ("uint8", shape),
                "data.memoryCell": ("uint8", (p,)), "data.trainId": ("uint64", (p,)),
                "data.frameNumber": ("uint64", (p,))}
        if not raw:
            keys["data.mask"] = ("uint32", shape)
        return {f"FXE_XAD_JF1M/{part}/JNGFR{n:02d}:{channel}": keys for n in (1, 2)}
    if name == "EPIX":
        if layout == "file":
            source = f"MID_EXP_EPIX-1/{'DET' if raw else 'CORR'}/RECEIVER:daqOutput"
            key = ("data.image.pixels", ("uint16" if raw else "float32", (704, 768)))
        elif raw:
            source = "MID_EXP_EPIX-1/DET/RECEIVER:daqOutput"
            key = ("data.image.data", ("uint16", (1, 704, 768)))
        else:
            source = "MID_EXP_EPIX-1/CORR/RECEIVER:output"
            key = ("data.image", ("float32", (704, 768, 1)))
        return {source: dict([key])}
    assert name == "CAMERA"
    key = "data.image.pixels" if layout == "file" else "data.image.data"
    keys = {key: ("uint16", (1024, 1280))}
    if layout == "online":
        keys.update({"data.image.dimensions": ("uint64", (2,)), "data.image.bitsPerPixels":
                     ("int", None), "data.image.ROIOffsets": ("uint64", (2,)),
                     "data.image.binning": ("uint64", (2,)), "data.image.encoding": ("int", None)})
    return {"SPB_IRU_SIDEMIC_CAM:daqOutput": keys}


CASES = [(name, layout, raw) for name in DETECTORS for layout in ("online", "file")
         for raw in (False, True) if not (name == "CAMERA" and raw)]


@pytest.mark.parametrize(("name", "layout", "raw"), CASES)
def test_sources_keys_dtypes_shapes(name: str, layout: str, raw: bool) -> None:
    pulses = {"EPIX": None, "CAMERA": None}.get(name, 3)
    sim = simulate(name, pulses=pulses, raw=raw, layout=layout, pool_size=2)
    p = sim.pulses
    data, meta = next(sim)
    tid = 10_000_000_000
    expected = expected_detector(name, layout, raw, p)
    instrument = {"LPD": "FXE", "JUNGFRAU": "FXE", "EPIX": "MID"}.get(name.split("-")[0], "SPB")
    xgm = "SA2_XTD1_XGM/XGM/DOOCS" if name == "EPIX" else XGM
    devices = {xgm, f"{xgm}:output", f"{instrument}_AUXT_LIC/DOOCS/PPODL",
               f"{instrument}_SMS_USR/MOTOR/UM01"}
    assert sorted(data) == sorted(set(expected) | devices) == sim.sources
    assert sorted(meta) == sorted(data)
    for source, keys in expected.items():
        for key, field in keys.items():
            assert field_of(data[source][key]) == field, (source, key)
        for key in ("image.trainId", "data.trainId"):
            if key in data[source] and isinstance(data[source][key], np.ndarray):
                assert (data[source][key] == tid).all()
        if layout == "file":
            assert data[source]["metadata"] == {"source": source, "timestamp.tid": tid}
    # everything sent is what schema()/describe() announce
    schema = sim.schema()
    for source, values in data.items():
        assert {key: field_of(value) for key, value in values.items()} == schema[source]
    text = sim.describe()
    for source, values in data.items():
        assert all(key in text for key in values)
        if source not in expected or len(expected) == 1:
            assert source in text
    if len(expected) > 1:  # module sources are listed as a range
        first, *_, last = expected
        assert f"{first} ... {last} ({len(expected)} sources)" in text
    intensity = data[f"{xgm}:output"]["data.intensityTD"]
    assert field_of(intensity) == ("float32", (1000,))
    assert (intensity[:p] > 100).all() and (intensity[p:] == 1.0).all()
    slow = "" if layout == "online" else ".value"
    assert isinstance(data[xgm][f"pulseEnergy.photonFlux{slow}"], float)
    assert isinstance(data[f"{instrument}_AUXT_LIC/DOOCS/PPODL"][f"actualPosition{slow}"], float)


def test_xtdf_headers_and_combined_keys() -> None:
    sim = simulate("AGIPD", pulses=2, pool_size=1, extras=())
    data, _ = next(sim)
    combined = data[f"{AGIPD}/CAL/APPEND_CORRECTED"]
    assert combined["sources"] == [f"{AGIPD}/DET/{m}CH0:xtdf" for m in range(16)]
    assert combined["modulesPresent"] == [True] * 16
    module = next(simulate("AGIPD-modules", pulses=5, pool_size=1, extras=()))[0]
    assert module[f"{AGIPD}/DET/3CH0:xtdf"]["header.pulseCount"] == 5
    assert module[f"{AGIPD}/DET/3CH0:xtdf"]["image.cellId"].tolist() == list(range(5))


@pytest.mark.parametrize(("name", "layout", "raw", "dropped"), [
    ("AGIPD-modules", "online", False, {"image.gain"}),
    ("LPD", "file", False, {"image.gain", "image.mask"}),
    ("JUNGFRAU", "online", False, {"data.gain", "data.mask"}),
    ("AGIPD-modules", "online", True, set()),
    ("JUNGFRAU", "file", True, set()),
])
def test_gain_false_drops_corrected_gain_and_mask(name: str, layout: str, raw: bool,
                                                  dropped: set[str]) -> None:
    options = dict(pulses=2, pool_size=1, extras=(), layout=layout, raw=raw)
    full, lean = simulate(name, **options), simulate(name, gain=False, **options)
    full_data, lean_data = next(full)[0], next(lean)[0]
    for source in full_data:
        assert set(full_data[source]) - set(lean_data[source]) == dropped
    assert lean.train_nbytes() < full.train_nbytes() if dropped else (
        lean.train_nbytes() == full.train_nbytes())


def test_names_extras_and_options() -> None:
    sim = simulate("lpd_modules", pulses=1, pool_size=1, extras="xgm",
                   names={"xgm": "SPB_XTD9_XGM/XGM/DOOCS"})
    assert sim.detector == "LPD-modules"
    assert "agipd_MODULES" in DETECTORS and DETECTORS["camera"] == DETECTORS["CAMERA"]
    assert "SPB_XTD9_XGM/XGM/DOOCS:output" in sim.sources
    assert not any("MOTOR" in s or "PPODL" in s for s in sim.sources)
    assert len(simulate("JUNGFRAU", modules=4, pulses=1, extras=()).sources) == 4
    assert simulate("epix").pulses == 1 and simulate("AGIPD").pulses == 64


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"detector": "DSSC"}, "choose from AGIPD-modules, AGIPD, LPD-modules"),
    ({"layout": "stacked"}, "choose from 'online', 'file'"),
    ({"extras": ("xgm", "laser")}, "choose from 'xgm', 'delay', 'motor'"),
    ({"faults": {"skip": 3}}, "choose from skip_every, missing_module"),
    ({"faults": "skip_every=1"}, "whole number >= 2"),
    ({"faults": {"shuffle_every": 2.5}}, "whole number >= 1"),
    ({"faults": "skip_every"}, "not name=value"),
    ({"faults": {"missing_module": 16}}, "modules 0 to 15"),
    ({"detector": "JUNGFRAU", "faults": {"missing_module": 0}}, "modules 1 to 2"),
    ({"detector": "AGIPD", "faults": "missing_module=1,missing_every=2"}, "AGIPD-modules"),
    ({"detector": "EPIX", "faults": {"missing_module": 1}}, "multi-module detector"),
    ({"faults": {"shuffle_every": 2}, "protocol_version": "1.0"}, "needs protocol_version"),
    ({"pulses": 353}, "between 1 and 352"),
    ({"detector": "JUNGFRAU", "pulses": 17}, "between 1 and 16"),
    ({"pool_size": 0}, ">= 1"),
    ({"modules": 4}, "only be chosen for JUNGFRAU"),
    ({"timestamps": "now"}, "choose from 'wall', 'train'"),
    ({"names": {"laser": "X"}}, "choose from 'xgm', 'delay', 'motor'"),
])
def test_bad_options_name_the_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        simulate(**kwargs)


def test_train_ids_and_timestamps() -> None:
    sim = simulate("JUNGFRAU", pulses=1, modules=1, pool_size=1, first_train_id=42)
    before = time.time()
    items = [next(sim) for _ in range(5)]
    after = time.time()
    for i, (_, meta) in enumerate(items):
        for source, m in meta.items():
            assert m["source"] == source
            assert m["timestamp.tid"] == 42 + i and type(m["timestamp.tid"]) is int
            assert re.fullmatch(r"\d+", m["timestamp.sec"])
            assert re.fullmatch(r"\d{9}0{9}", m["timestamp.frac"])
            assert float(f"{m['timestamp.sec']}.{m['timestamp.frac']}") == pytest.approx(
                m["timestamp"], abs=1e-6)
            assert before - 1 <= m["timestamp"] <= after + 1
    jf = items[1][0]["FXE_XAD_JF1M/CORR/JNGFR01:output"]
    assert jf["data.frameNumber"].tolist() == [2]
    spaced = simulate("CAMERA", pool_size=1, extras=("delay",), timestamps="train")
    stamps = [next(iter(next(spaced)[1].values()))["timestamp"] for _ in range(3)]
    assert np.diff(stamps) == pytest.approx([0.1, 0.1], abs=1e-6)


def test_pool_is_reused_read_only_and_per_train_work_is_small() -> None:
    scene = Scene(trains_per_step=1)
    sim = simulate("AGIPD-modules", pulses=4, pool_size=3, scene=scene, extras=("xgm",))
    sim.prepare()
    source = f"{AGIPD}/DET/5CH0:xtdf"
    seen: dict[int, np.ndarray] = {}
    tracemalloc.start()
    try:
        for _ in range(8):  # steps 0 1 2 1 0 1 2 1
            tracemalloc.reset_peak()
            data, meta = next(sim)
            _, peak = tracemalloc.get_traced_memory()
            assert peak < 200_000, f"a train allocated {peak} bytes"
            step = sim.truth(meta[source]["timestamp.tid"]).step
            image = data[source]["image.data"]
            assert not image.flags.writeable
            with pytest.raises(ValueError):
                image[0, 0, 0] = 1
            if step in seen:
                assert image is seen[step]
            seen[step] = image
    finally:
        tracemalloc.stop()
    assert sorted(seen) == [0, 1, 2]
    assert not any(np.shares_memory(a, b) for a in seen.values() for b in seen.values()
                   if a is not b)
    assert sim.pool_nbytes == sim.pool_estimate() == 3 * (16 * 4 * 512 * 128 * 4 + 4000)


def _module_frames(data: dict, name: str, layout: str, raw: bool, module: int) -> np.ndarray:
    """Frames of one module as (pulse, ss, fs) from any layout, minus the raw offset."""
    family = name.split("-")[0]
    if family in ("AGIPD", "LPD"):
        domain = AGIPD if family == "AGIPD" else LPD
        combined = [s for s in data if "APPEND" in s]
        array = data[combined[0] if combined else f"{domain}/DET/{module}CH0:xtdf"]["image.data"]
        if layout == "online":
            array = (array[module] if combined else array).transpose(2, 1, 0)
        else:
            array = array[:, 0] if raw else array
            array = array[:, module] if combined else array
    elif family == "JUNGFRAU":
        source = [s for s in data if f"JNGFR{module + 1:02d}" in s][0]
        array = data[source]["data.adc"]
        array = np.moveaxis(array, -1, 0) if layout == "online" else array
    else:
        source = [s for s in data if "EPIX" in s][0]
        key = [k for k in data[source] if k.startswith("data.image")][0]
        array = data[source][key].reshape(1, 704, 768)
    return array.astype(np.float64) - (RAW_OFFSET[family] if raw else 0)


@pytest.mark.parametrize(("name", "layout", "raw"), [
    ("AGIPD-modules", "online", False), ("AGIPD", "file", True), ("LPD-modules", "file", False),
    ("JUNGFRAU", "online", True), ("EPIX", "online", False),
])
def test_pump_probe_curve_is_recoverable(name: str, layout: str, raw: bool) -> None:
    """Per-pulse ROI intensity / XGM, pumped over unpumped (or over the earliest delay),
    binned by the delay line's read-back, follows 1 + 0.5 * S(delay)."""
    scene = Scene(trains_per_step=2)
    sim = simulate(name, pulses=None if name == "EPIX" else 6, pool_size=4, raw=raw,
                   layout=layout, scene=scene)
    xgm = "SA2_XTD1_XGM/XGM/DOOCS" if name == "EPIX" else XGM
    delay_source = [s for s in sim.sources if s.endswith("PPODL")][0]
    by_delay: dict[float, list[np.ndarray]] = {}
    ring2: list[float] = []
    for _ in range(16):  # two full passes over the 4 steps, both directions
        data, meta = next(sim)
        energy = data[f"{xgm}:output"]["data.intensityTD"][: sim.pulses]
        delay = data[delay_source]["actualPosition" + (".value" if layout == "file" else "")]
        roi, ref = sim.roi["ring1"], sim.roi["ring2"]
        frames = _module_frames(data, name, layout, raw, roi.module)
        by_delay.setdefault(round(delay, 1), []).append(
            frames[:, roi.slow_scan, roi.fast_scan].mean(axis=(1, 2)) / energy)
        frames = _module_frames(data, name, layout, raw, ref.module)
        ring2.extend(frames[:, ref.slow_scan, ref.fast_scan].mean(axis=(1, 2)) / energy)
    delays = sorted(by_delay)
    assert delays == pytest.approx(scene.delays(4).tolist(), abs=0.05)
    expected = 1 + scene.contrast * scene.signal(np.array(delays))
    pumped = scene.pumped(sim.pulses)
    if pumped.all():  # one pulse per train: compare with the negative delay
        measured = [np.mean(by_delay[d]) / np.mean(by_delay[delays[0]]) for d in delays]
    else:
        measured = [np.mean([v[pumped].mean() / v[~pumped].mean() for v in by_delay[d]])
                    for d in delays]
    assert measured == pytest.approx(expected.tolist(), rel=0.01)
    assert np.std(ring2) / np.mean(ring2) < 0.01  # the reference ring does not respond


def test_truth_follows_the_scan() -> None:
    sim = simulate("EPIX", pool_size=3, scene=Scene(trains_per_step=2), first_train_id=100)
    steps = [sim.truth(100 + i).step for i in range(10)]
    assert steps == [0, 0, 1, 1, 2, 2, 1, 1, 0, 0]
    truth = sim.truth(104)
    assert truth.delay == 4.0 and truth.ratio == pytest.approx(1 + 0.5 * (1 - np.exp(-4)))
    with pytest.raises(ValueError, match="before the first train"):
        sim.truth(99)
    # the ROIs the package docstring documents
    rois = {name: simulate(name).roi for name in ("AGIPD", "LPD", "JUNGFRAU", "EPIX")}
    boxes = {(name, ring): (r.module, r.slow_scan.start, r.slow_scan.stop, r.fast_scan.start,
                            r.fast_scan.stop)
             for name, roi in rois.items() for ring, r in roi.items()}
    assert boxes == {
        ("AGIPD", "ring1"): (0, 198, 230, 57, 89), ("AGIPD", "ring2"): (0, 375, 407, 59, 91),
        ("LPD", "ring1"): (0, 141, 173, 139, 171), ("LPD", "ring2"): (1, 120, 152, 97, 129),
        ("JUNGFRAU", "ring1"): (0, 326, 358, 669, 701),
        ("JUNGFRAU", "ring2"): (0, 206, 238, 786, 818),
        ("EPIX", "ring1"): (0, 336, 368, 165, 197), ("EPIX", "ring2"): (0, 336, 368, 34, 66),
    }


def test_describe_is_cheap_and_complete() -> None:
    text = describe("AGIPD", pulses=64, raw=True)
    assert f"{AGIPD}/CAL/APPEND_RAW" in text and "(16, 128, 512, 64)" in text
    assert "ROI ring1: module 0" in text


def test_generation_time_agipd_modules_64_pulses(capsys: pytest.CaptureFixture) -> None:
    """Measured, not asserted: per-train work must stay far below 20 ms (reported)."""
    sim = simulate("AGIPD-modules", pulses=64, pool_size=1)
    started = time.perf_counter()
    sim.prepare()
    build = time.perf_counter() - started
    times = []
    for _ in range(50):
        started = time.perf_counter()
        data, _ = next(sim)
        times.append(time.perf_counter() - started)
    nbytes = sum(v.nbytes for d in data.values() for v in d.values() if isinstance(v, np.ndarray))
    assert nbytes == sim.train_nbytes()
    assert sum(d["image.data"].nbytes for d in data.values() if "image.data" in d) == 268435456
    with capsys.disabled():
        print(f"\n[simulate] AGIPD-modules 64 pulses: pool of 1 built in {build:.2f} s; "
              f"per train median {np.median(times) * 1e3:.3f} ms, max {max(times) * 1e3:.3f} ms,"
              f" {nbytes / 1e6:.0f} MB of arrays")


def test_xgm_noise_is_new_every_train_and_leaves_the_pool_alone():
    xgm = ("SA1_XTD2_XGM/XGM/DOOCS:output", "data.intensityTD")
    exact = simulate("AGIPD-modules", pulses=8, pool_size=1, extras=("xgm",))
    noisy = simulate("AGIPD-modules", pulses=8, pool_size=1, extras=("xgm",),
                     scene=Scene(xgm_noise=0.01))
    truth = next(exact)[0][xgm[0]][xgm[1]]
    readings = [next(noisy)[0][xgm[0]][xgm[1]] for _ in range(50)]
    assert next(exact)[0][xgm[0]][xgm[1]] is truth  # exact: the pool entry itself
    relative = np.array([reading[:8] / truth[:8] - 1 for reading in readings])
    assert 0.007 < relative.std() < 0.013
    assert abs(relative.mean()) < 0.003
    assert len({reading.tobytes() for reading in readings}) == 50
    assert all((reading[8:] == truth[8:]).all() for reading in readings)  # no pulse, no noise
    assert next(noisy)[0][xgm[0]][xgm[1]] is not next(noisy)[0][xgm[0]][xgm[1]]
    with pytest.raises(ValueError, match="xgm_noise"):
        Scene(xgm_noise=-0.1)
