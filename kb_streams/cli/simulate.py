"""``kb-streams simulate``: serve simulated detector trains over a Karabo bridge socket."""

from __future__ import annotations

import argparse
import errno
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..server import BridgeServer
from ._output import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    fail,
    format_bytes,
    handle_termination,
    is_terminal,
    non_negative_float,
    positive_float,
    positive_int,
)
from ._split import part_argument, serve_split

COMMAND = "simulate"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:45000"

HELP = "serve simulated detector trains over the Karabo bridge"
DESCRIPTION = ("Serve simulated detector trains (with XGM, delay line and motor sources) "
              "over a Karabo bridge socket that any bridge client can read.")

EPILOG = f"""\
examples:
  kb-streams simulate                                  # REP, 10 Hz, on the default endpoint
  kb-streams simulate --detector AGIPD-modules --pulses 64 --rate 0   # as fast as possible
  kb-streams simulate --sock PUB --endpoint tcp://127.0.0.1:0         # PUB on a free port
  kb-streams simulate --sock PUSH --trains 100 --protocol 1.0 --no-motor
  kb-streams simulate --detector JUNGFRAU --fault skip_every=10 --fault corrupt_every=50
  kb-streams simulate --detector LPD --describe            # what would be sent, then exit
  kb-streams simulate --sock PUSH --split 'det=*DET*' --split 'slow=*:delay=0.3,drop=0.05'

The first line printed ends with the endpoint served on (useful with port 0); then a status line
every --interval seconds while trains go out. Runs until Ctrl-C, or until --trains trains are sent.
Read it with: kb-streams monitor {DEFAULT_ENDPOINT}   (or karabo_bridge.Client, --sock REQ/SUB/PULL)
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command(subparsers, COMMAND, run, help=HELP, description=DESCRIPTION,
                         epilog=EPILOG)
    catalogue = _catalogue()
    names = list(catalogue.get("DETECTORS", {}))
    extras = catalogue.get("EXTRAS", ())
    faults = catalogue.get("FAULTS", {})
    parser.add_argument("--detector", "-d", default=names[0] if names else None, metavar="NAME",
                        help=f"what to simulate, any case: {', '.join(names or ['?'])} "
                             "(default: %(default)s)")
    parser.add_argument("--endpoint", "-e", default=DEFAULT_ENDPOINT,
                        help=f"where to bind (default: {DEFAULT_ENDPOINT}); port 0 picks a free "
                             "port; a bare number is a port on 127.0.0.1; ipc://PATH works too")
    parser.add_argument("--sock", "-z", type=str.upper, choices=["REP", "PUB", "PUSH"],
                        default="REP", help="server socket type (default: REP)")
    parser.add_argument("--protocol", "-p", choices=["2.2", "1.0"], default="2.2",
                        help="bridge protocol version (default: 2.2)")
    parser.add_argument("--pulses", type=positive_int, default=None, metavar="N",
                        help="pulses (JUNGFRAU: memory cells) per train (default: the "
                             "detector's own, 64 for AGIPD and LPD)")
    parser.add_argument("--rate", "-r", type=non_negative_float, default=10.0, metavar="HZ",
                        help="trains per second; 0 = as fast as possible (default: 10)")
    parser.add_argument("--trains", "-n", type=positive_int, default=None, metavar="N",
                        help="stop after sending N trains (default: run until Ctrl-C)")
    parser.add_argument("--raw", action="store_true",
                        help="raw data (uint16, with gain) instead of corrected (float32)")
    parser.add_argument("--layout", choices=["online", "file"], default="online",
                        help="array axes as the online pipeline sends them, or as in files "
                             "(default: online)")
    parser.add_argument("--extras", default=",".join(extras), metavar="LIST",
                        help=f"comma-separated extra sources, or 'none' "
                             f"(default: {','.join(extras)})")
    for extra in extras:
        parser.add_argument(f"--no-{extra}", dest="without", action="append_const",
                            const=extra, help=f"leave out the {extra} source")
    parser.add_argument("--fault", action="append", default=None, metavar="NAME=VALUE",
                        help="inject faults (repeatable): "
                             + "; ".join(f"{name}: {what}" for name, what in faults.items()))
    parser.add_argument("--modules", type=positive_int, default=None, metavar="N",
                        help="JUNGFRAU only: number of modules (default: 2)")
    parser.add_argument("--pool-size", type=positive_int, default=4, metavar="N",
                        help="pre-generated trains (delay steps) held in memory (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--xgm-noise", type=non_negative_float, default=0.0, metavar="F",
                        help="relative rms noise of the XGM's pulse energy readings, new every "
                             "train (default: 0, the exact energies the images were made with)")
    parser.add_argument("--interval", type=positive_float, default=2.0, metavar="S",
                        help="seconds between status lines (default: 2)")
    parser.add_argument("--split", action="append", type=part_argument, default=None,
                        metavar="NAME=GLOB[:OPTS]",
                        help="serve the sources matching GLOB (join several with +) on their "
                             "own endpoint (next port up), with OPTS delay=S,jitter=S,drop=F,"
                             "shuffle=1; repeat per part, unmatched sources go to the first; "
                             "e.g. --split 'det=*DET*' --split 'slow=*XGM*+*PPODL*:delay=0.3'")
    parser.add_argument("--describe", action="store_true",
                        help="print what would be sent (sources, keys, shapes) and exit")
    parser.set_defaults(without=[], binds=True)
    return parser


def _catalogue() -> dict[str, Any]:
    """The simulator's detectors, extras and faults (empty if it cannot be imported)."""
    try:
        from .. import simulate
    except ImportError:  # keep the other sub-commands usable; run() reports the problem
        return {}
    return {"DETECTORS": simulate.DETECTORS, "EXTRAS": simulate.EXTRAS,
            "FAULTS": simulate.FAULTS}


