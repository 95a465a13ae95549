"""Counters for a stream of trains: what arrived, what was lost, what went wrong.

:class:`StreamStats` knows nothing about sockets. The clients update it as messages arrive; the
streamz source and the ``kb-streams monitor`` command reuse it for their own streams.

The nodes' counters are one family (:class:`NodeStats`): :class:`SourceStats` (the bridge
source), :class:`SinkStats` (the re-publishing sink), :class:`OffloadStats` and
:class:`WorkerReceiveStats` (the Dask nodes). Each says which counter is its throughput
(:attr:`NodeStats.items`) and which count failures (:attr:`NodeStats.failures`, one per record on
the node's ``errors`` stream). :class:`RateWindow` turns a growing counter into a recent rate and
:class:`DataAge` keeps the age of the data a node passed on.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol

__all__ = ["StreamStats", "NodeStats", "SourceStats", "SinkStats", "OffloadStats",
           "WorkerReceiveStats", "RateWindow", "DataAge"]


class _MessageLike(Protocol):
    """What :meth:`StreamStats.observe` reads from a :class:`kb_streams.protocol.Message`."""

    nbytes: int
    protocol_version: str

    @property
    def train_id(self) -> int | None: ...


@dataclass
class StreamStats:
    """Running counters for one stream of bridge messages.

    Attributes
    ----------
    trains
        Trains delivered to the user.
    bytes
        Total size in bytes of the delivered messages (all ZeroMQ parts).
    gaps
        Train IDs missing between consecutive delivered trains, not counting trains this client
        discarded itself (``dropped``). A jump backwards, or forwards by more than
        :attr:`max_gap`, is taken as a restart of the source and not counted.
    gap_events
        How many times a gap was seen (so ``gaps / gap_events`` is the mean gap length).
    decode_errors
        Messages that could not be decoded (:class:`~kb_streams.ProtocolError` raised).
    timeouts
        Calls that raised :class:`TimeoutError`.
    reconnects
        Times the client dropped its socket and connected afresh (REQ recovery).
    dropped
        Trains received but discarded by the client to deliver a newer one (``latest=True``).
    protocol_version
        Protocol version of the last delivered message (``'1.0'``, ``'2.2'``, ...).
    last_train_id
        Train ID of the last delivered message that had one.
    first_time, last_time
        :func:`time.monotonic` when the first and the last train were delivered.

    Examples
    --------
    >>> from kb_streams.protocol import Message
    >>> stats = StreamStats()
    >>> for tid in (100, 101, 104):
    ...     meta = {"src": {"timestamp.tid": tid}}
    ...     stats.observe(Message(data={"src": {}}, meta=meta, protocol_version="2.2", nbytes=10))
    >>> stats.trains, stats.gaps, stats.gap_events, stats.last_train_id
    (3, 2, 1, 104)
    >>> stats.as_dict()["bytes"]
    30
    """

    trains: int = 0
    bytes: int = 0
    gaps: int = 0
    gap_events: int = 0
    decode_errors: int = 0
    timeouts: int = 0
    reconnects: int = 0
    dropped: int = 0
    protocol_version: str | None = None
    last_train_id: int | None = None
    first_time: float | None = None
    last_time: float | None = None
    max_gap: int = field(default=100_000, repr=False)

    def observe(self, message: _MessageLike, *, dropped: int = 0, now: float | None = None) -> None:
        """Count one delivered message.

        Parameters
        ----------
        message
            The decoded message (anything with ``nbytes``, ``protocol_version`` and ``train_id``).
        dropped
            Messages discarded just before this one (they are not counted as gaps).
        now
            Time of delivery (:func:`time.monotonic`); defaults to the current time.
        """
        now = time.monotonic() if now is None else now
        self.trains += 1
        self.bytes += int(message.nbytes)
        self.dropped += dropped
        self.protocol_version = message.protocol_version
        if self.first_time is None:
            self.first_time = now
        self.last_time = now

        tid = message.train_id
        if tid is None:
            return
        if self.last_train_id is not None:
            missing = tid - self.last_train_id - 1 - dropped
            if 0 < missing <= self.max_gap:
                self.gaps += missing
                self.gap_events += 1
        self.last_train_id = tid

    @property
    def elapsed(self) -> float:
        """Seconds between the first and the last delivered train (0 before the second)."""
        if self.first_time is None or self.last_time is None:
            return 0.0
        return self.last_time - self.first_time

    @property
    def train_rate(self) -> float:
        """Mean trains per second since the first train (``nan`` before two trains).

        For a rate over a recent window, difference two :meth:`as_dict` snapshots.
        """
        return (self.trains - 1) / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def byte_rate(self) -> float:
        """Mean bytes per second since the first train (``nan`` before two trains)."""
        if self.elapsed <= 0 or self.trains < 2:
            return float("nan")
        return self.bytes * (self.trains - 1) / self.trains / self.elapsed

    def as_dict(self) -> dict[str, Any]:
        """All counters and the mean rates as a plain dictionary (a snapshot).

        Examples
        --------
        >>> StreamStats().as_dict()["trains"]
        0
        """
        out = asdict(self)
        out.pop("max_gap")
        out["train_rate"] = self.train_rate
        out["byte_rate"] = self.byte_rate
        return out


# -- the nodes' counters ----------------------------------------------------------------------


@dataclass
class NodeStats:
    """What every node's ``stats`` has: its counters, a throughput and a failure count.

    Subclasses name the counter of items passed on (``_items``) and those of failures
    (``_failures``); each failure was also one record on the node's ``errors`` stream.
    """

    _items: ClassVar[str] = ""
    _failures: ClassVar[tuple[str, ...]] = ()
    #: ``(label, attribute, unit)`` a live view shows, throughput first; unit ``''`` (a count),
    #: ``'s'`` (seconds) or ``'B'`` (bytes, e.g. ``'B/train'``). ``failures`` is the errors cell.
    _shown: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    @property
    def items(self) -> int:
        """Items the node passed on (trains emitted, results published or returned)."""
        return int(getattr(self, self._items))

    @property
    def failures(self) -> int:
        """Items that failed: as many records went to the node's ``errors`` stream."""
        return sum(int(getattr(self, name)) for name in self._failures)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dictionary (a snapshot)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def shown(self) -> list[tuple[str, str, Any, str]]:
        """What a live view shows: ``(label, attribute, value, unit)``, throughput first.

        Examples
        --------
        >>> SinkStats(received=3, published=2, unsendable=1).shown()[:2]
        [('published', 'published', 2, ''), ('received', 'received', 3, '')]
        """
        return [(label, name, getattr(self, name), unit) for label, name, unit in self._shown]


