"""``kb-streams demo``: a live pump-probe curve from AGIPD modules, the XGM and a delay line.

With ``--dask [ADDRESS]`` the per-train reduction runs on a Dask cluster, and the trains go
straight from the bridge to the workers: each worker has its own bridge client
(:func:`kb_streams.demo.pump_probe_on_workers`), reduces the trains it receives to a
``(delay, ratio)`` pair, and only those pairs come back to this process, which bins them. The
alternative, receiving here and offloading each train, moves every train once more between
processes (about 100 ms per 100 MB on a 2-core machine), and this process would have to receive
all the trains alone.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from typing import TYPE_CHECKING

from ._live_options import add_dask_arguments, add_live_parser
from ._live_session import (
    check_source_arguments,
    dask_cluster,
    first_trains,
    is_loopback,
    open_source,
    run_live,
    simulator_endpoint,
    source_title,
)
from ._output import EXIT_FAILURE, EXIT_USAGE, fail, handle_termination
from ._recorded import SourceError
from ._web import add_web_arguments, serving, web_wanted

if TYPE_CHECKING:
    from ..demo import PumpProbeSetup

COMMAND = "demo"

EPILOG = """\
examples:
  kb-streams demo                       # embedded simulator, until Ctrl-C
  kb-streams demo --trains 40           # 40 trains, then the curve and a summary
  kb-streams demo --dask                # reduce on a local Dask cluster (2 worker processes)
  kb-streams demo --web-port 8080       # the browser dashboard on http://127.0.0.1:8080
  kb-streams demo --run /gpfs/exfel/exp/SPB/202401/p002345/raw/r0042 --rate 0
  kb-streams demo --dask tcp://10.0.0.5:8786 --endpoint tcp://exflonc12:45000
  kb-streams demo --endpoint tcp://exflonc12:45000 --sock SUB \\
      --detector-sources 'SPB_DET_AGIPD1M-1/CORR/*CH0:output[image.data]' \\
      --roi 3:100:160,0:128 --delay 'SPB_AUXT_LIC/DOOCS/PPODL[actualPosition]' \\
      --bins=-2,10,24

Per train: stack the region of interest (ROI) of every detector module, sum that of one
module per pulse, divide by the XGM pulse energies, take pumped (even) over unpumped (odd)
pulses, and bin the ratio by the delay line: mean ± std per delay bin. On the simulator it
rises from 1.0 (before time zero) to ~1.49; its XGM reads the pulse energies with 1% noise
(--xgm-noise), so the trains of a delay step scatter by about 0.5% at 16 pulses, as measured
ones do. The code is kb_streams/demo.py (pump_probe_graph): copy it for your own pipeline.

