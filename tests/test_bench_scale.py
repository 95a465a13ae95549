"""``kb-streams bench scale``: its grid follows the machine, its verdicts follow the numbers, and a
tiny run prints a cell (real bridges, a real local cluster)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_scale import Cell, default_grid
from kb_streams.cli import main as cli_main


def test_grid_follows_the_cores():
    assert default_grid(2) == ([1, 2, 4], [1, 2])
    assert default_grid(1) == ([1, 2], [1])
    assert default_grid(64) == ([1, 2, 4, 8, 16], [1, 2, 4, 8, 16])  # one receiver per shard


def cell(**cpu_per_train: float) -> Cell:
    """A cell at 10 trains/s of 100 MB, with the given CPU seconds per train per process."""
    return Cell(shards=2, workers=2, pulses=4, trains=10, seconds=1.0, train_bytes=1e8,
                cluster_bytes=1e3, incomplete=0, cpu=dict(cpu_per_train))


@pytest.mark.parametrize(("cpu", "verdict"), [
    ({"bridge0": 0.095, "worker0": 0.02, "graph": 0.001, "machine": 0.12}, "bridge CPU"),
    ({"bridge0": 0.01, "worker0": 0.09, "worker1": 0.01, "machine": 0.11}, "worker CPU"),
    ({"bridge0": 0.05, "worker0": 0.09, "worker1": 0.08, "machine": 0.22}, "cores full (2.2 of 2"),
    ({"bridge0": 0.01, "worker0": 0.02, "machine": 0.19}, "by other processes"),
    ({"bridge0": 0.01, "worker0": 0.02, "machine": 0.03}, "not CPU (0.3 of 2 cores busy; 1.0 GB/s"),
])
def test_bound_names_the_limit(cpu, verdict):
    assert verdict in cell(**cpu).bound(cores=2, copy_gbs=5.0)


def test_tiny_run_prints_its_cell(tmp_path, capsys):
    out = tmp_path / "scale.json"
    code = cli_main(["bench", "scale", "--shards", "2", "--workers", "1", "--pulses", "1",
                     "--trains", "3", "--warmup", "1", "--no-10hz", "--json", str(out)])
    assert code == 0
    assert "2 x 1" in capsys.readouterr().out
    (result,) = json.loads(out.read_text())["cells"]
    assert result["shards"] == 2 and result["rate"] > 0
    # trains missing a shard are reported: at start-up only here (the shard that started later
    # never had the first trains the other sent), as many as it was late by (0-4 measured)
    assert isinstance(result["incomplete"], int) and result["incomplete"] >= 0
    assert result["train_bytes"] == pytest.approx(16 * 512 * 128 * 4, rel=0.01)
    assert result["cluster_bytes"] < result["train_bytes"] / 10  # results, not trains, come back
    assert {"bridge0", "bridge1", "worker0", "graph"} <= set(result["cpu"])
