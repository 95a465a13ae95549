"""Live AGIPD analysis on a Dask cluster: pulse-resolved intensity per module, reduced on workers.

Each train is reduced where it lands to a small ``(module, pulse)`` array of mean intensities,
labelled with its train ID; the graph keeps running statistics of those and prints a line every
few trains. Copy it and change :func:`pulse_intensity` to your analysis.

Try it against the simulator::

    kb-streams simulate --detector AGIPD-modules --pulses 16 --rate 10 \\
        --endpoint tcp://127.0.0.1:45000 &
    python examples/dask_pipeline.py --endpoint tcp://127.0.0.1:45000 --trains 50

or with the live status of ``kb-streams run`` (trains received here, offloaded to the workers)::

    kb-streams run examples/dask_pipeline.py --dask [SCHEDULER] [--endpoint ...]

``--mode workers`` (default) receives the trains on the Dask workers, each with its own bridge
client, so megapixel trains never pass through this process; ``--mode offload`` receives them here
and scatters them to the workers (fine up to a few tens of MB per train). ``--scheduler
tcp://host:8786`` uses a running cluster instead of starting a local one.
"""

from __future__ import annotations

import argparse
import sys
import threading

import numpy as np
import xarray as xr
from streamz import Stream

from kb_streams.cluster import connect
from kb_streams.reduce import RunningStats

MODULES = "*/DET/*CH0:xtdf"


def pulse_intensity(train) -> xr.DataArray:
    """Runs on a worker: mean of every module image per pulse, ``(module, pulse)``, a few KB."""
    stacked = train.stack_modules("image.data", MODULES)  # (module, pulse, slow_scan, fast_scan)
    return stacked.mean(("slow_scan", "fast_scan"), skipna=False).rename("intensity")


def pipeline(source, client=None):
    """For ``kb-streams run --dask``: offload :func:`pulse_intensity`, keep running statistics."""
    results = source.offload(pulse_intensity, n=4, client=client)
    running = RunningStats()
    seen = {"trains": 0}

    def add(intensity: xr.DataArray) -> None:
        running.update(intensity)
        seen["trains"] += 1

    results.sink(add)

    def status() -> str:
        if not seen["trains"]:
            return "waiting for the first result..."
        per_module = np.round(running.mean().mean("pulse").values, 2).tolist()
        return f"{seen['trains']} trains; mean intensity per module: {per_module}"

    return results, status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:45000",
                        help="bridge to read (default: %(default)s)")
    parser.add_argument("--sock", default="REQ", choices=["REQ", "PULL"],
                        help="REQ for a REP bridge, PULL for a PUSH bridge (default: %(default)s)")
    parser.add_argument("--trains", type=int, default=0,
                        help="stop after this many trains (default: run until Ctrl-C)")
    parser.add_argument("--mode", default="workers", choices=["workers", "offload"],
                        help="receive on the workers, or here and offload (default: %(default)s)")
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address (default: start a local cluster)")
    parser.add_argument("--workers", type=int, default=2,
                        help="workers of the local cluster (default: %(default)s)")
    parser.add_argument("--every", type=int, default=10,
                        help="print a line every this many trains (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = connect(args.scheduler, n_workers=args.workers)  # before building the graph
    n_workers = len(client.scheduler_info()["workers"]) or args.workers

    if args.mode == "workers":
        source = Stream.from_karabo_bridge_on_workers(args.endpoint, pulse_intensity, client,
                                                      sock=args.sock, timeout=1.0, wait=2.0)
        results, errors = source, source.errors
    else:
        source = Stream.from_karabo_bridge(args.endpoint, sock=args.sock, timeout=5.0)
        results = source.offload(pulse_intensity, n=2 * n_workers, client=client)
        errors = results.errors

    running = RunningStats()  # per module and pulse, over trains
    done = threading.Event()
    count = 0

    def show(intensity: xr.DataArray) -> None:
        nonlocal count
        running.update(intensity)
        count += 1
        if count % args.every == 0 or count == args.trains:
            mean = running.mean()
            print(f"train {int(intensity.trainId)}: mean intensity {float(intensity.mean()):.3f}, "
                  f"over {count} trains {float(mean.mean()):.3f} "
                  f"(module {int(mean.module[0])}, pulses 0-3: "
                  f"{np.round(mean.isel(module=0).values[:4], 3).tolist()})", flush=True)
        if args.trains and count >= args.trains:
            done.set()

    results.sink(show)
    errors.sink(lambda error: print(f"error: {error}", file=sys.stderr, flush=True))

    source.start()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
        if args.mode == "workers":
            source.finished.wait(30)
        else:
            source.join(timeout=30)
            results.drain(timeout=60)
        client.close()
    print(f"done: {count} trains", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
