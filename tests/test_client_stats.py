"""StreamStats (no sockets) and the ``kb-streams bench`` command."""

from __future__ import annotations

import json
import math

import pytest

from kb_streams.cli import main as cli_main
from kb_streams.cli.bench import available
from kb_streams.protocol import Message
from kb_streams.stats import StreamStats


def message(tid: int | None, nbytes: int = 100, version: str = "2.2") -> Message:
    meta = {} if tid is None else {"src": {"timestamp.tid": tid}}
    return Message(data={"src": {}}, meta=meta, protocol_version=version, nbytes=nbytes)


def test_counts_trains_bytes_gaps_and_version():
    stats = StreamStats()
    for tid, now in [(10, 0.0), (11, 0.1), (15, 0.2), (16, 0.3), (18, 0.4)]:
        stats.observe(message(tid), now=now)
    assert (stats.trains, stats.bytes, stats.gaps, stats.gap_events) == (5, 500, 3 + 1, 2)
    assert stats.last_train_id == 18 and stats.protocol_version == "2.2"
    assert stats.train_rate == pytest.approx(4 / 0.4)
    assert stats.byte_rate == pytest.approx(400 / 0.4)


def test_dropped_trains_are_not_gaps_and_restarts_are_not_gaps():
    stats = StreamStats()
    stats.observe(message(100), now=0)
    stats.observe(message(105), dropped=4, now=1)  # 101-104 were received and discarded
    assert (stats.gaps, stats.dropped) == (0, 4)
    stats.observe(message(50), now=2)  # the source restarted
    stats.observe(message(10_000_000_000), now=3)  # a different source
    assert stats.gaps == 0 and stats.last_train_id == 10_000_000_000
    stats.observe(message(None, version="1.0"), now=4)  # no train ID: counted, no gap logic
    assert stats.trains == 5 and stats.protocol_version == "1.0"
    assert stats.last_train_id == 10_000_000_000


def test_as_dict_is_a_plain_snapshot():
    stats = StreamStats()
    snapshot = stats.as_dict()
    assert snapshot["trains"] == 0 and math.isnan(snapshot["train_rate"])
    assert "max_gap" not in snapshot
    stats.timeouts += 1
    assert snapshot["timeouts"] == 0 and stats.as_dict()["timeouts"] == 1


def test_bench_command_lists_and_rejects(capsys):
    assert "client" in available()
    with pytest.raises(SystemExit):
        cli_main(["bench", "--help"])
    assert "available benchmarks:" in capsys.readouterr().out
    assert cli_main(["bench", "no_such_thing"]) == 2
    err = capsys.readouterr().err
    assert "no benchmark 'no_such_thing'" in err and len(err.strip().splitlines()) == 1


def test_bench_client_runs_tiny(capsys):
    code = cli_main(["bench", "client", "--pulses", "1", "--trains", "3", "--rounds", "1",
                     "--work-ms", "5", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes_per_train"] > 16 * 512 * 128 * 4
    for scenario in ("REQ", "PULL", "REQ+work"):
        rates = report["results"][scenario]["trains_per_s"]
        assert set(rates) == {"kb_streams", "karabo_bridge", "pyzmq"}
        assert all(rate > 0 for rate in rates.values())


def test_bench_latest_runs_tiny(capsys):
    code = cli_main(["bench", "latest", "--mb", "0.1", "--rate", "20", "--work", "0.1",
                     "--seconds", "0.6", "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["trains"] >= 2 and row["age_median"] >= 0 and row["dropped"] >= 0