def _simulator_options(args: argparse.Namespace) -> dict[str, Any]:
    from ..simulate import Scene

    options: dict[str, Any] = {
        "raw": args.raw,
        "layout": args.layout,
        "extras": tuple(name for name in args.extras.replace(" ", "").split(",")
                        if name and name.lower() not in ("none", *args.without)),
        "faults": args.fault,
        "seed": args.seed,
        "pool_size": args.pool_size,
        "scene": Scene(xgm_noise=args.xgm_noise),
        "protocol_version": args.protocol,  # of the messages the faults corrupt
    }
    if args.pulses is not None:
        options["pulses"] = args.pulses
    if args.modules is not None:
        options["modules"] = args.modules
    return options


def _status_line(server: BridgeServer) -> str:
    stats = server.stats
    return (f"sent {stats.trains} trains  {stats.rate():.2f} trains/s  "
            f"{format_bytes(stats.byte_rate())}/s  last train {stats.last_train_id}")


def run(args: argparse.Namespace) -> int:
    handle_termination()
    try:
        from ..simulate import simulate
    except ImportError as exc:
        return fail(COMMAND, f"the simulator cannot be loaded: {exc}")
    options = _simulator_options(args)
    try:
        trains = simulate(args.detector, **options)
    except (ValueError, TypeError, KeyError) as exc:
        return fail(COMMAND, f"cannot simulate {args.detector}: {exc}", EXIT_USAGE)
    if args.describe:
        print(trains.describe(), flush=True)
        return EXIT_OK
    if args.split:
        return serve_split(args, trains, _printer())
    try:
        server = BridgeServer(args.endpoint, sock=args.sock, protocol_version=args.protocol)
    except zmq.ZMQError as exc:
        usage = exc.errno in (errno.EINVAL, zmq.EPROTONOSUPPORT)
        return fail(COMMAND, str(exc), EXIT_USAGE if usage else EXIT_FAILURE)

    out = _printer()
    started = time.monotonic()
    finished = interrupted = False
    error: BaseException | None = None
    try:
        trains.prepare()  # build the pool now, so the first reader does not wait for it
        out(f"Serving {args.detector} at {_rate_text(args.rate)} over {args.sock}, protocol "
            f"{args.protocol}, on {server.endpoint}")
        out(trains.describe().splitlines()[0]
            + (f"; extras: {', '.join(options['extras'])}" if options["extras"] else ""))
        server.start(trains, trains=args.trains, rate=args.rate or None)
        finished, error = _report_until_done(server, args, out)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # after --trains N, give the last train time to reach its reader
        server.close(linger=2.0 if finished else 0)
    elapsed = time.monotonic() - started
    stats = server.stats
    out(f"{'Stopped' if interrupted else 'Done'}: sent {stats.trains} trains "
        f"({format_bytes(stats.bytes)}) in {elapsed:.2f} s, "
        f"{stats.trains / elapsed if elapsed else 0:.2f} trains/s on average")
    if error is not None:
        return fail(COMMAND, f"simulator failed: {error}")
    return EXIT_OK


def _report_until_done(server: BridgeServer, args: argparse.Namespace,
                       out: Callable[[str], None]) -> tuple[bool, BaseException | None]:
    """Print a status line per interval until the server is done: (finished, error)."""
    reported, waiting_said = 0, False
    while True:
        try:
            if server.wait(args.interval):
                return True, None
        except Exception as exc:  # the simulator failed in the serving thread
            return False, exc
        if server.stats.trains != reported:
            reported = server.stats.trains
            out(_status_line(server))
        elif reported == 0 and args.sock == "REP" and not waiting_said:
            out("waiting for a reader to request trains ...")
            waiting_said = True


def _rate_text(rate: float) -> str:
    return "full speed" if not rate else f"{rate:g} Hz"


def _printer() -> Callable[[str], None]:
    """print() for pipes; a rich console on a terminal. Every line is flushed at once."""
    if is_terminal():
        from rich.console import Console

        console = Console(highlight=True)
        return lambda text: console.print(text, markup=False)
    return lambda text: print(text, flush=True)

