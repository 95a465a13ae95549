"""Counters for a stream of trains: what arrived, what was lost, what went wrong.

One place for every counter kb_streams keeps, by family:

* :mod:`kb_streams.stats.wire`: :class:`StreamStats` (a client's stream of bridge messages, also
  used by the source and ``kb-streams monitor``) and :class:`ServerStats` (a bridge server);
* :mod:`kb_streams.stats.nodes`: :class:`NodeStats`, the ``stats`` of every node, and its
  family :class:`SourceStats`, :class:`SinkStats`, :class:`OffloadStats`,
  :class:`WorkerReceiveStats`;
* :mod:`kb_streams.stats.windows`: :class:`RateWindow` (a recent rate from a growing counter)
  and :class:`DataAge` (the age of the data a node passed on).
"""

from __future__ import annotations

from .nodes import NodeStats, OffloadStats, SinkStats, SourceStats, WorkerReceiveStats
from .windows import DataAge, RateWindow
from .wire import ServerStats, StreamStats

__all__ = ["StreamStats", "NodeStats", "SourceStats", "SinkStats", "OffloadStats",
           "WorkerReceiveStats", "RateWindow", "DataAge", "ServerStats"]
