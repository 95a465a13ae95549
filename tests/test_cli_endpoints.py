"""Every ``kb-streams`` command refuses a bad endpoint in one line, with exit code 2,
before it makes a socket (or a cluster); ``kb-streams --version``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kb_streams
from kb_streams.cli import main

CLI = [sys.executable, "-c", "import sys; from kb_streams.cli import main; sys.exit(main())"]


def test_simulate_on_an_out_of_range_port_is_a_one_line_error():
    # ZeroMQ alone would serve on port 110131 % 65536 = 44595, and say nothing
    result = subprocess.run([*CLI, "simulate", "--endpoint", "tcp://127.0.0.1:110131"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "kb-streams simulate: error: cannot bind tcp://127.0.0.1:110131: port 110131 is out of "
        "range (0 to 65535)"]


@pytest.mark.parametrize("argv, reason", [
    (["inspect", "tcp://127.0.0.1:110131"], "port 110131 is out of range (1 to 65535)"),
    (["monitor", "tcp://127.0.0.1:110131", "--trains", "1"], "port 110131 is out of range"),
    (["demo", "--endpoint", "tcp://"], "nothing after tcp://"),
    (["demo", "--endpoint", "foo", "--dask"], "expected tcp://HOST:PORT"),  # before the cluster
    (["run", "PIPELINE.py", "--endpoint", "foo"], "expected tcp://HOST:PORT"),
    (["run", "PIPELINE.py", "--endpoint", "tcp://*:45000"], "host '*' is for binding"),
])
def test_reading_commands_refuse_a_bad_endpoint_in_one_line(argv, reason, tmp_path, capsys,
                                                            restore_signals):
    pipeline = tmp_path / "PIPELINE.py"
    pipeline.write_text("def pipeline(source):\n    return source\n")
    argv = [str(pipeline) if arg == "PIPELINE.py" else arg for arg in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"kb-streams {argv[0]}: error: bad endpoint ") and reason in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"kb-streams {kb_streams.__version__} (Python ")
    assert "pyzmq" in out and "libzmq" in out
