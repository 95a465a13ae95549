"""Which serving loop a bridge server runs, and closing the server safely while one does.

A :class:`~kb_streams.server.BridgeServer` serves from one loop at a time (its thread, the
caller's thread or an asyncio task) and may be closed from any thread, including the loop's own.
The socket belongs to the loop while it runs, so whoever ends last releases it. The server's own
thread is started here too, so that it is marked serving before ``start()`` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ServingState"]


class ServingState:
    """The serving/closing state of one server; *release(linger_ms)* frees its socket once.

    Examples
    --------
    >>> released = []
    >>> state = ServingState(released.append)
    >>> with state.serving(feeding=True, name="tcp://127.0.0.1:4545"):
    ...     state.running, state.feeding
    (True, True)
    >>> state.close(linger_ms=0), released, state.closed
    (True, [0], True)
    """

    def __init__(self, release: Callable[[int], None]) -> None:
        self._release = release
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._loop_thread: int | None = None  # ident of the thread running a serving loop
        self.feeding = False  # the running loop serves the feed() queue
        self._linger_ms = 0
        self._close_pending = False
        self.closed = False

    @property
    def running(self) -> bool:
        """Whether a serving loop is running (in any thread or task)."""
        return self._loop_thread is not None

    def serving(self, feeding: bool, name: str) -> _Serving:
        """Context manager marking one serving loop; :class:`RuntimeError` if closed or busy."""
        return _Serving(self, feeding, name)

    def start_thread(self, feeding: bool, name: str, serve: Callable[[], object],
                     failed: Callable[[BaseException], None]) -> threading.Thread:
        """Run *serve* as the serving loop of a new daemon thread; return once it has begun.

        Raises what :meth:`serving` raises (closed or busy) when the loop was refused. An
        exception out of *serve* goes to *failed*, called in the thread's ``except`` block.
        """
        ready = threading.Event()
        refused: list[BaseException] = []

        def run() -> None:
            guard = self.serving(feeding, name)
            try:
                guard.__enter__()
            except BaseException as exc:
                refused.append(exc)
                return
            finally:
                ready.set()
            try:
                serve()
            except BaseException as exc:
                failed(exc)
            finally:
                guard.__exit__()

        thread = threading.Thread(target=run, name="BridgeServer", daemon=True)
        thread.start()
        ready.wait()
        if refused:
            raise refused[0]
        return thread

    def close(self, linger_ms: int) -> bool:
        """Stop serving and release the socket, now or as the serving loop ends.

        Returns False when there is nothing more to do: already closed (or closing), or called
        from the serving loop's own thread (an asyncio task), which releases as it unwinds.
        Otherwise returns True once the socket is released.
        """
        self.stopping.set()
        with self._lock:
            if self.closed or self._close_pending:
                return False
            self._close_pending = True
            self._linger_ms = linger_ms
            release_here = self._loop_thread is None
            if release_here:
                self.closed = True
            elif self._loop_thread == threading.get_ident():
                return False
        if release_here:
            self._release(linger_ms)
        else:
            self._idle.wait()  # the serving loop notices within POLL_MS and releases the socket
        return True

    def _enter(self, feeding: bool, name: str) -> None:
        with self._lock:
            if self.closed or self._close_pending:
                raise RuntimeError("the bridge server is closed")
            if self._loop_thread is not None:
                raise RuntimeError(f"bridge server {name} is already serving")
            self._loop_thread = threading.get_ident()
            self.feeding = feeding
            self.stopping.clear()
            self._idle.clear()

    def _exit(self) -> None:
        with self._lock:
            self._loop_thread = None
            self.feeding = False
            release = self._close_pending and not self.closed
            if release:
                self.closed = True
        if release:
            self._release(self._linger_ms)
        self._idle.set()


class _Serving:
    def __init__(self, state: ServingState, feeding: bool, name: str) -> None:
        self.state, self.feeding, self.name = state, feeding, name

    def __enter__(self) -> None:
        self.state._enter(self.feeding, self.name)

    def __exit__(self, *exc_info: object) -> None:
        self.state._exit()
