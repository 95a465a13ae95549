"""``kb-streams run PIPELINE.py --run PATH`` and ``kb-streams demo --run PATH``: the same graphs
on a recorded run, here one recorded from the demo's simulator (``_demo_run.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _demo_run import make_demo_run

from kb_streams.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI = [sys.executable, "-m", "kb_streams.cli"]
TRAINS = 10  # in the recorded run: 5 delay steps of 2 trains


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_run(tmp_path_factory.mktemp("recorded") / "r0001", trains=TRAINS,
                         trains_per_step=2)


def _cli(*argv: str, timeout: float = 90, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv, "--no-web"], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_run_feeds_a_pipeline_file_the_recorded_trains(run_dir):
    out = _cli("run", str(EXAMPLES / "roi_monitor.py"), "--run", str(run_dir), "--rate", "0",
               "--trains", "4")
    assert out.returncode == 0, out.stderr
    assert f"run: {run_dir}, {TRAINS} trains of 5 sources, as fast as the graph goes" in out.stdout
    assert f"4 trains processed from the run {run_dir}" in out.stdout
    assert "errors 0" in out.stdout and "rolling mean (10 trains)" in out.stdout


def test_run_ends_with_the_run_or_loops_over_it(run_dir):
    whole = _cli("run", str(EXAMPLES / "xgm_normalised.py"), "--run", str(run_dir), "--rate",
                 "0")
    assert whole.returncode == 0, whole.stderr
    assert f"{TRAINS} trains processed" in whole.stdout
    looped = _cli("run", str(EXAMPLES / "xgm_normalised.py"), "--run", str(run_dir), "--rate",
                  "0", "--loop", "--trains", str(TRAINS + 5))
    assert looped.returncode == 0, looped.stderr
    assert f"{TRAINS + 5} trains processed" in looped.stdout


def test_run_replays_the_recorded_timing(run_dir):
    out = _cli("run", str(EXAMPLES / "xgm_normalised.py"), "--run", str(run_dir), "--rate",
               "original", "--trains", "3")
    assert out.returncode == 0, out.stderr
    assert "3 trains processed" in out.stdout


def _curve(stdout: str) -> dict[float, tuple[int, float]]:
    """``{delay: (trains, mean ratio)}`` of the demo's printed curve."""
    rows = re.findall(r"^\s*(-?\d+\.\d+)\s+(\d+)\s+(\d+\.\d+) ±", stdout, re.MULTILINE)
    return {float(d): (int(n), float(m)) for d, n, m in rows}


def test_demo_on_a_run_recorded_from_its_simulator_gives_the_simulated_curve(run_dir):
    out = _cli("demo", "--run", str(run_dir), "--rate", "0")
    assert out.returncode == 0, out.stderr
    assert f"{TRAINS} trains processed from the run {run_dir}" in out.stdout
    curve = _curve(out.stdout)
    assert sorted(curve) == [-1.0, 0.25, 1.5, 2.75, 4.0]
    assert all(n == 2 for n, _ in curve.values())
    assert curve[-1.0][1] == pytest.approx(1.0, abs=0.02)  # before time zero: no pump effect
    assert curve[4.0][1] == pytest.approx(1.49, abs=0.03)


@pytest.mark.parametrize("argv, message", [
    (["--run", "RUN", "--endpoint", "tcp://127.0.0.1:45000"], "--run and --endpoint exclude"),
    (["--run", "MISSING"], "no run directory or HDF5 file"),
    (["--run", "EMPTY"], "No HDF5 files found"),
    (["--run", "2345:42"], "cannot open the run proposal 2345 run 42"),
    (["--loop"], "--loop repeats a recorded run: it needs --run"),
    (["--rate", "original"], "--rate original replays a recorded run's timing"),
])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_source_that_cannot_work_is_one_line_and_exit_2(run_dir, tmp_path, capsys, command,
                                                         argv, message):
    (tmp_path / "EMPTY").mkdir()
    paths = {"RUN": str(run_dir), "MISSING": str(tmp_path / "nope"),
             "EMPTY": str(tmp_path / "EMPTY")}
    argv = [paths.get(word, word) for word in argv]
    pipeline = [str(EXAMPLES / "roi_monitor.py")] if command == "run" else []
    assert main([command, *pipeline, *argv, "--no-web"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"kb-streams {command}: error: "), err
    assert message in err


def test_demo_on_dask_needs_a_bridge(run_dir, capsys):
    assert main(["demo", "--run", str(run_dir), "--dask", "--no-web"]) == 2
    assert "with --run leave it out" in capsys.readouterr().err


def test_without_extra_data_run_says_what_to_install(run_dir, tmp_path):
    shadow = tmp_path / "no_extra_data"
    shadow.mkdir()
    (shadow / "extra_data.py").write_text("raise ImportError(\"No module named 'extra_data'\")\n")
    out = _cli("run", str(EXAMPLES / "roi_monitor.py"), "--run", str(run_dir), timeout=60,
               env={**os.environ, "PYTHONPATH": str(shadow)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "kb-streams run: error: --run needs EXtra-data: pip install 'kb_streams[files]'"]
