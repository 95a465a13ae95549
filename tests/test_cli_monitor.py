"""``kb-streams monitor``: the installed command, run in a subprocess against our BridgeServer."""

from __future__ import annotations

import select
import signal
import subprocess
import time

import numpy as np

from kb_streams.server import BridgeServer

SOURCE = "SPB_XTD9_XGM/DOOCS/MAIN:output"


def kb_streams(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kb-streams", *args], capture_output=True, text=True, timeout=timeout)


def make_train(tid: int) -> tuple[dict, dict]:
    now = time.time()
    data = {SOURCE: {"data.intensityTD": np.zeros(1000, np.float32), "value": tid}}
    return data, {SOURCE: {"source": SOURCE, "timestamp.tid": tid, "timestamp": now}}


def endless(first: int = 10_000):
    tid = first
    while True:
        yield make_train(tid)
        tid += 1


def test_monitor_counts_trains_gaps_and_decode_errors():
    items = [make_train(1), make_train(2), make_train(3), [b"\xc1"], make_train(6),
             make_train(7)]
    with BridgeServer(sock="PUSH") as server:
        server.start(items)
        result = kb_streams("monitor", server.endpoint, "--sock", "PULL", "--trains", "5",
                            "--timeout", "30")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("5 trains (")
    assert "1 gaps (2 trains missing)" in summary
    assert "1 decode errors" in summary
    assert "protocol 2.2" in summary
    assert "age mean n/a" not in summary


def test_monitor_prints_a_line_per_interval_when_piped():
    with BridgeServer(sock="REP") as server:
        server.start(endless(), rate=40)
        result = kb_streams("monitor", server.endpoint, "--trains", "40", "--interval", "0.25",
                            "--timeout", "30")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 3  # about 1 s of trains: several interval lines, then the summary
    assert all("trains/s" in line and "last train" in line for line in lines[:-1])
    assert lines[-1].startswith("40 trains (")
    assert "0 gaps (0 trains missing)" in lines[-1]


def test_monitor_times_out_with_a_summary_and_an_error(tcp_endpoint):
    result = kb_streams("monitor", tcp_endpoint, "--timeout", "0.5")
    assert result.returncode == 1
    assert result.stdout.startswith("0 trains (0 B)")
    assert result.stderr.splitlines() == [
        f"kb-streams monitor: error: no train from {tcp_endpoint} (REQ) within 0.5 s"]


def test_monitor_stops_on_ctrl_c_with_a_summary():
    with BridgeServer(sock="PUB") as server:
        server.start(endless(), rate=50)
        proc = subprocess.Popen(
            ["kb-streams", "monitor", server.endpoint, "--sock", "SUB", "--interval", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert select.select([proc.stdout], [], [], 30)[0], "monitor printed nothing"
            first = proc.stdout.readline()  # an interval line: trains are flowing
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    assert "trains/s" in first
    assert proc.returncode == 0, err
    assert " trains (" in out.splitlines()[-1]


def test_monitor_bad_endpoint_is_a_usage_error():
    result = kb_streams("monitor", "tcp://", "--trains", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("kb-streams monitor: error: bad endpoint")
