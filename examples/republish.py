"""Re-publish results over the bridge: per-pulse ROI sums and the running mean ROI image.

Any tool that reads a Karabo bridge can show them: karabo-bridge-glimpse, a Karabo GUI scene,
another kb_streams graph. Each train becomes one result train, source RESULT_SOURCE, with the keys
``roi_sum`` (per pulse), ``mean_image`` (the ROI averaged over pulses and all trains so far),
``pulse`` and ``trainId``. A slow or absent reader never slows the analysis: results it cannot take
are dropped, oldest first, and counted. Runs as

    kb-streams run examples/republish.py [--endpoint tcp://host:port --sock SUB]
    python examples/republish.py [same options]

and prints where the results are published; read them with, e.g.,

    from karabo_bridge import Client
    data, meta = Client("tcp://127.0.0.1:PORT", sock="SUB").next()
    data["SPB_DET_AGIPD1M-1/RESULTS/roi"]["roi_sum"]
"""

import numpy as np
import xarray as xr

import kb_streams.sinks  # noqa: F401  (adds Stream.to_karabo_bridge; so does the entry point)
from kb_streams.reduce import RunningStats

MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
KEY = "image.data"
ROI = {"slow_scan": slice(375, 407), "fast_scan": slice(59, 91)}
RESULT_SOURCE = "SPB_DET_AGIPD1M-1/RESULTS/roi"
ENDPOINT = None  # a free port on 127.0.0.1; e.g. "tcp://127.0.0.1:45500" for a fixed one
SOCK = "PUB"  # PUB for displays; REP to serve each request the newest result; PUSH for a pipeline


def results(train, running_mean):
    """This train's ROI sum per pulse and the running mean ROI image, in one Dataset."""
    # copies only the ROI of module 0: dims (pulse, slow_scan, fast_scan)
    roi = train.stack_modules(KEY, MODULE, modules=[0], roi=ROI).isel(module=0)
    running_mean.update(roi.mean("pulse", dtype=np.float64))
    return xr.Dataset({
        "roi_sum": roi.sum(("slow_scan", "fast_scan"), dtype=np.float64),  # keeps trainId
        "mean_image": running_mean.result()["mean"],
    })


def pipeline(source):
    published = source.map(results, RunningStats()).to_karabo_bridge(
        ENDPOINT, SOCK, source=RESULT_SOURCE)

    def status():
        stats = published.stats
        return (f"results on {published.endpoint} ({SOCK}, source {RESULT_SOURCE}): "
                f"{stats.published} published, {stats.dropped} dropped, "
                f"{stats.unsendable} unsendable")

    return published, status


if __name__ == "__main__":
    import sys

    from kb_streams.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
