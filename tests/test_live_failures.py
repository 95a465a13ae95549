"""The live view of ``run``/``demo`` counts each failure of the graph once, however it is reported.

A failing node is reported twice by design: as a record on the source's ``.errors`` stream and as
one log record (:func:`kb_streams.graph_errors.log_failure`). The panel, its error lines and the
final summary must still show N failures for N failed trains.
"""

from __future__ import annotations

import io

from rich.console import Console
from streamz import Stream

import kb_streams  # noqa: F401  (registers Stream.from_karabo_bridge)
from kb_streams.cli._live_errors import error_streams
from kb_streams.cli._live_session import run_live
from kb_streams.server import BridgeServer

FAILED_TRAINS = 5
FIRST_TRAIN = 1000


def ratio(train):
    return 1 / 0


def test_every_failed_train_is_counted_once_in_the_panel_and_the_summary(tcp_endpoint, capsys):
    n = FAILED_TRAINS
    trains = (({"src": {"x": i}}, {"src": {"timestamp.tid": FIRST_TRAIN + i}}) for i in range(n))
    with BridgeServer(tcp_endpoint, sock="REP") as server:
        server.start(trains)
        source = Stream.from_karabo_bridge(tcp_endpoint, timeout=10)
        source.map(ratio).sink(print)
        code = run_live(source, trains=n, errors=error_streams(source),
                        console=Console(file=io.StringIO(), force_terminal=False))
    out, err = capsys.readouterr()
    assert code == 1  # every train failed
    assert f"{n} trains processed, {n} failed" in out
    counters = out.splitlines()[1]
    assert f"errors {n}" in counters.split(" | ")
    assert f"error: map(ratio): ZeroDivisionError: division by zero (train {FIRST_TRAIN}, " \
           f"× {n - 1} more)" in out.splitlines()
    # the first failure in full, once; the others only counted
    assert err.count("failed: ZeroDivisionError") == 1
    assert f"all {n} failed (1 kind of error" in err


def test_a_failure_reported_on_a_stream_twice_reachable_and_in_the_log_counts_once():
    import logging

    from kb_streams.cli._live_errors import ErrorDigest
    from kb_streams.records import ErrorRecord

    source = Stream()
    first, second = source.map(abs), source.map(abs)
    first.errors = second.errors = shared = Stream()  # two nodes reporting on one stream
    digest = ErrorDigest([*error_streams(source), shared])
    try:
        for train_id in range(FIRST_TRAIN, FIRST_TRAIN + FAILED_TRAINS):
            exc = ZeroDivisionError("division by zero")
            logging.getLogger("kb_streams.sources").error(
                "failed", extra={"train_id": train_id, "node": "map(ratio)",
                                 "error_traceback": "", "exception": exc})
            shared.emit(ErrorRecord(train_id, "map(ratio)", exc, ""))
            shared.emit(ErrorRecord(train_id, "offload(f)", None, "", reason="lost"))
        assert digest.failed_trains == FAILED_TRAINS
        assert digest.total == digest.count == 2 * FAILED_TRAINS
        assert sorted(kind.count for kind in digest.kinds.values()) == [FAILED_TRAINS] * 2
    finally:
        digest.close()