@dataclass
class SourceStats(NodeStats):
    """Counters of a :class:`~kb_streams.sources.from_karabo_bridge` node (``source.stats``).

    Attributes
    ----------
    trains
        Trains emitted into the graph.
    bytes
        Bytes received (message size on the wire).
    gaps
        Train IDs missing between consecutive received trains (lost before they reached us).
    dropped
        Trains received but skipped to keep the data fresh (``latest=True``).
    decode_errors
        Messages that could not be decoded (:class:`kb_streams.ProtocolError`); each is skipped.
    timeouts
        Receive timeouts (no train within ``timeout`` seconds).
    reconnects
        Times the client connected afresh to recover a REQ request lost with its server.
    errors
        Trains for which a node of the graph raised an exception.
    in_flight
        Trains emitted that have not yet left the graph: being processed, queued in a
        ``buffer``, or held (as the data derived from them) by ``sliding_window``,
        ``partition`` and similar nodes until those emit.
    last_train_id
        Train ID of the last train emitted.
    protocol_version
        Protocol version of the last train received.
    age_last, age_mean, age_max
        Data age in seconds (time since the train's timestamp) when a train was emitted:
        the last one, the mean and the maximum over all trains. ``nan`` before the first train
        or when trains carry no timestamps.
    """

    _items: ClassVar[str] = "trains"
    _failures: ClassVar[tuple[str, ...]] = ("errors", "decode_errors")
    _shown: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("trains", "trains", ""), ("age", "age_last", "s"), ("mean age", "age_mean", "s"),
        ("lost", "gaps", ""), ("dropped", "dropped", ""), ("errors", "failures", ""),
        ("in flight", "in_flight", ""))

    trains: int = 0
    bytes: int = 0
    gaps: int = 0
    dropped: int = 0
    decode_errors: int = 0
    timeouts: int = 0
    reconnects: int = 0
    errors: int = 0
    in_flight: int = 0
    last_train_id: int | None = None
    protocol_version: str | None = None
    age_last: float = float("nan")
    age_mean: float = float("nan")
    age_max: float = float("nan")


