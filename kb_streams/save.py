"""Results saved to files: ``stream.to_hdf5(path)`` writes one row per train, from a thread.

The graph only converts each result to a row (small copies) and queues it; a background thread
writes the queue in batches to an HDF5 file (layout: :mod:`kb_streams._hdf5_rows`) with SWMR, so
a reader follows the file while it grows and a crash leaves it readable up to the last batch
(after a crash, open it with ``swmr=True``, as :func:`open_results` does, or clear its
"open for writing" flag with ``h5clear -s`` before other readers).
The queue is bounded: when the disk cannot keep up the oldest rows are dropped (counted), the
graph is never held up. Needs h5py (``pip install kb-streams[files]``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from streamz import Stream
from streamz.sinks import Sink

from ._hdf5_rows import RowFile, open_results, row_of

__all__ = ["SaveStats", "open_results", "to_hdf5"]

logger = logging.getLogger(__name__)


@dataclass
class SaveStats:
    """Counters of a :class:`to_hdf5` sink (a snapshot).

    Attributes
    ----------
    received
        Results that reached the sink.
    written
        Rows in the file.
    dropped
        Rows dropped, oldest first, because the queue was full (the disk fell behind).
    errors
        Results that could not be saved (no train ID, not an array, a new name or shape).
    batches
        Writes to the file.
    queued
        Rows waiting to be written.
    last_train_id
        Train ID of the last row written.
    write_seconds
        Time spent writing (in the writer thread).
    """

    received: int = 0
    written: int = 0
    dropped: int = 0
    errors: int = 0
    batches: int = 0
    queued: int = 0
    last_train_id: int | None = None
    write_seconds: float = 0.0


@Stream.register_api()
class to_hdf5(Sink):
    """Save each result as a row of an HDF5 file keyed by ``trainId``, written in batches.

    Results may be DataArrays (dims, coordinates and attrs kept), Datasets (one entry per
    variable), mappings ``{name: value}``, tuples from ``join_trains``, numbers or arrays:
    anything :func:`kb_streams.train.train_id_of` finds a train ID in. Read the file back with
    :func:`open_results` (h5py), ``xarray.open_datatree(path, engine='h5netcdf')``, or follow it
    live with ``h5py.File(path, 'r', libver='latest', swmr=True)`` and ``refresh()``.

    Parameters
    ----------
    upstream
        The results.
    path
        The file (replaced if it exists).
    batch
        Rows per write: the writer waits for this many, or ``interval`` seconds.
    interval
        Seconds at most between writes while rows wait.
    maxlen
        Rows the queue holds; beyond, the oldest are dropped (``stats.dropped``).
    compression
        h5py compression of the data (``'gzip'``, ``'lzf'``); none by default.

    Attributes
    ----------
    errors
        A stream of ``{'train_id', 'error'}`` records of results not saved.

    Notes
    -----
    h5py holds the GIL while it writes, so the writer thread takes Python time from the graph
    while it writes a batch (``stats.write_seconds``; about 1-10 ms per MB on a busy machine).
    Save reduced results (a per-pulse vector, a small image), not whole trains.

    Examples
    --------
    >>> import xarray as xr
    >>> from streamz import Stream
    >>> source = Stream()
    >>> sink = source.to_hdf5("/tmp/kb_streams_doctest.h5", batch=2)   # doctest: +SKIP
    >>> for tid in range(4):                                            # doctest: +SKIP
    ...     source.emit(xr.DataArray([tid, 2.0 * tid], dims="pulse", name="energy",
    ...                              coords={"trainId": tid}))
    >>> sink.stop(); sink.join(5)                                       # doctest: +SKIP
    True
    >>> open_results("/tmp/kb_streams_doctest.h5")["energy"].dims       # doctest: +SKIP
    ('trainId', 'pulse')
    """

    def __init__(self, upstream: Stream, path: str, *, batch: int = 10,
                 interval: float = 1.0, maxlen: int = 1000, compression: str | None = None,
                 **kwargs: Any) -> None:
        try:
            import h5py  # noqa: F401  (fail here, at graph building, when it is missing)
        except ImportError as exc:
            raise ImportError("to_hdf5 needs h5py: pip install 'kb-streams[files]'") from exc

        if int(batch) < 1 or int(maxlen) < int(batch):
            raise ValueError(f"need 1 <= batch <= maxlen, not batch={batch}, maxlen={maxlen}")
        self.path = str(path)
        self.batch = int(batch)
        self.interval = float(interval)
        self._queue: deque = deque()
        self.maxlen = int(maxlen)
        self._file = RowFile(self.path, compression=compression)
        self._stats = SaveStats()
        self._wake = threading.Condition()
        self._stopping = False
        self._finished = threading.Event()
        self.errors = Stream(stream_name="errors")
        super().__init__(upstream, **kwargs)
        self._thread = threading.Thread(target=self._run, name=f"to_hdf5 {self.path}",
                                        daemon=True)
        self._thread.start()

    # -- the node interface -----------------------------------------------------------------
    @property
    def stats(self) -> SaveStats:
        """A snapshot of the counters (:class:`SaveStats`)."""
        with self._wake:
            return replace(self._stats, queued=len(self._queue))

    @property
    def finished(self) -> bool:
        """Whether the sink has stopped and its file is closed."""
        return self._finished.is_set()

    def stop(self) -> None:
        """Write what is queued, close the file and end the thread (see :meth:`join`)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the file is closed; ``True`` if it was within ``timeout`` seconds."""
        return self._finished.wait(timeout)

    # -- the graph side ---------------------------------------------------------------------
    def update(self, x: Any, who: Any = None, metadata: Any = None) -> None:
        try:
            row = row_of(x)
        except Exception as exc:
            self._failed(None, exc)
            return
        with self._wake:
            self._stats.received += 1
            if self._stopping:
                self._stats.dropped += 1
                return
            self._queue.append(row)
            if len(self._queue) > self.maxlen:
                self._queue.popleft()
                self._stats.dropped += 1
            if len(self._queue) >= self.batch:
                self._wake.notify()

    def _failed(self, train_id: int | None, error: BaseException | str) -> None:
        with self._wake:
            self._stats.errors += 1
        logger.warning("to_hdf5 %s: train %s not saved: %s", self.path, train_id, error)
        self.errors.emit({"train_id": train_id, "error": error})

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                rows = self._next_batch()
                if rows is None:
                    return
                self._write(rows)
        except Exception as exc:
            logger.exception("to_hdf5 %s stopped writing", self.path)
            self._failed(None, exc)
        finally:
            try:
                self._file.close()
            finally:
                self._finished.set()

    def _next_batch(self) -> list | None:
        """Rows to write (up to ``batch``); ``None`` once stopped and drained."""
        deadline = time.monotonic() + self.interval
        with self._wake:
            while len(self._queue) < self.batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0 and self._queue:
                    break
                self._wake.wait(left if left > 0 else self.interval)
            if not self._queue:
                return None  # stopping, nothing left
            return [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]

    def _write(self, rows: list) -> None:
        started = time.perf_counter()
        problems = self._file.append(rows)
        took = time.perf_counter() - started
        with self._wake:
            self._stats.written += len(rows)
            self._stats.batches += 1
            self._stats.last_train_id = rows[-1][0]
            self._stats.write_seconds += took
        for problem in problems:
            self._failed(None, problem)
