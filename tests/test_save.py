"""``stream.to_hdf5(path)``: rows by train ID, written from a thread, readable while written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import h5py
import numpy as np
import pytest
import xarray as xr
from _background import in_background
from _waiting import wait_until
from streamz import Stream

from kb_streams.save import open_results, to_hdf5


def result(tid: int) -> xr.Dataset:
    """A reduced train: a scalar, a 64-pulse vector with coordinates, a small image."""
    pulses = np.arange(64)
    return xr.Dataset(
        {"ratio": 1.0 + tid,
         "energy": xr.DataArray(np.full(64, tid, np.float32), dims="pulse",
                                coords={"pulse": pulses, "pulse_id": ("pulse", pulses * 4)},
                                attrs={"units": "uJ"}),
         "image": (("slow_scan", "fast_scan"), np.full((8, 4), tid, np.uint16))},
        coords={"trainId": tid})


def saved(tmp_path, items, **kwargs) -> tuple[to_hdf5, str]:
    path = str(tmp_path / "results.h5")
    source = Stream()
    sink = source.to_hdf5(path, **kwargs)
    for x in items:
        source.emit(x)
    sink.stop()
    assert sink.join(10)
    return sink, path


def test_rows_keep_dims_coords_and_attrs_and_reopen_with_xarray(tmp_path):
    sink, path = saved(tmp_path, [result(t) for t in range(100, 125)], batch=10)
    assert (sink.stats.written, sink.stats.batches, sink.stats.errors) == (25, 3, 0)
    ds = open_results(path)
    assert ds.trainId.values.tolist() == list(range(100, 125))
    assert ds["energy"].dims == ("trainId", "pulse") and ds["energy"].attrs["units"] == "uJ"
    assert ds["energy"].pulse_id.values.tolist() == list(range(0, 256, 4))
    assert ds["image"].dims == ("trainId", "slow_scan", "fast_scan")
    assert ds["image"].dtype == np.uint16 and int(ds["image"][3, 0, 0]) == 103
    assert ds["ratio"].values.tolist() == [1.0 + t for t in range(100, 125)]
    pytest.importorskip("h5netcdf")
    tree = xr.open_datatree(path, engine="h5netcdf")
    energy = tree["energy"].to_dataset()["data"]
    assert energy.dims == ("trainId", "pulse")
    assert energy.trainId.values.tolist() == list(range(100, 125))
    assert energy.pulse_id.values.tolist() == list(range(0, 256, 4))


def test_results_without_a_train_id_or_new_names_are_reported(tmp_path):
    items = [xr.DataArray(1.0, name="x", coords={"trainId": 1}), xr.DataArray(2.0, name="x"),
             {"trainId": 2, "x": 3.0, "y": 4.0}, {"trainId": 3, "x": np.zeros(3)}]
    path = str(tmp_path / "r.h5")
    source = Stream()
    sink = source.to_hdf5(path, batch=1)
    errors = sink.errors.sink_to_list()
    for x in items:
        source.emit(x)
        wait_until(lambda: sink.stats.written + sink.stats.errors >= 1, 5)
    sink.stop()
    assert sink.join(10)
    assert sink.stats.errors == 3 and len(errors) == 3
    ds = open_results(path)
    assert ds.trainId.values.tolist() == [1, 2, 3]
    assert ds["x"].values.tolist()[:2] == [1.0, 3.0] and np.isnan(ds["x"].values[2])


def test_a_full_queue_drops_the_oldest_rows_and_never_blocks_the_graph(tmp_path):
    path = str(tmp_path / "r.h5")
    source = Stream()
    sink = source.to_hdf5(path, batch=2, maxlen=4, interval=0.05)
    hold = threading.Event()
    append = sink._file.append
    sink._file.append = lambda rows: (hold.wait(10), append(rows))[1]   # a stalled disk
    for tid in range(20):
        source.emit({"trainId": tid, "x": float(tid)})
    hold.set()
    sink.stop()
    assert sink.join(10)
    stats = sink.stats
    assert stats.received == 20 and stats.written + stats.dropped == 20 and stats.dropped >= 14
    assert open_results(path).trainId.values.tolist()[-4:] == [16, 17, 18, 19]


READER = textwrap.dedent("""
    import json, sys, time
    import h5py
    seen = []
    deadline = time.monotonic() + 20
    with h5py.File(sys.argv[1], "r", libver="latest", swmr=True) as f:
        ids = f["trainId"]
        while time.monotonic() < deadline and len(seen) < int(sys.argv[2]):
            ids.refresh()
            now = ids[:].tolist()
            if not seen or len(now) > len(seen[-1]):
                seen.append(now)
            time.sleep(0.02)
    print(json.dumps(seen))
