"""``kb-streams inspect``: the installed command, run in a subprocess against our BridgeServer."""

from __future__ import annotations

import itertools
import re
import subprocess
import time

import numpy as np
import pytest

from kb_streams.server import BridgeServer

DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
XGM = "SA1_XTD2_XGM/XGM/DOOCS:output"


def kb_streams(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kb-streams", *args], capture_output=True, text=True, timeout=timeout)


def make_train(tid: int) -> tuple[dict, dict]:
    now = time.time()
    sec, frac = f"{now:.6f}".split(".")
    data = {
        DET: {"image.data": np.zeros((2, 8, 4), np.uint16), "image.cellId": np.arange(2),
              "header.pulseCount": 2},
        XGM: {"pulseEnergy.wavelengthUsed": 1.33, "passport": ["offset", "gain"]},
    }
    meta = {src: {"source": src, "timestamp.tid": tid, "timestamp": now,
                  "timestamp.sec": sec, "timestamp.frac": frac.ljust(18, "0")} for src in data}
    return data, meta


def test_inspect_prints_a_table_of_one_train():
    with BridgeServer(sock="REP") as server:
        server.start(make_train(10_000 + i) for i in range(3))
        result = kb_streams("inspect", server.endpoint, "--timeout", "30")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "train ID   10000\n" in out
    assert "protocol   2.2" in out
    assert "\nage        " in out and "age        n/a" not in out
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
             if line.startswith((DET, XGM))}
    assert lines[(DET, "image.data")] == ["uint16", "array", "(2,", "8,", "4)", "128", "B"]
    assert lines[(DET, "header.pulseCount")] == ["int", "2"]
    assert lines[(XGM, "pulseEnergy.wavelengthUsed")] == ["float", "1.33"]
    assert lines[(XGM, "passport")][:2] == ["list", "(2,)"]
    assert result.stderr == ""


def test_inspect_protocol_1_0_over_push_named_by_the_server_socket():
    with BridgeServer(sock="PUSH", protocol_version="1.0") as server:
        server.start(make_train(10_000 + i) for i in range(3))
        result = kb_streams("inspect", server.endpoint, "--sock", "push", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "protocol   1.0" in result.stdout
    assert f"{server.endpoint} (PULL)" in result.stdout


def test_inspect_times_out_with_a_one_line_error(tcp_endpoint):
    t0 = time.monotonic()
    result = kb_streams("inspect", tcp_endpoint, "--timeout", "0.5")
    assert time.monotonic() - t0 < 30
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"kb-streams inspect: error: no train from {tcp_endpoint} (REQ) within 0.5 s"]


def test_inspect_reports_a_message_it_cannot_decode():
    with BridgeServer(sock="PUSH") as server:
        server.start([[b"\xc1"]])  # 0xc1 is never valid msgpack
        result = kb_streams("inspect", server.endpoint, "--sock", "PULL", "--timeout", "30")
    assert result.returncode == 1
    assert result.stderr.startswith("kb-streams inspect: error: cannot decode")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["foo"], "bad endpoint 'foo'"),
    (["tcp://127.0.0.1:1", "--sock", "PAIR"], "invalid socket 'PAIR'"),
    (["tcp://127.0.0.1:1", "--timeout", "-1"], "must be > 0"),
])
def test_inspect_usage_errors(args, message):
    result = kb_streams("inspect", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_inspect_help_has_examples():
    result = kb_streams("inspect", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "kb-streams inspect tcp://" in result.stdout


def test_inspect_shows_only_the_sources_matching_source_globs():
    with BridgeServer(sock="REP") as server:
        server.start(make_train(10_000 + i) for i in itertools.count())
        result = kb_streams("inspect", server.endpoint, "--timeout", "30", "--source", "*XGM*")
        missing = kb_streams("inspect", server.endpoint, "--timeout", "30",
                             "--source", "*JNGFR*", "-s", "*MID*")
    assert result.returncode == 0, result.stderr
    shown = {line.split()[0] for line in result.stdout.splitlines()
             if line.startswith(("SPB_", "SA1_"))}
    assert shown == {XGM}
    assert "sources    2 (1 shown)" in result.stdout
    assert missing.returncode == 1
    [line] = missing.stderr.splitlines()
    assert re.fullmatch(r"kb-streams inspect: error: no source of train 100\d\d matches \*JNGFR\* "
                        r"or \*MID\*; it has: (.*)", line)
    assert set(line.split("it has: ")[1].split(", ")) == {DET, XGM}
