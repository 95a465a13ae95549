"""The streamz side of train-ID joins: ``a.join_trains(b, ...)`` and one stream from many bridges.

The rules live in :mod:`kb_streams.join` (plain code); this module feeds it from streamz
upstreams, drives its ``timeout`` with a periodic callback on the node's event loop, and sends
what it returns downstream (joined trains), to ``node.partial`` (records of incomplete trains)
and to ``node.late`` (parts that came after their train closed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from streamz import Stream
from tornado.ioloop import PeriodicCallback

from .join import TrainJoiner
from .join_records import Joined, JoinStats, Late
from .train import Train, train_id_of

__all__ = ["MISSING", "JoinedTuple", "from_karabo_bridges", "join_trains", "merge_trains"]

logger = logging.getLogger(__name__)

_PARTIAL = ("drop", "emit")


class _Missing:
    """The marker in place of an input a train lacks (``partial='emit'``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


#: Stands for an input a joined train lacks.
MISSING = _Missing()

class JoinedTuple(tuple):
    """The items of one train in input order (``MISSING`` where an input lacks it).

    Unpacks like the tuples of streamz ``zip``; ``train_id``, ``names``, ``missing`` and
    ``reason`` (``None`` when complete) say which train and what is absent.
    """

    train_id: int
    names: tuple[Hashable, ...]
    missing: tuple[Hashable, ...]
    reason: str | None

    def __new__(cls, joined: Joined, names: Sequence[Hashable]) -> JoinedTuple:
        self = super().__new__(cls, (joined.parts.get(n, MISSING) for n in names))
        self.train_id, self.names = joined.train_id, tuple(names)
        self.missing, self.reason = joined.missing, joined.reason
        return self

    def __getnewargs__(self) -> tuple:  # plain tuple when pickled
        return (tuple(self),)

    def as_dict(self) -> dict[Hashable, Any]:
        """``{input name: item}``."""
        return dict(zip(self.names, self, strict=True))


def merge_trains(joined: JoinedTuple) -> Train:
    """One :class:`Train` holding the sources of every train part (missing parts left out)."""
    trains = [t for t in joined if t is not MISSING]
    data: dict = {}
    meta: dict = {}
    for train in trains:
        data.update(train.data)
        meta.update(train.meta)
    return Train(data, meta, protocol_version=trains[0].protocol_version)


@Stream.register_api()
class join_trains(Stream):
    """Join streams by train ID: one output per train, in increasing train ID.

    ``a.join_trains(b, c)`` emits ``(item_a, item_b, item_c)`` for each train all three
    delivered (a :class:`JoinedTuple`: ``.train_id``, ``.missing``, ``.as_dict()``). The
    rules (slots, window, timeout, as-of ``latest`` inputs, late parts, train-ID jumps) are
    those of :class:`kb_streams.join.TrainJoiner`.

    Parameters
    ----------
    upstream, *others
        The required streams: a train is complete when each delivered it.
    latest
        Streams of slow data joined as of each train (newest value with train ID ``<=`` it);
        their items follow the required ones in the output tuple.
    window
        Trains the newest train ID seen may run ahead of an open train before it closes.
    timeout
        Seconds an open train waits at most (wall time, checked by a periodic callback on the
        node's event loop); ``None``: no limit.
    max_age
        Trains a ``latest`` value may be older than the train it joins; ``None``: any age.
    partial
        ``'drop'`` (default): an incomplete train goes only to ``node.partial`` as a record.
        ``'emit'``: it is also emitted, with :data:`MISSING` in place of the
        inputs it lacks (check ``out.missing``).
    key
        How to read an item's train ID (default :func:`kb_streams.train.train_id_of`: a
        :class:`Train`, a DataArray with a ``trainId`` coordinate, ``(data, meta)``...).
    names
        Input names for records and stats (required first, then ``latest``); default: each
        stream's ``stream_name``, else ``'input0'``, ``'input1'``...
    merge
        Applied to each :class:`JoinedTuple` before it is emitted (e.g. :func:`merge_trains`).
    max_jump
        Train IDs further than this from the newest need a second one to confirm the jump.
    ordered
        Each input delivers its trains in order (a bridge does). ``False``: hold every train
        ``window`` trains, so that any order within the window gives the same output.

    Attributes
    ----------
    partial
        Stream of records of incomplete trains: :class:`kb_streams.join.Joined` without data
        (``train_id``, ``present``, ``missing``, ``reason``).
    late
        Stream of :class:`kb_streams.join.Late` records of parts that came after their train
        closed (duplicates and unconfirmed train-ID jumps are only counted in ``stats``).
    errors
        Stream of ``{'input', 'error'}`` records: items whose train ID could not be read.

    Examples
    --------
    >>> import xarray as xr
    >>> from streamz import Stream
    >>> import kb_streams.join_stream
    >>> det, xgm = Stream(stream_name="det"), Stream(stream_name="xgm")
    >>> joined = det.join_trains(xgm, window=2)
    >>> out, missed = joined.sink_to_list(), joined.partial.sink_to_list()
    >>> for tid in (1, 2, 3, 4):
    ...     det.emit(xr.DataArray(tid * 10, coords={"trainId": tid}))
    ...     if tid != 2:
    ...         xgm.emit(xr.DataArray(tid * 0.1, coords={"trainId": tid}))
    >>> [(o.train_id, int(o[0]), float(o[1])) for o in out]
    [(1, 10, 0.1), (3, 30, 0.30000000000000004), (4, 40, 0.4)]
    >>> missed
    [Joined(train_id=2, missing=('xgm',), reason='window')]
    """

    _graphviz_shape = "triangle"

    def __init__(self, upstream: Stream, *others: Stream, latest: Sequence[Stream] = (),
                 window: int = 10, timeout: float | None = None, max_age: int | None = None,
                 partial: str = "drop", key: Callable[[Any], int | None] = train_id_of,
                 names: Sequence[Hashable] | None = None,
                 merge: Callable[[JoinedTuple], Any] | None = None, max_jump: int = 1000,
                 ordered: bool = True, **kwargs: Any) -> None:
        if partial not in _PARTIAL:
            raise ValueError(f"partial must be one of {_PARTIAL}, not {partial!r}")
        required, latest = [upstream, *others], list(latest)
        streams = required + latest
        if names is None:
            names = [s.name if s.name is not None else f"input{i}"
                     for i, s in enumerate(streams)]
        if len(names) != len(streams):
            raise ValueError(f"{len(names)} names for {len(streams)} streams")
        self.names = tuple(names)
        self._name_of = {id(s): n for s, n in zip(streams, self.names, strict=True)}
        self.joiner = TrainJoiner(self.names[:len(required)], latest=self.names[len(required):],
                                  window=window, timeout=timeout, max_age=max_age,
                                  max_jump=max_jump, ordered=ordered)
        self.partial_mode = partial
        self.key = key
        self.merge = merge
        self._lock = threading.RLock()
        self._finished = threading.Event()
        self._ticker: PeriodicCallback | None = None
        self.partial = Stream(stream_name="partial")
        self.late = Stream(stream_name="late")
        self.errors = Stream(stream_name="errors")
        for side in (self.partial, self.late, self.errors):
            side.node = self  # streamz links downstream weakly: a side stream keeps its node
        if timeout is not None:
            kwargs.setdefault("ensure_io_loop", True)
        Stream.__init__(self, upstreams=streams, **kwargs)
        if timeout is not None:
            interval_ms = min(max(timeout / 5, 0.01), 0.5) * 1000
            self._ticker = PeriodicCallback(self._tick, interval_ms)
            self.loop.add_callback(self._ticker.start)

    # -- the node interface -----------------------------------------------------------------
    @property
    def stats(self) -> JoinStats:
        """A snapshot of the counters (:class:`kb_streams.join.JoinStats`: matched, partial,
        dropped by reason, late, duplicates, matching ratio, each input's lag in trains)."""
        with self._lock:
            return self.joiner.stats

    @property
    def finished(self) -> bool:
        """Whether :meth:`stop` has closed every open train."""
        return self._finished.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`stop` has run; ``True`` if it did within ``timeout`` seconds."""
        return self._finished.wait(timeout)

    def flush(self) -> None:
        """Close every open train now (incomplete ones with reason ``'end'``) and emit them."""
        with self._lock:
            self._send(self.joiner.flush(time.monotonic()))

    def stop(self) -> None:
        """Stop the timeout clock and :meth:`flush`."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self.loop.add_callback(ticker.stop)
        self.flush()
        self._finished.set()

    # -- streamz ----------------------------------------------------------------------------
    def update(self, x: Any, who: Stream | None = None, metadata: Any = None) -> Any:
        name = self._name_of[id(who)]
        try:
            tid = self.key(x)
        except Exception as exc:
            tid, error = None, exc
        else:
            error = None if tid is not None else ValueError("item has no train ID")
        if error is not None:
            self.errors.emit({"input": name, "error": error})
        # slow data is kept as long as trains need it: not counted as in flight
        metadata = list(metadata or []) if name in self.joiner.inputs else []
        self._retain_refs(metadata)
        with self._lock:
            if tid is None:
                self._release_refs(metadata)
            out = self.joiner.add(name, tid, (x, metadata), time.monotonic())
            return self._send(out)

    def _tick(self) -> None:
        with self._lock:
            self._send(self.joiner.tick(time.monotonic()))

    def _send(self, out: list[Joined | Late]) -> list:
        results: list = []
        for event in out:
            if isinstance(event, Late):
                self._release_refs(event.item[1])
                if event.reason == "late":
                    self.late.emit(Late(event.train_id, event.input))
                continue
            parts = {n: item for n, (item, _) in event.parts.items()}
            metadata = [m for _, md in event.parts.values() for m in md]
            if not event.complete:
                self.partial.emit(Joined(event.train_id, {n: None for n in parts},
                                         event.missing, event.reason))
            if event.complete or self.partial_mode == "emit":
                value: Any = JoinedTuple(Joined(event.train_id, parts, event.missing,
                                                event.reason), self.names)
                if self.merge is not None:
                    value = self.merge(value)
                result = self._emit(value, metadata)
                results.extend(result if type(result) is list else [result])
            self._release_refs(metadata)
        return [r for r in results if r is not None]


def from_karabo_bridges(endpoints: Sequence[str], sock: str = "REQ", *,
                        latest: Sequence[str] = (), window: int = 10,
                        timeout: float | None = 2.0, max_age: int | None = None,
                        partial: str = "drop", start: bool = False, **source_kwargs: Any
                        ) -> join_trains:
    """Read several bridges and emit one merged :class:`Train` per train ID.

    What ``Stream.from_karabo_bridge([ep1, ep2, ...])`` returns. Every endpoint is read by its
    own :func:`kb_streams.sources.from_karabo_bridge` (``node.sources``); their trains are
    joined by :class:`join_trains` (``window``, ``timeout``, ``max_age``, ``partial``,
    ``node.partial``, ``node.late``, ``node.stats`` as there) and merged with
    :func:`merge_trains`. ``node.start()``/``stop()``/``join()`` drive all the sources.

    Parameters
    ----------
    endpoints
        Bridge endpoints; each is required unless listed in ``latest``.
    latest
        Endpoints of slow data (motors, scan step) joined as of each train.
    sock, **source_kwargs
        For each source (``'REQ'``, ``'SUB'``, ``'PULL'``; ``timeout=`` of the source is
        ``source_timeout=`` here).

    Examples
    --------
    >>> from streamz import Stream
    >>> import kb_streams
    >>> both = Stream.from_karabo_bridge(["tcp://127.0.0.1:45000", "tcp://127.0.0.1:45001"],
    ...                                  window=5)                    # doctest: +SKIP
    >>> both.sink(lambda train: print(train.train_id, train.sources))  # doctest: +SKIP
    >>> both.start()                                                   # doctest: +SKIP
    """
    from .sources import from_karabo_bridge

    endpoints = list(endpoints)
    unknown = set(latest) - set(endpoints)
    if unknown:
        raise ValueError(f"latest= names endpoints not in the list: {sorted(unknown)}")
    if "source_timeout" in source_kwargs:
        source_kwargs["timeout"] = source_kwargs.pop("source_timeout")
    sources = {ep: from_karabo_bridge(ep, sock, stream_name=ep, **source_kwargs)
               for ep in endpoints}
    required = [sources[ep] for ep in endpoints if ep not in latest]
    if not required:
        raise ValueError("at least one endpoint must be joined by train ID (not latest=)")
    node = _bridges_joined(list(sources.values()), *required,
                           latest=[sources[ep] for ep in latest], window=window,
                           timeout=timeout, max_age=max_age, partial=partial,
                           merge=merge_trains, loop=required[0].loop,
                           stream_name="from_karabo_bridges")
    if start:
        node.start()
    return node


class _bridges_joined(join_trains):
    """``join_trains`` over bridge sources, with ``start``/``stop``/``join`` acting on them."""

    def __init__(self, sources: list, *required: Stream, **kwargs: Any) -> None:
        self.sources = sources
        super().__init__(*required, **kwargs)

    def start(self) -> None:
        """Start every source."""
        self._finished.clear()
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        """Stop every source (then :meth:`join` closes the trains still open)."""
        for source in self.sources:
            source.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every source to finish, then close and emit the trains still open."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for source in self.sources:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not source.join(left):
                return False
        super().stop()
        return True
