"""Counters of the wire: what a bridge stream delivered and what a bridge server sent.

:class:`StreamStats` knows nothing about sockets. The clients update it as messages arrive; the
streamz source and the ``kb-streams monitor`` command reuse it for their own streams.
:class:`ServerStats` counts what a :class:`~kb_streams.server.BridgeServer` hands to ZeroMQ, with
its recent rates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["StreamStats", "ServerStats"]


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
