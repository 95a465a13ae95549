"""A real Dask cluster for the tests: scheduler and workers as separate processes on 127.0.0.1.

``ProcessCluster`` starts ``dask scheduler`` and ``dask worker --no-nanny`` processes (no
dashboard), waits for them with bounded timeouts, and can SIGKILL a worker and start a
replacement. The ``dask_processes`` and ``cluster`` fixtures in ``conftest.py`` share one per test
session.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client

START_TIMEOUT = 60


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGKILL the child when the test process dies, so no cluster outlives a crashed run."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ProcessCluster:
    """``dask scheduler`` + ``n_workers`` single-thread ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, directory: Path, n_workers: int = 2) -> None:
        self.directory = directory
        self.workers: dict[str, subprocess.Popen] = {}
        self._count = 0
        self._logs: list = []
        scheduler_file = directory / "scheduler.json"
        self.scheduler = self._spawn(
            "scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
            "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + START_TIMEOUT
        self.address = None
        while self.address is None:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {self.log('scheduler')}")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError("dask scheduler did not start")
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                self.address = json.loads(scheduler_file.read_text())["address"]
            if self.address is None:
                time.sleep(0.05)  # polling a file the scheduler writes once it listens
        self.client = Client(self.address, timeout=START_TIMEOUT, set_as_default=False,
                             direct_to_workers=True)
        for _ in range(n_workers):
            self.add_worker(wait=False)
        self.wait_for_workers(n_workers)

    def _spawn(self, name: str, module: str, *args: str) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        # the test modules' task functions are pickled by reference: let workers import them
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, env=env,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]

    def add_worker(self, wait: bool = True) -> str:
        self._count += 1
        name = f"w{self._count}"
        self.workers[name] = self._spawn(
            name, "distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", "1",
            "--host", "127.0.0.1", "--no-dashboard", "--no-nanny", "--death-timeout", "60",
            "--memory-limit", "0")
        if wait:
            self.wait_for_workers(len(self.workers))
        return name

    def wait_for_workers(self, n: int, timeout: float = START_TIMEOUT) -> None:
        self.client.wait_for_workers(n, timeout=timeout)

    def worker_addresses(self) -> dict[str, str]:
        """``{name: address}`` of the workers the scheduler knows."""
        info = self.client.run_on_scheduler(
            lambda dask_scheduler: {ws.name: ws.address
                                    for ws in dask_scheduler.workers.values()})
        return {str(k): v for k, v in info.items()}

    def kill(self, name: str) -> None:
        """SIGKILL a worker process and wait until the scheduler has dropped it."""
        proc = self.workers.pop(name)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while name in self.worker_addresses():
            if time.monotonic() > deadline:
                raise TimeoutError(f"scheduler still lists killed worker {name}")
            time.sleep(0.05)

    def ensure_workers(self, n: int = 2) -> None:
        """Replace dead workers until ``n`` are running (after a test killed one)."""
        for name, proc in list(self.workers.items()):
            if proc.poll() is not None:
                del self.workers[name]
        while len(self.workers) < n:
            self.add_worker(wait=False)
        self.wait_for_workers(n)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if getattr(self, "client", None) is not None:
                self.client.close(timeout=10)
        # workers first: a worker that sees its scheduler go while closing can hang on exit
        for group in (list(self.workers.values()), [self.scheduler]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for log in self._logs:
            log.close()
