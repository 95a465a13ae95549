"""``kb-streams simulate``: the installed command, read by our tools and the reference's."""

from __future__ import annotations

import select
import signal
import socket
import subprocess

import numpy as np
import pytest
from karabo_bridge import Client as ReferenceClient

from kb_streams.simulate import Faults

CAMERA = "SPB_IRU_SIDEMIC_CAM:daqOutput"
SMALL = ["--detector", "CAMERA", "--pool-size", "1"]


def kb_streams(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["kb-streams", *args], capture_output=True, text=True, timeout=timeout)


class Simulation:
    """``kb-streams simulate`` on a free port, stopped (SIGINT) and reaped on exit."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["kb-streams", "simulate", "--endpoint", "tcp://127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first_line = self.readline()
        self.endpoint = self.first_line.split()[-1]

    def readline(self, timeout: float = 60) -> str:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise AssertionError(f"kb-streams simulate printed nothing in {timeout} s")
        return self.proc.stdout.readline()

    def finish(self, timeout: float = 30) -> tuple[str, str]:
        return self.proc.communicate(timeout=timeout)

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def test_reference_client_reads_n_trains_over_push():
    with Simulation("--detector", "AGIPD-modules", "--pulses", "1", "--pool-size", "1",
                    "--sock", "PUSH", "--rate", "0", "--trains", "3", "--xgm-noise", "0.01") as sim:
        assert sim.first_line.startswith("Serving AGIPD-modules at full speed over PUSH")
        with ReferenceClient(sim.endpoint, sock="PULL", timeout=60) as client:
            trains = [client.next() for _ in range(3)]
        out, err = sim.finish()
    assert sim.proc.returncode == 0, err
    assert "Done: sent 3 trains" in out.splitlines()[-1]
    ids = [meta["SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"]["timestamp.tid"] for _, meta in trains]
    assert ids == [10_000_000_000, 10_000_000_001, 10_000_000_002]
    data, meta = trains[-1]
    modules = [src for src in data if src.startswith("SPB_DET_AGIPD1M-1/DET/")]
    assert len(modules) == 16
    image = data["SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"]["image.data"]
    assert image.shape == (128, 512, 1) and image.dtype == np.float32
    assert {"SA1_XTD2_XGM/XGM/DOOCS", "SA1_XTD2_XGM/XGM/DOOCS:output"} <= set(data)
    energies = [data["SA1_XTD2_XGM/XGM/DOOCS:output"]["data.intensityTD"][0] for data, _ in trains]
    assert len(set(energies)) == 3  # one pool entry, but a new noisy XGM reading every train


def test_reference_client_reads_protocol_1_0_over_rep():
    with Simulation(*SMALL, "--protocol", "1.0", "--no-xgm", "--no-delay", "--no-motor") as sim:
        with ReferenceClient(sim.endpoint, sock="REQ", timeout=60) as client:
            data, meta = client.next()
    assert list(data) == [CAMERA]
    assert data[CAMERA]["metadata"]["timestamp.tid"] == 10_000_000_000  # 1.0: inside the data
    assert meta[CAMERA]["timestamp.tid"] == 10_000_000_000
    assert sim.proc.returncode == 0
    assert any(isinstance(v, np.ndarray) and v.ndim == 2 for v in data[CAMERA].values())


def test_reference_glimpse_reads_our_simulator():
    with Simulation(*SMALL) as sim:
        result = subprocess.run(["karabo-bridge-glimpse", sim.endpoint], capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Train ID: 10000000000" in result.stdout
    assert f"'{CAMERA}' @ 10000000000" in result.stdout


def test_monitor_counts_the_faults_of_our_simulator():
    faults = ["skip_every=4", "corrupt_every=5"]
    with Simulation(*SMALL, "--sock", "PUSH", "--rate", "0", "--fault", faults[0],
                    "--fault", faults[1]) as sim:
        result = kb_streams("monitor", sim.endpoint, "--sock", "PULL", "--trains", "8",
                            "--timeout", "60")
    assert result.returncode == 0, result.stderr
    # what the monitor must have seen: PUSH drops nothing, so count the faults up to train 8
    spec = Faults.parse(faults)
    good, corrupted = [], 0
    offset = 0
    while len(good) < 8:
        if not spec.skipped(offset):
            if spec.wire_fault(offset) == "corrupt":
                corrupted += 1
            else:
                good.append(offset)
        offset += 1
    missing = good[-1] - good[0] + 1 - len(good)
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("8 trains (")
    assert f"({missing} trains missing)" in summary and missing > 0
    assert f"; {corrupted} decode errors;" in summary and corrupted > 0


def test_ctrl_c_stops_with_a_summary():
    with Simulation(*SMALL, "--interval", "0.2") as sim:
        with ReferenceClient(sim.endpoint, timeout=60) as client:
            client.next()
        lines = [sim.readline() for _ in range(2)]  # the description, then a status line
        while not lines[-1].startswith("sent") and len(lines) < 4:  # or "waiting ..." first
            lines.append(sim.readline())
        assert lines[-1].startswith("sent 1 trains"), lines
        sim.proc.send_signal(signal.SIGINT)
        out, err = sim.finish()
    assert sim.proc.returncode == 0, err
    assert out.splitlines()[-1].startswith("Stopped: sent 1 trains")


def test_describe_prints_what_would_be_sent():
    result = kb_streams("simulate", "--detector", "jungfrau", "--modules", "1", "--describe")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("JUNGFRAU: corrected")
    assert "data.adc" in result.stdout


@pytest.mark.parametrize("args, code, message", [
    (["--detector", "VELOCIRAPTOR"], 2, "unknown detector 'VELOCIRAPTOR'; choose from AGIPD"),
    (["--endpoint", "foo"], 2, "cannot bind foo"),
    (["--fault", "explode=1"], 2, "unknown fault"),
    (["--extras", "xgm,laser"], 2, "unknown extra(s) 'laser'"),
    (["--rate", "-1"], 2, "must be >= 0"),
])
def test_usage_errors(args, code, message):
    result = kb_streams("simulate", *SMALL, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert result.stdout == ""


def test_port_in_use_is_a_one_line_error(tcp_endpoint):
    host, port = tcp_endpoint.removeprefix("tcp://").split(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        result = kb_streams("simulate", *SMALL, "--endpoint", tcp_endpoint)
    assert result.returncode == 1
    assert result.stderr.startswith(f"kb-streams simulate: error: cannot bind {tcp_endpoint}")
    assert len(result.stderr.splitlines()) == 1


def test_help_lists_detectors_and_examples():
    result = kb_streams("simulate", "--help")
    assert result.returncode == 0
    assert "AGIPD-modules" in result.stdout and "JUNGFRAU" in result.stdout
    assert "examples:" in result.stdout