""")


def test_a_reader_follows_the_file_while_it_grows(tmp_path):
    path = str(tmp_path / "live.h5")
    source = Stream()
    sink = source.to_hdf5(path, batch=5, interval=0.1)

    def produce(stop: threading.Event) -> None:
        for tid in range(1000, 1200):
            if stop.wait(0.01):
                return
            source.emit(result(tid))

    try:
        with in_background(produce, join_timeout=5):
            wait_until(lambda: sink.stats.batches >= 1, 10, "the first batch")
            reader = subprocess.run([sys.executable, "-c", READER, path, "4"],
                                    capture_output=True, text=True, timeout=60)
    finally:
        sink.stop()
        assert sink.join(10)
    assert reader.returncode == 0, reader.stderr
    snapshots = json.loads(reader.stdout)
    assert len(snapshots) >= 4                                   # it grew under the reader
    for ids in snapshots:
        assert ids == sorted(set(ids)) and ids[0] == 1000        # increasing train IDs
    assert all(a == b[:len(a)] for a, b in zip(snapshots, snapshots[1:], strict=False))


WRITER = textwrap.dedent("""
    import sys, time
    import xarray as xr
    from streamz import Stream
    import kb_streams.save
    source = Stream()
    sink = source.to_hdf5(sys.argv[1], batch=4, interval=0.05)
    tid = 0
    while True:
        source.emit(xr.DataArray([tid, tid], dims="pulse", name="e", coords={"trainId": tid}))
        tid += 1
        if sink.stats.written >= 40:
            print("written", flush=True)
            time.sleep(30)
        time.sleep(0.001)
""")


@pytest.mark.timeout(60)
def test_a_killed_writer_leaves_a_readable_file(tmp_path):
    path = str(tmp_path / "crash.h5")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE,
                              text=True)
    try:
        line = writer.stdout.readline()            # bounded: the writer prints within seconds
        assert line.strip() == "written"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
    ds = open_results(path)
    n = ds.sizes["trainId"]
    assert n >= 40 and ds.trainId.values.tolist() == list(range(n))
    assert ds["e"].values[:, 0].tolist() == list(range(n))
    with h5py.File(path, "r", swmr=True) as f:     # a plain open needs `h5clear -s` first
        assert f["e/data"].shape[0] >= 40


PIPELINE = '''
import xarray as xr

def pipeline(source):
    return source.map(lambda train: xr.DataArray(
        float(train["SA1_XTD2_XGM/XGM/DOOCS", "pulseEnergy.photonFlux"].ndarray()),
        name="flux", coords={"trainId": train.train_id}))
'''


def test_kb_streams_run_saves_what_the_pipeline_returns(tmp_path, capsys, restore_signals):
    from kb_streams.cli import main

    pipeline = tmp_path / "flux.py"
    pipeline.write_text(PIPELINE)
    path = tmp_path / "flux.h5"
    code = main(["run", str(pipeline), "--trains", "6", "--pulses", "4", "--rate", "50",
                 "--save", str(path)])
    assert code == 0
    assert f"saved 6 trains to {path}" in capsys.readouterr().out
    ds = open_results(str(path))
    ids = ds.trainId.values.tolist()
    assert len(ids) == 6 and ids == sorted(ids) and ds["flux"].dims == ("trainId",)
