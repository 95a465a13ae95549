"""ROI monitor: the mean intensity in a region of interest, train by train, with a rolling mean.

Watch a detector region live, e.g. to see the beam drift or the sample run out. Runs as

    kb-streams run examples/roi_monitor.py [--endpoint tcp://host:port --sock SUB]
    python examples/roi_monitor.py [same options]

Without --endpoint, kb-streams starts its simulated AGIPD (module 0 holds the ROI on the static
reference ring, so the value stays flat, changing only with the XGM pulse energy).
"""

from collections import deque

from kb_streams.reduce import RollingMean

MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"  # the detector module holding the ROI
KEY = "image.data"
ROI = {"slow_scan": slice(375, 407), "fast_scan": slice(59, 91)}  # pixels of that module
WINDOW = 10  # trains in the rolling mean
SPARK = "▁▂▃▄▅▆▇█"


def roi_mean(train):
    """Mean of the ROI over its pixels and all pulses of one train (a labelled scalar)."""
    # copies only the ROI of module 0: dims (module, pulse, slow_scan, fast_scan)
    return train.stack_modules(KEY, MODULE, modules=[0], roi=ROI).mean()


def sparkline(values):
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def pipeline(source):
    per_train = source.map(roi_mean)
    rolling = per_train.reduce_online(RollingMean(WINDOW))
    history = deque(maxlen=60)  # one number per train for the sparkline
    latest = {}
    per_train.sink(lambda value: history.append(float(value)))
    rolling.sink(lambda result: latest.update(mean=float(result)))

    def status():
        if "mean" not in latest:
            return "ROI: waiting for trains..."
        values = list(history)
        return (f"ROI mean {values[-1]:.4g}   rolling mean ({WINDOW} trains) {latest['mean']:.4g}\n"
                f"last {len(values)} trains: {sparkline(values)}")

    return rolling, status


if __name__ == "__main__":
    import sys

    from kb_streams.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
