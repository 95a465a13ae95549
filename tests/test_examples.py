"""The example pipelines run with ``kb-streams run`` (and as scripts) against the simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kb_streams.cli import main
from kb_streams.cli.run import load_pipeline, split_result

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUICK = ["--trains", "6", "--pulses", "4", "--rate", "50"]


@pytest.mark.parametrize("name, expected", [
    ("roi_monitor.py", "rolling mean (10 trains)"),
    ("pump_probe_delay.py", "on/off"),
    ("xgm_normalised.py", "mean over 6 trains, 4 pulses"),
    ("republish.py", "published"),
])
def test_example_runs_with_kb_streams_run(name, expected, capsys, restore_signals):
    code = main(["run", str(EXAMPLES / name), *QUICK])
    out = capsys.readouterr().out
    assert code == 0
    assert "6 trains processed" in out
    assert expected in out
    assert "errors 0" in out


def test_pump_probe_example_finds_no_effect_before_time_zero(capsys, restore_signals):
    assert main(["run", str(EXAMPLES / "pump_probe_delay.py"), *QUICK]) == 0
    out = capsys.readouterr().out
    first_bin = next(line for line in out.splitlines() if line.strip().startswith("-1.000"))
    assert float(first_bin.split()[-1]) == pytest.approx(1.0, abs=0.02)  # on/off at -1 ps


def test_example_runs_as_a_script():
    out = subprocess.run([sys.executable, str(EXAMPLES / "roi_monitor.py"), "--trains", "3",
                          "--pulses", "2", "--rate", "50"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "3 trains processed" in out.stdout


def test_run_rejects_a_bad_pipeline_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    no_function = tmp_path / "empty.py"
    no_function.write_text("x = 1\n")
    assert main(["run", str(no_function)]) == 2
    assert "defines no function 'pipeline'" in capsys.readouterr().err


def test_pipeline_results_are_understood(tmp_path):
    from streamz import Stream

    path = tmp_path / "p.py"
    path.write_text("def build(source):\n    return source.map(str), lambda: 'ok'\n")
    func = load_pipeline(path, "build")
    stream, status = split_result(func(Stream()))
    assert isinstance(stream, Stream) and status() == "ok"
    assert split_result(None) == (None, None)
    with pytest.raises(TypeError):
        split_result(42)


def test_pipeline_taking_a_client_needs_dask(tmp_path, capsys):
    from kb_streams.cli.run import takes_client

    path = tmp_path / "needs.py"
    path.write_text("def pipeline(source, client):\n    return None\n")
    assert takes_client(load_pipeline(path)) is True
    assert main(["run", str(path), "--trains", "1"]) == 2  # refused before anything starts
    assert "needs a Dask client: run it with --dask" in capsys.readouterr().err
    optional = tmp_path / "optional.py"
    optional.write_text("def pipeline(source, client=None):\n    return None\n")
    assert takes_client(load_pipeline(optional)) is False
    assert takes_client(load_pipeline(EXAMPLES / "roi_monitor.py")) is None
    with pytest.raises(SystemExit):  # the address would swallow the file name
        main(["run", "--dask", str(path)])
    assert "write --dask after PIPELINE.py" in capsys.readouterr().err
