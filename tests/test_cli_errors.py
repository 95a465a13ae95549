"""``kb-streams run``/``demo``, as subprocesses on real sockets: failures of the graph shown once
per kind and counted, a non-zero exit when no train succeeded, a dead endpoint said out loud."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _waiting import interrupt_when

CLI = [sys.executable, "-c", "import sys; from kb_streams.cli import main; sys.exit(main())"]
SMALL = ["--pulses", "1", "--rate", "0"]

MIXED = """\
def pipeline(source):
    def ratio(train):
        if train.train_id % 2 == 0:
            return 1 / 0
        return train.train_id

    def lookup(train):
        if train.train_id % 3 == 0:
            return {}["SA1_XTD2_XGM/XGM/DOOCS"]
        return train.train_id

    source.map(lookup).sink(lambda _: None)  # sinks are kept alive by streamz
    return source.map(ratio)
"""


def test_every_train_failing_is_one_traceback_a_count_and_exit_1():
    # a typo'd source name: each train fails the same way
    result = subprocess.run([*CLI, "demo", *SMALL, "--trains", "6", "--xgm", "SA1_XTD2_XMG[x]"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("Traceback") == 1
    assert "has no source 'SA1_XTD2_XMG'" in result.stderr
    assert "6 trains processed, 6 failed" in result.stdout
    assert "× 5 more)" in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "error: no train succeeded: all 6 failed (1 kind of error, the first of each shown "
        "above)")
    assert len(result.stderr.splitlines()) < 25  # not 10 to 18 lines per train


def test_distinct_errors_are_shown_once_each_and_some_success_exits_0(tmp_path):
    pipeline = tmp_path / "mixed.py"
    pipeline.write_text(MIXED)
    result = subprocess.run([*CLI, "run", str(pipeline), *SMALL, "--trains", "12"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Traceback") == 2
    assert result.stderr.count("ZeroDivisionError: division by zero") == 2  # head, last line
    assert result.stderr.count("KeyError: 'SA1_XTD2_XGM/XGM/DOOCS'") == 2
    assert "12 trains processed, 8 failed" in result.stdout  # even or a multiple of 3
    kinds = [line for line in result.stdout.splitlines() if line.startswith("error: map(")]
    assert len(kinds) == 2
    assert any("map(ratio): ZeroDivisionError" in line and "× 5 more" in line for line in kinds)
    assert any("map(lookup): KeyError" in line and "× 3 more" in line for line in kinds)


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_dead_endpoint_is_said_with_the_counters(command, tmp_path, tcp_endpoint):
    pipeline = tmp_path / "ok.py"
    pipeline.write_text("def pipeline(source):\n    return source.map(lambda t: t.train_id)\n")
    args = [str(pipeline)] if command == "run" else []
    seen, rest, err, _ = interrupt_when(  # plain status lines (not a terminal) every 2 s
        [*CLI, command, *args, "--endpoint", tcp_endpoint, "--timeout", "1"],
        lambda line: "reconnects 1" in line, 60)
    stalled = [line for line in seen if line.startswith("no train from")]
    assert stalled, seen
    assert stalled[0].startswith(f"no train from {tcp_endpoint} (REQ) for ")
    assert " s | timeouts " in stalled[0] and " | reconnects " in stalled[0]
    assert "interrupted; 0 trains processed" in rest
    assert "Traceback" not in err
