"""Recorded runs as a stream source: ``Stream.from_run(run)`` emits a run's trains as
:class:`kb_streams.Train` records, as ``Stream.from_karabo_bridge`` emits live ones.

Develop a pipeline on a recorded run, then point the same graph at the bridge. The trains are
the records ``karabo-bridge-serve-files`` would send for that run (each source's metadata in
``meta`` and repeated in the data, numpy scalars as Python numbers, object arrays dropped), so
a graph gives identical results fed either way. The node *is* the bridge source with the
bridge client swapped for a run reader: the same backpressure (it awaits the graph before reading
the next train), ``max_in_flight``, ``stats``, ``stop()``, ``join()`` and ``finished``.

EXtra-data is imported here only (``pip install kb_streams[files]``).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from streamz import Stream

from .protocol import Message
from .sources import from_karabo_bridge

__all__ = ["from_run"]


def _open(run: Any) -> Any:
    try:
        import extra_data
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("Stream.from_run needs EXtra-data: pip install 'kb_streams[files]'"
                          ) from exc
    if isinstance(run, str | Path):
        path = Path(run)
        return extra_data.RunDirectory(str(path)) if path.is_dir() else \
            extra_data.H5File(str(path))
    if isinstance(run, tuple) and len(run) == 2:
        return extra_data.open_run(proposal=run[0], run=run[1])
    return run  # a DataCollection


def run_label(run: Any) -> str:
    """``run`` (as :func:`from_run` takes it) for people: its path, ``proposal P run R``, or
    ``a DataCollection``."""
    if isinstance(run, tuple):
        return f"proposal {run[0]} run {run[1]}"
    return str(run) if isinstance(run, str | Path) else "a DataCollection"


def _as_sent(data: dict[str, dict[str, Any]]) -> tuple[dict, dict]:
    """``(data, meta)`` as the file streamer puts a train on the wire."""
    meta = {}
    for source, source_data in data.items():
        for key, value in list(source_data.items()):
            if isinstance(value, np.generic):
                source_data[key] = value.item()
            elif isinstance(value, np.ndarray) and value.dtype == object:
                del source_data[key]
        meta[source] = dict(source_data.get("metadata", {}))
    return data, meta


@dataclass
class _ReaderStats:
    """The client counters the bridge source adds to its own (a run has none of them)."""

    bytes: int = 0
    gaps: int = 0
    decode_errors: int = 0
    timeouts: int = 0
    reconnects: int = 0
    dropped: int = 0
    protocol_version: str = "2.2"


class _RunReader:
    """The part of :class:`kb_streams.AsyncClient` the bridge source uses, reading a run."""

    def __init__(self, run: Any, *, rate: float | str | None, repeat: bool,
                 shuffle_sources: bool) -> None:
        self.run = run
        self.rate = rate
        self.repeat = repeat
        self.shuffle_sources = shuffle_sources
        self.stats = _ReaderStats()
        self.exhausted = False
        self._trains = iter(run.trains())
        self._due: float | None = None
        self._last_time: float | None = None

    async def next_message(self, *, latest: bool = False) -> Message | None:
        item = await asyncio.to_thread(next, self._trains, None)
        if item is None and self.repeat:
            self._trains = iter(self.run.trains())
            item = await asyncio.to_thread(next, self._trains, None)
        if item is None:
            self.exhausted = True
            return None
        train_id, data = item
        if self.shuffle_sources:
            sources = list(data)
            random.shuffle(sources)
            data = {src: data[src] for src in sources}
        data, meta = _as_sent(data)
        await self._pace(meta)
        nbytes = sum(v.nbytes for d in data.values() for v in d.values()
                     if isinstance(v, np.ndarray))
        self.stats.bytes += nbytes
        return Message(data, meta, "2.2", nbytes)

    async def _pace(self, meta: dict[str, dict[str, Any]]) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        if self.rate == "original":
            recorded = next((m["timestamp"] for m in meta.values() if "timestamp" in m), None)
            interval = 0.1 if recorded is None or self._last_time is None else \
                max(0.0, float(recorded) - self._last_time)
            self._last_time = None if recorded is None else float(recorded)
        else:
            interval = 1.0 / float(self.rate)
        self._due = now if self._due is None else max(now, self._due + interval)
        if self._due > now:
            await asyncio.sleep(self._due - now)

    def close(self) -> None:
        self._trains = iter(())


@Stream.register_api(staticmethod)
class from_run(from_karabo_bridge):
    """Emit the trains of a recorded run as :class:`kb_streams.Train` records.

    Parameters
    ----------
    run
        A run directory or HDF5 file path, an EXtra-data ``DataCollection``, or ``(proposal,
        run)`` for EXtra-data's ``open_run``.
    sources
        What to read, as EXtra-data's ``run.select(...)`` takes it (a glob, a list of globs or
        ``(source, key)`` pairs, a dict); default everything.
    trains
        ``by_id[...]`` or ``by_index[...]`` (EXtra-data's), as ``run.select_trains``.
    rate
        Trains per second (default 10, as the facility); ``None`` as fast as the graph takes
        them; ``'original'`` replays the recorded timing.
    loop
        Start again from the first train after the last (default: finish after the run).
    shuffle_sources
        Emit each train's sources in a random order, as a bridge may.
    max_in_flight, forget, start, asynchronous, stream_name
        As for :class:`kb_streams.sources.from_karabo_bridge`.
    event_loop
        The asyncio loop (``loop=`` of other streamz nodes; here ``loop`` repeats the run).

    Examples
    --------
    >>> source = Stream.from_run("/gpfs/exfel/exp/SPB/202401/p002345/raw/r0042",  # doctest: +SKIP
    ...                          sources="*/DET/*", rate=None)
    >>> ids = source.map(lambda train: train.train_id).sink_to_list()  # doctest: +SKIP
    >>> source.start(); source.join()  # doctest: +SKIP
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> from_run:
        # not the bridge source's: a (proposal, run) tuple is one run, not several bridges
        return object.__new__(cls)

    def __init__(self, run: Any, *, sources: Any = None, trains: Any = None,
                 rate: float | str | None = 10.0, loop: bool = False,
                 shuffle_sources: bool = False, max_in_flight: int | None = None,
                 forget: bool = True, start: bool = False, asynchronous: bool | None = None,
                 event_loop: Any = None, stream_name: str | None = None) -> None:
        if not (rate is None or rate == "original" or (isinstance(rate, int | float)
                                                       and rate > 0)):
            raise ValueError(f"rate must be a number > 0, None or 'original', not {rate!r}")
        data = _open(run)
        if sources is not None:
            data = data.select(sources) if not isinstance(sources, str) else \
                data.select(sources, "*")
        if trains is not None:
            data = data.select_trains(trains)
        self.collection = data  # (not self.run: that is the source's receive loop)
        self.rate = rate
        self.repeat = loop
        self.shuffle_sources = shuffle_sources
        #: the run, for people: its path, ``proposal P run R`` or ``a DataCollection``
        self.run_label = run_label(run)
        super().__init__(f"run:{run if isinstance(run, str | Path | tuple) else 'collection'}",
                         "PULL", timeout=None, max_in_flight=max_in_flight, latest=False,
                         forget=forget, start=False, asynchronous=asynchronous,
                         loop=event_loop, stream_name=stream_name)
        if start:
            self.start()

    def _open_client(self) -> _RunReader:
        return _RunReader(self.collection, rate=self.rate, repeat=self.repeat,
                          shuffle_sources=self.shuffle_sources)

    async def _receive(self) -> Message | None:
        message = await super()._receive()
        reader = self._client
        if message is None and isinstance(reader, _RunReader) and reader.exhausted:
            self.stopped = True  # the end of the run: drain the graph and finish
        return message