@dataclass
class SinkStats(NodeStats):
    """Counters of a :class:`~kb_streams.sinks.to_karabo_bridge` node (``node.stats``).

    Attributes
    ----------
    received
        Items that reached the node.
    published
        Results taken by the server to send: handed to ZeroMQ (with PUB, a result no subscriber
        could take still counts, as ZeroMQ drops it silently).
    dropped
        Results that never went out: pushed out of the full queue by newer ones, passed over by a
        REP reader taking the newest, or arriving after the node was closed.
    unsendable
        Items that could not be converted or encoded; each was logged with its train ID.
    queued
        Results waiting in the queue now.
    last_train_id
        Train ID of the last result published.
    """

    _items: ClassVar[str] = "published"
    _failures: ClassVar[tuple[str, ...]] = ("unsendable",)
    _shown: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("published", "published", ""), ("received", "received", ""),
        ("dropped", "dropped", ""), ("errors", "failures", ""), ("queued", "queued", ""))

    received: int = 0
    published: int = 0
    dropped: int = 0
    unsendable: int = 0
    queued: int = 0
    last_train_id: int | None = None


@dataclass
class OffloadStats(NodeStats):
    """Counters of an :class:`~kb_streams.dask.offload.Offload` node (``node.stats``), live.

    ``failed`` items went to ``node.errors``, of which ``timed_out`` ran out of time;
    ``resubmitted`` were sent again after their worker was lost; ``bytes_scattered`` went to the
    workers by scatter, ``bytes_in_tasks`` inside task messages, ``bytes_results`` came back.
    """

    _items: ClassVar[str] = "completed"
    _failures: ClassVar[tuple[str, ...]] = ("failed",)
    _shown: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("results", "completed", ""), ("in flight", "in_flight", ""),
        ("resubmitted", "resubmitted", ""), ("errors", "failures", ""))

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    resubmitted: int = 0
    timed_out: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bytes_scattered: int = 0
    bytes_in_tasks: int = 0
    bytes_results: int = 0


@dataclass
class WorkerReceiveStats(NodeStats):
    """Counters of a worker-side source (``source.stats``), updated live.

    ``emitted`` results went downstream; ``received`` trains were reduced on workers; ``errors``
    records went to ``source.errors`` (of which ``lost`` were trains lost with their worker);
    ``late`` results came after a later train was emitted and were dropped; ``skipped`` train IDs
    were passed over between emitted trains; ``incomplete`` sharded trains missed a shard (within
    ``wait``); ``idle`` receive attempts timed out; ``probes`` asked the workers about receivers
    holding back a result; ``bytes_received`` arrived on the workers, ``bytes_tasks`` +
    ``bytes_results`` crossed between the graph's process and the workers.
    """

    _items: ClassVar[str] = "emitted"
    _failures: ClassVar[tuple[str, ...]] = ("errors",)
    _shown: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("trains", "emitted", ""), ("received on workers", "received", ""),
        ("skipped", "skipped", ""), ("late", "late", ""), ("errors", "failures", ""),
        ("buffered", "buffered", ""), ("result", "result_bytes", "B/train"))

    emitted: int = 0
    received: int = 0
    errors: int = 0
    lost: int = 0
    late: int = 0
    skipped: int = 0
    incomplete: int = 0
    idle: int = 0
    probes: int = 0
    tasks: int = 0
    reassigned: int = 0
    buffered: int = 0
    max_buffered: int = 0
    bytes_received: int = 0
    bytes_tasks: int = 0
    bytes_results: int = 0

    @property
    def result_bytes(self) -> float:
        """Mean bytes of a result that came back to the graph (0 before the first)."""
        return self.bytes_results / self.received if self.received else 0.0


