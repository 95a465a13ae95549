"""Pump-probe delay scan: pumped and unpumped ROI intensity per XGM energy, binned by delay.

Each train: the per-pulse intensity in a ROI on the pump-sensitive diffraction ring, divided by
the XGM pulse energy; pumped (even) and unpumped (odd) pulses are averaged separately and
added to the bin of the delay-line position. The table shows on, off and on - off per bin.
Runs as

    kb-streams run examples/pump_probe_delay.py [--endpoint tcp://host:port --sock SUB]
    python examples/pump_probe_delay.py [same options]

On the simulator, on/off = 1 + 0.5 * (1 - exp(-delay / 1 ps)) after time zero, 1 before.
"""

import numpy as np
import xarray as xr

from kb_streams.reduce import BinnedStats, PumpProbe

MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
KEY = "image.data"
ROI = {"slow_scan": slice(198, 230), "fast_scan": slice(57, 89)}  # on the pumped ring
XGM = ("SA1_XTD2_XGM/XGM/DOOCS:output", "data.intensityTD")  # pulse energies, µJ
DELAY = ("SPB_AUXT_LIC/DOOCS/PPODL", "actualPosition")  # ps
BINS = np.linspace(-1.625, 4.625, 6)  # 5 bins centred on the simulator's delays


def normalised_roi(train):
    """(delay, per-pulse ROI intensity / pulse energy) of one train."""
    # copies only the ROI of module 0: dims (pulse, slow_scan, fast_scan)
    image = train.stack_modules(KEY, MODULE, modules=[0], roi=ROI).isel(module=0)
    intensity = image.sum(("slow_scan", "fast_scan"), dtype=np.float64)
    energy = train[XGM].ndarray()[: intensity.sizes["pulse"]]
    delay = float(train[DELAY].ndarray())
    return delay, intensity / xr.DataArray(energy, dims="pulse")


def pipeline(source):
    curve = PumpProbe(on=slice(0, None, 2), off=slice(1, None, 2),
                      into=BinnedStats(BINS, dim="delay"))
    results = source.map(normalised_roi).reduce_online(curve)
    latest = {}
    results.sink(lambda result: latest.update(result=result))

    def status():
        result = latest.get("result")
        if result is None:
            return "pump-probe: waiting for trains..."
        mean, count = result["mean"], result["count"]
        lines = [f"{'delay':>8} {'n':>4} {'on':>9} {'off':>9} {'on-off':>9} {'on/off':>7}"]
        for delay in mean["delay"].values:
            n = int(count.sel(delay=delay))
            on, off, diff = (float(mean.sel(delay=delay, signal=signal))
                             for signal in ("on", "off", "on-off"))
            row = f"{delay:8.3f} {n:4d}"
            lines.append(row + (f" {on:9.4f} {off:9.4f} {diff:9.4f} {on / off:7.3f}" if n else ""))
        return "\n".join(lines)

    return results, status


if __name__ == "__main__":
    import sys

    from kb_streams.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
