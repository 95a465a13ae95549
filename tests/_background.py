"""Work in a daemon thread for the length of a ``with`` block, stopped and joined at its end."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def in_background(work: Callable[[threading.Event], None], join_timeout: float = 10.0
                  ) -> Iterator[threading.Event]:
    """Run ``work(stop)`` in a daemon thread; on leaving, set ``stop`` and join the thread.

    ``work`` should return soon after ``stop`` is set (wait on it between steps).
    """
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(join_timeout)
