"""``examples/dask_pipeline.py`` runs end to end against a simulated bridge and a real cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _dask_cluster import ProcessCluster

from kb_streams.server import BridgeServer
from kb_streams.simulate import simulate

EXAMPLE = Path(__file__).parents[1] / "examples" / "dask_pipeline.py"



@pytest.mark.parametrize("mode", ["workers", "offload"])
def test_dask_pipeline_example(cluster: ProcessCluster, mode: str) -> None:
    with BridgeServer(sock="REP") as server:
        server.start(simulate("AGIPD-modules", pulses=2, pool_size=1, extras=("xgm",)))
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), "--endpoint", server.endpoint, "--trains", "6",
             "--every", "3", "--mode", mode, "--scheduler", cluster.address],
            capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    progress = [line for line in lines if line.startswith("train 1")]
    assert len(progress) >= 2 and "over 6 trains" in progress[1]
    assert lines[-1].startswith("done: ") and int(lines[-1].split()[1]) >= 6
    assert "error:" not in run.stderr
