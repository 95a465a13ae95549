"""``kb-streams demo --dask`` and ``kb-streams run --dask``: real local clusters, in subprocesses.

Each test starts the command with a marker in its environment, which every process it starts
inherits, and checks afterwards that none of them is left (no leaked Dask worker process).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from test_demo import CLI, curve_rows, expected_ratio

MARKER = "KB_STREAMS_TEST_RUN"

PIPELINE = '''\
import numpy as np

MODULE = ("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", "image.data")


def module_mean(train):
    """Runs on a worker; fails on every 4th train."""
    if train.train_id % 4 == 3:
        raise ValueError("no good")
    return float(np.mean(train[MODULE].ndarray(), dtype=np.float64))


def pipeline(source, client):
    results = source.offload(module_mean, n=4, client=client)
    means = []
    results.sink(means.append)
    return results, lambda: f"offloaded means: {len(means)}"
'''


def tagged_processes(tag: str) -> list[str]:
    """Command lines of the running processes whose environment holds ``MARKER=tag``."""
    needle = f"{MARKER}={tag}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def assert_no_process_left(tag: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until no process started by the run is alive."""
    deadline = time.monotonic() + timeout
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)  # multiprocessing's resource tracker exits once it sees its pipe close
    assert not left, left


def start(args: list[str], tag: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, MARKER: tag}, **kwargs)


def run_to_the_end(args: list[str], tag: str, timeout: float = 90) -> tuple[int, str, str]:
    """``kb-streams ARGS`` to its end: exit code, stdout, stderr (killed after *timeout*)."""
    proc = start(args, tag)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_demo_on_a_local_cluster_gives_the_curve_and_leaves_no_worker():
    tag = uuid.uuid4().hex
    code, out, err = run_to_the_end(
        ["demo", "--dask", "--trains", "20", "--pulses", "4", "--rate", "40", "--xgm-noise", "0"],
        tag)
    assert code == 0, err[-3000:]
    assert re.search(r"^dask tcp://127\.0\.0\.1:\d+ \(local cluster\) \| 2 workers, 2 threads$",
                     out, re.MULTILINE), out
    assert "20 trains processed" in out
    rows = curve_rows(out)
    assert sorted(rows) == [-1.0, 0.25, 1.5, 2.75, 4.0]
    for delay, (n, mean) in rows.items():  # the first 20 trains, in order: 4 per delay step
        assert n == 4, out
        assert mean == pytest.approx(expected_ratio(delay), abs=0.01), (delay, out)
    assert re.search(r"received on workers \d+ \| skipped 0 \| late 0 \| errors 0", out), out
    assert "Traceback" not in err
    assert_no_process_left(tag)


def test_ctrl_c_on_the_terminal_ends_demo_and_cluster_cleanly():
    """SIGINT to the whole process group, as Ctrl-C on a terminal sends it."""
    tag = uuid.uuid4().hex
    proc = start(["demo", "--dask", "--pulses", "4", "--rate", "20"], tag,
                 start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # a plain status line every 2 s
            if re.match(r"trains [1-9]", line) or time.monotonic() > deadline:
                break
        assert re.match(r"trains [1-9]", line), line
        workers = [c for c in tagged_processes(tag) if "spawn_main" in c]
        assert len(workers) == 2, tagged_processes(tag)  # the local cluster's worker processes
        os.killpg(proc.pid, signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "interrupted; " in rest and "pumped/unpumped ratio" in rest
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert_no_process_left(tag)


def test_run_passes_the_client_to_a_pipeline(tmp_path: Path):
    path = tmp_path / "offload_pipeline.py"
    path.write_text(PIPELINE)
    tag = uuid.uuid4().hex
    code, out, err = run_to_the_end(["run", str(path), "--dask", "--workers", "1", "--trains", "8",
                                     "--pulses", "2", "--rate", "50"], tag)
    assert code == 0, err[-3000:]
    assert "8 trains processed" in out
    assert "(local cluster) | 1 worker, 1 thread" in out
    # the simulator's train IDs are consecutive: 2 of 8 trains have train_id % 4 == 3
    assert "offloaded means: 6" in out, out
    assert re.search(r"\| errors 2 \| in flight 0 \| workers 1$", out, re.MULTILINE), out
    assert re.search(r"^error: module_mean: ValueError: no good \(train \d+, × 1 more\)$", out,
                     re.MULTILINE), out
    assert "ModuleNotFoundError" not in err  # the pipeline's functions reached the worker
    assert_no_process_left(tag)
