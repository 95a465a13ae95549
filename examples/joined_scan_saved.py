"""Two bridges joined by train ID, a pump-probe curve that restarts with each scan pass, saved.

The detector comes from one bridge; the XGM and the delay line from another that is 0.2-0.3 s
late and loses 5% of its trains (the simulator split with :class:`SplitServer`, as
``kb-streams simulate --split`` does). ``Stream.from_karabo_bridge([det, slow])`` joins them into
one train per train ID; the pump-probe ratio of each train is saved to an HDF5 file, and the
curve binned by delay starts afresh whenever the delay scan comes back to its start, its final
result for each pass saved to a second file. Both files are then read back with xarray.

    python examples/joined_scan_saved.py [--trains 40] [--out DIR]

At a beamline, give the two bridges' endpoints instead of the simulator's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import xarray as xr
from streamz import Stream

from kb_streams.demo import PumpProbeSetup, ScanNumber, ratio_of_train
from kb_streams.reduce import BinnedStats
from kb_streams.save import open_results
from kb_streams.simulate import Scene, simulate
from kb_streams.simulate.split import SplitServer, parse_part

SETUP = PumpProbeSetup()


def pipeline(source: Stream, out: Path) -> tuple:
    """Per-train ratios to ``out/trains.h5``; each scan pass's curve to ``out/curves.h5``."""
    per_train = source.map(lambda train: (train.train_id, *ratio_of_train(train, SETUP)))
    rows = per_train.map(lambda r: {"trainId": r[0], "delay": r[1], "ratio": r[2]})
    trains = rows.to_hdf5(str(out / "trains.h5"))
    labelled = per_train.map(lambda r: (r[1], xr.DataArray(r[2], coords={"trainId": r[0]})))
    curve = labelled.reduce_online(
        BinnedStats(list(SETUP.bins), dim="delay"), segment=ScanNumber(SETUP.bins))
    curves = curve.finals.to_hdf5(str(out / "curves.h5"), batch=1)
    return trains, curves


def main(n_trains: int = 40, out: Path | None = None) -> None:
    out = Path(out or tempfile.mkdtemp(prefix="joined_scan_"))
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate("AGIPD-modules", pulses=2, pool_size=5, extras=("xgm", "delay"),
                   scene=Scene(trains_per_step=2))
    parts = [parse_part("det=*DET*"), parse_part("slow=*XGM*+*PPODL*:delay=0.2,jitter=0.1,"
                                                 "drop=0.05")]
    with SplitServer(parts, sock="PUSH") as split:
        source = Stream.from_karabo_bridge(split.endpoints, "PULL", window=30, timeout=2.0)
        savers = pipeline(source, out)
        incomplete = source.partial.sink_to_list()  # records: train ID, missing, reason
        source.start()
        time.sleep(0.5)  # PUSH sends nothing before its reader is connected
        split.serve(sim, limit=n_trains, rate=10)
        time.sleep(2.5)  # the last trains close (timeout=2.0)
        source.stop()
        source.join(5)
    for saver in savers:
        saver.stop()
        saver.join(30)
    stats = source.stats
    print(f"joined {stats.matched} trains, {stats.partial} incomplete "
          f"({stats.dropped}), matching ratio {stats.matching_ratio:.2f}")
    for record in incomplete[:3]:
        print(f"  train {record.train_id}: no {', '.join(record.missing)} ({record.reason})")

    trains = open_results(out / "trains.h5")
    print(f"{out / 'trains.h5'}: {trains.sizes['trainId']} trains, ratio per delay:")
    curve = trains["ratio"].groupby_bins(trains["delay"], list(SETUP.bins)).mean()
    print(curve.to_series().round(3).to_string())
    curves = xr.open_datatree(out / "curves.h5", engine="h5netcdf")
    counts = curves["count"].to_dataset()["data"]
    passes = curves["segment"].to_dataset()["data"].values.tolist()
    print(f"{out / 'curves.h5'}: scan passes {passes} finished, ending at trains "
          f"{counts.trainId.values.tolist()}, trains per delay bin: {counts.values.tolist()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    main(args.trains, args.out)
