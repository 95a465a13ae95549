"""Our ``inspect`` and ``monitor`` read the reference simulator and extra-data's file streamer."""

from __future__ import annotations

import select
import signal
import subprocess

import pytest
from karabo_bridge.server import SimServerInThread

MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
XGM = "SA1_XTD2_XGM/DOOCS/MAIN:output"


def kb_streams(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kb-streams", *args], capture_output=True, text=True, timeout=timeout)


def inspect_output(endpoint: str) -> str:
    """What ``kb-streams inspect`` prints for one train of *endpoint* (it must succeed)."""
    result = kb_streams("inspect", endpoint, "--timeout", "60")
    assert result.returncode == 0, result.stderr
    return result.stdout


def monitor_summary(endpoint: str, n_trains: int) -> str:
    """The summary line of ``kb-streams monitor`` after *n_trains* trains, all of them there."""
    result = kb_streams("monitor", endpoint, "--trains", str(n_trains), "--timeout", "60")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"{n_trains} trains (")
    assert "0 gaps (0 trains missing)" in summary
    return summary


@pytest.fixture
def reference_simulator(tcp_endpoint):
    """karabo_bridge's simulator (raw AGIPD module, zeros), REP on loopback only."""
    server = SimServerInThread(tcp_endpoint, sock="REP", detector="AGIPDModule", raw=True,
                               datagen="zeros", debug=False)
    server.start()
    yield tcp_endpoint
    server.stop()


def test_inspect_reads_the_reference_simulator(reference_simulator):
    out = inspect_output(reference_simulator)
    assert "protocol   2.2" in out
    assert "\nage        n/a" not in out  # the reference simulator sends timestamps
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
            if line.startswith(MODULE)}
    assert rows[(MODULE, "image.data")][:5] == ["uint16", "array", "(128,", "512,", "64)"]
    assert (MODULE, "image.trainId") in rows


def test_monitor_reads_the_reference_simulator(reference_simulator):
    summary = monitor_summary(reference_simulator, 5)
    assert "0 decode errors" in summary


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    """A small EuXFEL-format run written by extra-data: XGMs and a camera, trains 10000-10399."""
    from extra_data.tests.make_examples import make_fxe_da_file

    directory = tmp_path_factory.mktemp("run")
    make_fxe_da_file(str(directory / "RAW-R0450-DA01-S00001.h5"))
    return directory


@pytest.fixture
def file_streamer(mock_run, tcp_endpoint):
    """``karabo-bridge-serve-files`` on a loopback endpoint (REP); stopped with SIGINT."""
    proc = subprocess.Popen(["karabo-bridge-serve-files", str(mock_run), tcp_endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 60)[0], "serve-files printed nothing"
        assert "Streamer started on" in proc.stdout.readline()
        yield tcp_endpoint
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_inspect_and_monitor_read_extra_data_file_streamer(file_streamer):
    out = inspect_output(file_streamer)
    assert "train ID   10000\n" in out
    assert "timestamp  n/a" in out and "age        n/a" in out  # files carry no timestamps
    assert any(line.startswith(XGM) and "data.intensityTD" in line for line in out.splitlines())

    summary = monitor_summary(file_streamer, 20)  # no gaps: trains 10001-10020, in order
    assert "age mean n/a" in summary and "protocol 2.2" in summary
