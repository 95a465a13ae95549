"""Bounded waits for tests: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

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
