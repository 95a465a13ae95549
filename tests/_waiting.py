"""Bounded waits for tests: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 5.0,
             interval: float = 0.01) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (checked every
    ``interval`` seconds, and once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def wait_until(condition: Callable[[], object], timeout: float = 30.0,
               what: str = "condition") -> None:
    """Wait for ``condition()``; :class:`TimeoutError` naming ``what`` after ``timeout`` s."""
    if not wait_for(condition, timeout):
        raise TimeoutError(f"timed out waiting for {what}")


def interrupt_when(argv: list[str], seen: Callable[[str], object], timeout: float,
                   stop_timeout: float = 30) -> tuple[list[str], str, str, int]:
    """Run ``argv``; read its output lines until ``seen(line)`` holds or ``timeout`` s have passed
    (checked at each line: a live command prints one every few seconds); then Ctrl-C (SIGINT).

    Returns the lines read, the rest of stdout, stderr and the exit code.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            lines.append(line)
            if seen(line) or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=stop_timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines, rest, err, proc.returncode
