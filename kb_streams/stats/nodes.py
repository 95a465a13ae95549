"""The nodes' counters, one family: every source, sink and Dask node has a :class:`NodeStats`.

:class:`SourceStats` (the bridge source), :class:`SinkStats` (the re-publishing sink),
:class:`OffloadStats` and :class:`WorkerReceiveStats` (the Dask nodes). Each says which counter is
its throughput (:attr:`NodeStats.items`) and which count failures (:attr:`NodeStats.failures`, one
per record on the node's ``errors`` stream), and what a live view shows (:meth:`NodeStats.shown`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = ["NodeStats", "SourceStats", "SinkStats", "OffloadStats", "WorkerReceiveStats"]


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