--run PATH|PROPOSAL:RUN runs the same graph on a recorded run (a run directory, or EXtra-data's
open_run) at --rate trains/s (0: as fast as it goes, original: the recorded timing), --loop to
repeat it. The run needs the sources the graph reads: the defaults are the simulator's
(SPB's) names; name a run's own with --detector-sources, --xgm and --delay as for a bridge.

The browser dashboard (http://127.0.0.1:8050; --web-port, --no-web) shows the detector, the
ROI's module with the ROI as a box (drag it, or shift-drag a new one: the curve is computed with
it from the next train on; Reset restarts the curve), the curve filling in and the XGM over
time; Pause holds the trains before the analysis. kb_streams/web/demo.py builds it.

The embedded simulator sends 16 pulses per train by default (67 MB of AGIPD-1M data, and a
420 MB pool of pre-generated trains). Only the ROI is copied out of each train, so 2 cores
keep up with 10 trains/s of 64 pulses too (268 MB a train, 1.7 GB of pool): try --pulses 64.

--dask: the trains go from the bridge straight to the Dask workers. Each worker runs its own
bridge client (REQ on a REP bridge, PULL on a PUSH bridge: the bridge spreads the trains over
the workers; SUB: one worker receives them all), reduces each train it receives to a
(delay, ratio) pair, and only those few bytes come back to this process, which re-orders them
by train ID and bins them. Receiving here and sending every train on to a worker would move
each train once more between processes (about 100 ms per 100 MB on a 2-core machine) and leave
this process receiving all of them alone. Without ADDRESS a local cluster of --workers worker
processes (one thread each) runs on 127.0.0.1 and is closed at the end; with a scheduler
address the workers must reach --endpoint (the embedded simulator listens on 127.0.0.1 only)
and have kb_streams installed. The live view shows the cluster and counts the trains whose
reduction failed (errors) and the results that came too late to keep their order (late).
"""

TITLE = "kb-streams demo: pump-probe delay scan"

#: Default pulses per train of the embedded simulator: keeps 10 trains/s on 2 cores.
DEFAULT_PULSES = 16


def _source_key(default_key: str):
    """argparse type: ``SOURCE[KEY]`` or ``SOURCE`` -> (source, key)."""

    def parse(text: str) -> tuple[str, str]:
        match = re.fullmatch(r"(.+?)(?:\[([^\[\]]+)\])?", text.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"expected SOURCE or SOURCE[KEY], not {text!r}")
        return match.group(1), match.group(2) or default_key

    return parse


def _roi(text: str) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """argparse type: ``MODULE:SS0:SS1,FS0:FS1``."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:SS_START:SS_STOP,FS_START:FS_STOP (e.g. 0:198:230,57:89), "
            f"not {text!r}")
    module, ss0, ss1, fs0, fs1 = map(int, match.groups())
    if ss1 <= ss0 or fs1 <= fs0:
        raise argparse.ArgumentTypeError(f"empty ROI {text!r}")
    return module, (ss0, ss1), (fs0, fs1)