class RateWindow:
    """Items per second over the last ``window`` seconds, from a growing counter.

    Examples
    --------
    >>> rate = RateWindow(window=3.0)
    >>> rate.update(0, now=0.0), rate.update(10, now=1.0), rate.update(40, now=5.0)
    (0.0, 10.0, 7.5)
    """

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.points: deque[tuple[float, int]] = deque()

    def update(self, count: int, now: float | None = None) -> float:
        """Record ``count`` at ``now`` (default: :func:`time.monotonic`); the recent rate."""
        now = time.monotonic() if now is None else now
        self.points.append((now, count))
        while len(self.points) > 2 and now - self.points[0][0] > self.window:
            self.points.popleft()
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


class DataAge:
    """Age of the data passed on: the last, mean and largest (``nan`` before any).

    Examples
    --------
    >>> age = DataAge()
    >>> for seconds in (0.2, None, 0.4):   # trains without a timestamp have no age
    ...     age.observe(seconds)
    >>> age.last, round(age.mean, 3), age.max
    (0.4, 0.3, 0.4)
    """

    def __init__(self) -> None:
        self.last = self.mean = self.max = math.nan
        self._sum = 0.0
        self._count = 0

    def observe(self, age: float | None) -> None:
        """Count one item's age in seconds (``None``/``nan``: it has none)."""
        if age is None or age != age:
            return
        self._sum += age
        self._count += 1
        self.last = age
        self.mean = self._sum / self._count
        if not self.max >= age:  # (nan before the first)
            self.max = age


# -- the bridge server's counters ------------------------------------------------------------

_SERVER_RATE_WINDOW = 2.0  # seconds of history behind ServerStats.rate


@dataclass
class ServerStats:
    """Counters of a :class:`BridgeServer`, updated as it sends.

    Attributes
    ----------
    trains
        Trains handed to ZeroMQ (with PUB, a train no subscriber could take is still counted).
    bytes
        Total size of the message parts of those trains.
    bad_requests
        REP requests other than ``b'next'``; each got an ``b'Error: bad request ...'`` reply.
    skipped
        Items that could not be encoded, or encoded to an empty message; each was logged.
    last_train_id
        Train ID of the last train sent, when it had one.

    Examples
    --------
    >>> stats = ServerStats()
    >>> stats.record(1_000_000, train_id=10_000_000_000, now=100.0)
    >>> stats.record(1_000_000, train_id=10_000_000_001, now=100.1)
    >>> stats.trains, stats.bytes, round(stats.rate(now=100.1), 1)
    (2, 2000000, 10.0)
    """

    trains: int = 0
    bytes: int = 0
    bad_requests: int = 0
    skipped: int = 0
    last_train_id: int | None = None

    def __post_init__(self) -> None:  # not fields: asdict() and copies see counters only
        self._history: deque[tuple[float, int]] = deque(maxlen=1024)  # (time, bytes so far)
        self._lock = threading.Lock()

    def record(self, nbytes: int, train_id: int | None = None, now: float | None = None) -> None:
        """Count one sent train of *nbytes* bytes."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.trains += 1
            self.bytes += nbytes
            if train_id is not None:
                self.last_train_id = train_id
            self._history.append((now, self.bytes))

    def _recent(self, now: float | None) -> list[tuple[float, int]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            return [entry for entry in self._history if entry[0] >= now - _SERVER_RATE_WINDOW]

    def rate(self, now: float | None = None) -> float:
        """Trains per second over the last couple of seconds (0 when idle)."""
        recent = self._recent(now)
        if len(recent) < 2 or recent[-1][0] == recent[0][0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1][0] - recent[0][0])

    def byte_rate(self, now: float | None = None) -> float:
        """Bytes per second over the last couple of seconds (0 when idle)."""
        recent = self._recent(now)
        if len(recent) < 2 or recent[-1][0] == recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


__all__ += ["ServerStats"]
