"""XGM-normalised per-pulse intensity: which pulses of the train are bright, once beam energy
fluctuations are divided out.

Each train: the ROI intensity of every pulse divided by that pulse's XGM energy; a running mean
and std per pulse over all trains so far. Pumped pulses (the even ones, on the simulator) stand
out once the delay is past time zero. Runs as

    kb-streams run examples/xgm_normalised.py [--endpoint tcp://host:port --sock SUB]
    python examples/xgm_normalised.py [same options]
"""

import numpy as np
import xarray as xr

from kb_streams.reduce import RunningStats

MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
KEY = "image.data"
ROI = {"slow_scan": slice(198, 230), "fast_scan": slice(57, 89)}
XGM = ("SA1_XTD2_XGM/XGM/DOOCS:output", "data.intensityTD")  # pulse energies, µJ
SPARK = "▁▂▃▄▅▆▇█"


def per_pulse(train):
    """ROI intensity per µJ of pulse energy, one value per pulse (dims: pulse)."""
    # copies only the ROI of module 0: dims (pulse, slow_scan, fast_scan)
    image = train.stack_modules(KEY, MODULE, modules=[0], roi=ROI).isel(module=0)
    intensity = image.sum(("slow_scan", "fast_scan"), dtype=np.float64)
    energy = train[XGM].ndarray()[: intensity.sizes["pulse"]]
    return intensity / xr.DataArray(energy, dims="pulse")


def sparkline(values):
    low, high = float(np.min(values)), float(np.max(values))
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def pipeline(source):
    stats = source.map(per_pulse).reduce_online(RunningStats())
    latest = {}
    stats.sink(lambda result: latest.update(result=result))

    def status():
        result = latest.get("result")
        if result is None:
            return "per-pulse intensity: waiting for trains..."
        mean, std = result["mean"].values, result["std"].values
        return (f"intensity per µJ, mean over {int(result['count'].max())} trains, "
                f"{len(mean)} pulses: {mean.min():.4g} .. {mean.max():.4g} "
                f"(std up to {std.max():.2g})\n"
                f"per pulse: {sparkline(mean)}")

    return stats, status


if __name__ == "__main__":
    import sys

    from kb_streams.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