def _bins(text: str) -> tuple[float, ...]:
    """argparse type: ``START,STOP,N`` equal bins."""
    try:
        start, stop, n = text.split(",")
        start_f, stop_f, n_i = float(start), float(stop), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,STOP,N (e.g. -1.625,4.625,5), "
                                         f"not {text!r}") from None
    if n_i < 1 or not stop_f > start_f:
        raise argparse.ArgumentTypeError(f"need STOP > START and N >= 1, not {text!r}")
    return tuple(start_f + (stop_f - start_f) * i / n_i for i in range(n_i + 1))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..demo import PumpProbeSetup

    d = PumpProbeSetup()
    parser = add_live_parser(
        subparsers, COMMAND,
        help="live pump-probe curve (embedded simulator, a real bridge or a recorded run)",
        description="Run the example graph: AGIPD modules -> stack -> per-pulse ROI "
                    "intensity / XGM pulse energy -> pumped/unpumped ratio binned by the delay "
                    "line, with live trains/s, data age, lost trains and the curve filling in.",
        epilog=EPILOG, pulses=DEFAULT_PULSES)
    names = parser.add_argument_group("data (defaults: the simulator's, SPB's names)")
    names.add_argument("--detector-sources", type=_source_key(d.key), metavar="GLOB[KEY]",
                       default=(d.detector_sources, d.key),
                       help=f"module sources to stack and their image key (default: "
                            f"{d.detector_sources}[{d.key}])")
    names.add_argument("--roi", type=_roi, metavar="M:SS0:SS1,FS0:FS1",
                       default=(d.module, d.slow_scan, d.fast_scan),
                       help=f"module and pixel ranges of the ROI (default: {d.module}:"
                            f"{d.slow_scan[0]}:{d.slow_scan[1]},{d.fast_scan[0]}:{d.fast_scan[1]})")
    names.add_argument("--xgm", type=_source_key(d.xgm_key), metavar="SRC[KEY]",
                       default=(d.xgm, d.xgm_key),
                       help=f"XGM pulse energies (default: {d.xgm}[{d.xgm_key}])")
    names.add_argument("--delay", type=_source_key(d.delay_key), metavar="SRC[KEY]",
                       default=(d.delay, d.delay_key),
                       help=f"delay line position, ps (default: {d.delay}[{d.delay_key}])")
    names.add_argument("--bins", type=_bins, metavar="START,STOP,N", default=d.bins,
                       help=f"delay bins (default: {d.bins[0]:g},{d.bins[-1]:g},"
                            f"{len(d.bins) - 1}); write --bins=-2,10,24 for a negative start")
    names.add_argument("--pump-every", type=int, default=d.pump_every, metavar="N",
                       help=f"pulse p is pumped when p %% N == 0 (default: {d.pump_every})")
    add_dask_arguments(parser, what="receive and reduce the trains on Dask workers")
    add_web_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..demo import PumpProbeSetup, pump_probe_graph

    if args.pump_every < 2:
        return fail(COMMAND, "--pump-every must be 2 or more (some pulses must be unpumped)",
                    EXIT_USAGE)
    problem = check_source_arguments(args)
    if problem is not None:
        return fail(COMMAND, problem, EXIT_USAGE)
    if args.dask is not None and args.run is not None:
        return fail(COMMAND, "--dask receives the trains on the workers from a bridge; with "
                    "--run leave it out, or serve the run (karabo-bridge-serve-files) and pass "
                    "--endpoint", EXIT_USAGE)
    if args.dask is not None and args.max_in_flight is not None:
        return fail(COMMAND, "--max-in-flight applies without --dask only (with --dask each "
                    "worker holds at most a few trains)", EXIT_USAGE)
    handle_termination()
    (detector_sources, key), (xgm, xgm_key), (delay, delay_key) = (
        args.detector_sources, args.xgm, args.delay)
    module, slow_scan, fast_scan = args.roi
    setup = PumpProbeSetup(
        detector_sources=detector_sources, key=key, module=module, slow_scan=slow_scan,
        fast_scan=fast_scan, xgm=xgm, xgm_key=xgm_key, delay=delay, delay_key=delay_key,
        bins=tuple(args.bins), pump_every=args.pump_every)
    if args.dask is not None:
        return _run_on_dask(args, setup)
    with contextlib.ExitStack() as stack:
        try:
            source = stack.enter_context(open_source(args))
        except SourceError as exc:
            return fail(COMMAND, str(exc), EXIT_USAGE)
        dashboard = None
        if web_wanted(args):
            from ..web.demo import demo_dashboard

            dashboard, curve = demo_dashboard(source, setup)
        else:
            curve = pump_probe_graph(source, setup)
        with serving(dashboard, args) as url:
            return run_live(source, curve.table, trains=args.trains,
                            title=TITLE + source_title(source)
                            + (f" · dashboard {url}" if url else ""))


def _run_on_dask(args: argparse.Namespace, setup: PumpProbeSetup) -> int:
    """The demo with the trains received and reduced on Dask workers, binned here."""
    from ..demo import bin_ratios, pump_probe_on_workers

    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(dask_cluster(args.dask, n_workers=args.workers))
        except (OSError, TimeoutError) as exc:
            return fail(COMMAND, f"cannot connect to the Dask scheduler {args.dask}: {exc}",
                        EXIT_FAILURE)
        endpoint = stack.enter_context(simulator_endpoint(args))
        if args.endpoint is None and not all(map(is_loopback, cluster.worker_hosts())):
            print(f"warning: Dask workers on other hosts cannot reach the embedded simulator "
                  f"on {endpoint}: pass --endpoint", file=sys.stderr, flush=True)
        # the client exists before any node of the graph: they share its event loop
        source = pump_probe_on_workers(endpoint, cluster.client, setup, sock=args.sock,
                                       receive_timeout=args.timeout)
        curve = bin_ratios(first_trains(source, args.trains, source.stop), setup)
        dashboard = None
        if web_wanted(args):
            from ..web import Dashboard

            dashboard = Dashboard(TITLE + " on Dask")
            curve.stream.to_dashboard("Pump-probe ratio by delay", dashboard=dashboard)
        with serving(dashboard, args) as url:
            return run_live(source, curve.table, trains=args.trains, cluster=cluster,
                            title=TITLE + " on Dask" + (f" · dashboard {url}" if url else ""),
                            stop_timeout=30)
