"""Command-line options shared by ``kb-streams demo`` and ``kb-streams run``.

The bridge to read (or the embedded simulator to start without ``--endpoint``, or a recorded
run with ``--run``), when to stop, and ``--dask [ADDRESS]`` with ``--workers N``.
"""

from __future__ import annotations

import argparse

from ._output import non_negative_float, positive_float, positive_int, reader_socket
from ._recorded import rate, run_location

#: Workers of the local cluster ``--dask`` starts (one thread each).
DASK_WORKERS = 2


def add_live_parser(subparsers: argparse._SubParsersAction, command: str, *, help: str,
                    description: str, epilog: str, pulses: int = 32) -> argparse.ArgumentParser:
    """The parser of a live command (``demo``, ``run``), with :func:`add_source_arguments`."""
    parser = subparsers.add_parser(command, help=help, description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser, pulses=pulses)
    return parser


def add_source_arguments(parser: argparse.ArgumentParser, *, pulses: int = 32) -> None:
    """``--endpoint``, ``--sock``, ``--trains`` ..., ``--run`` and the embedded simulator's
    options.

    ``pulses`` is the default of ``--pulses``, the simulator's pulses per train.
    """
    bridge = parser.add_argument_group("bridge")
    bridge.add_argument(
        "--endpoint", "-e", default=None, metavar="EP",
        help="bridge endpoint to read, e.g. tcp://exflonc12:45000 "
             "(default: start a simulator on tcp://127.0.0.1:<free port>)")
    bridge.add_argument(
        "--sock", "-z", type=reader_socket, default="REQ", metavar="{REQ,SUB,PULL}",
        help="socket type matching the server's REP, PUB or PUSH (default: REQ); the "
             "embedded simulator serves the matching one")
    bridge.add_argument("--trains", "-n", type=positive_int, default=None, metavar="N",
                        help="stop after N trains and print a summary (default: until Ctrl-C)")
    bridge.add_argument("--timeout", type=positive_float, default=5.0, metavar="S",
                        help="seconds without a train before a REQ request is sent again "
                             "(default: 5)")
    bridge.add_argument("--max-in-flight", type=positive_int, default=None, metavar="N",
                        help="cap on trains anywhere in the graph at once (default: no cap)")
    recorded = parser.add_argument_group("recorded run (instead of a bridge)")
    recorded.add_argument(
        "--run", type=run_location, default=None, metavar="PATH|PROPOSAL:RUN",
        help="read a recorded run instead of a bridge: a run directory or HDF5 file, or "
             "PROPOSAL:RUN found by EXtra-data's open_run (needs kb-streams[files]); "
             "paced by --rate")
    recorded.add_argument("--loop", action="store_true",
                          help="with --run: start again from the first train after the last")
    sim = parser.add_argument_group("embedded simulator (without --endpoint)")
    sim.add_argument("--pulses", type=positive_int, default=pulses, metavar="N",
                     help=f"AGIPD pulses per train (default: {pulses})")
    sim.add_argument("--rate", type=rate, default=10.0, metavar="HZ",
                     help="trains per second of the simulator or the --run, 0 = as fast as "
                          "possible; 'original' replays a run's recorded timing (default: 10)")
    sim.add_argument("--xgm-noise", type=non_negative_float, default=0.01, metavar="F",
                     help="relative rms noise of the XGM's pulse energy readings, new every "
                          "train, so each train's result scatters as measured ones do; 0 reads "
                          "them exactly (default: 0.01)")


def dask_address(text: str) -> str:
    """``--dask`` type: ``local``, ``tcp://host:port`` (any Dask protocol) or ``host:port``.

    Examples
    --------
    >>> dask_address("tcp://10.0.0.5:8786"), dask_address("10.0.0.5:8786")
    ('tcp://10.0.0.5:8786', '10.0.0.5:8786')
    >>> dask_address("pipeline.py")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: expected a scheduler address such as tcp://host:8786, not \
'pipeline.py' (write --dask after PIPELINE.py)
    """
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if text == "local" or "://" in text or (sep and host and port.isdigit()):
        return text
    raise argparse.ArgumentTypeError(
        f"expected a scheduler address such as tcp://host:8786, not {text!r}"
        + (" (write --dask after PIPELINE.py)" if text.endswith(".py") else ""))


def add_dask_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--dask [ADDRESS]`` and ``--workers N``; ``what`` says what runs on the cluster."""
    dask = parser.add_argument_group("Dask")
    dask.add_argument(
        "--dask", nargs="?", const="local", default=None, type=dask_address, metavar="ADDRESS",
        help=f"{what}. ADDRESS: a running scheduler, e.g. tcp://10.0.0.5:8786; without it a "
             f"local cluster of --workers worker processes on 127.0.0.1, closed at the end")
    dask.add_argument(
        "--workers", type=positive_int, default=DASK_WORKERS, metavar="N",
        help=f"worker processes of the local cluster, one thread each (default: {DASK_WORKERS})")

