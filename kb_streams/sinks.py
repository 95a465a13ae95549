"""The streamz sink node: re-publish a graph's results over a Karabo bridge.

``stream.to_karabo_bridge()`` (registered here and through the ``streamz.sinks`` entry point)
turns every item reaching it into one bridge train and serves it with a
:class:`kb_streams.server.BridgeServer`, so that any bridge reader (``karabo_bridge.Client``,
karabo-bridge-glimpse, a Karabo GUI scene, another kb_streams graph) can read a pipeline's results:
per-train ROI sums, a running mean image, a binned pump-probe curve.

The graph never waits for a reader. Results wait in a small bounded queue; when it is full the
oldest is dropped (and counted) so that the newest always goes out, and a REP reader always gets
the newest result waiting. An item that cannot be converted or encoded is logged with its train ID,
counted and skipped. How an item becomes a train is :mod:`kb_streams.bridge_train`'s job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from streamz import Stream
from streamz.sinks import Sink

from ._drop_queue import DropQueue
from .bridge_train import DEFAULT_SOURCE, to_bridge_train
from .nodes import NodeInterface
from .protocol import encode
from .records import ErrorRecord, detach
from .server import BridgeServer
from .stats import SinkStats
from .train_id import train_id_of

__all__ = ["SinkStats", "to_bridge_train", "to_karabo_bridge"]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10


# -- the node ---------------------------------------------------------------------------------


@Stream.register_api()
class to_karabo_bridge(NodeInterface, Sink):
    """Publish every item as a train on a Karabo bridge socket (REP, PUB or PUSH).

    Each item becomes one train (see :func:`to_bridge_train`): ``(data, meta)`` pairs and
    :class:`kb_streams.Train` records as they are; an xarray ``DataArray``/``Dataset``, a flat
    ``{key: value}`` mapping, a number or an array as one source named *source*;
    ``{source: {key: value}}`` as those sources. Every source gets a timestamp (now, where it has
    none) and a train ID: the item's own (:func:`kb_streams.train.train_id_of`), else the last one
    seen by this node, else (before any item carried one) a count of the items received, from 1.

    The graph never waits for a reader: results wait in a queue of *queue_size*; when it is full,
    the oldest is dropped (``stats.dropped``). PUB sends at once (ZeroMQ drops what no subscriber
    takes); PUSH sends in order as the reader makes room; REP answers each request with the newest
    result waiting and drops the older ones, so a display never shows stale results. An item that
    cannot be converted or encoded is logged with its train ID, counted (``stats.unsendable``) and
    skipped.

    Parameters
    ----------
    upstream
        The stream whose items to publish.
    endpoint
        Where to bind: ``None`` (default) binds ``tcp://127.0.0.1`` on a free port (read it from
        :attr:`endpoint`); a port number binds that port on 127.0.0.1; any other string is used as
        it is (``'tcp://*:45000'`` binds every interface: only when you mean it).
    sock
        ``'PUB'`` (default), ``'PUSH'`` or ``'REP'``.
    source
        Source name of the results that carry none (see above).
    protocol_version
        ``'2.2'`` (default) or ``'1.0'``.
    queue_size
        Results that may wait for a reader; the oldest is dropped beyond that. With PUB it is
        also ZeroMQ's high-water mark (results queued per subscriber): at 1, ZeroMQ silently
        drops a result sent a moment after the previous one even to a subscriber that keeps up.
    copy
        Copy arrays when an item arrives (default), so that the graph may go on updating its
        arrays in place (a running mean) while the result waits to be sent. ``False`` sends them
        zero-copy: then never modify an array after it reached this node.
    server
        A :class:`~kb_streams.server.BridgeServer` to publish with instead of one made here (give
        it instead of *endpoint*, *sock* and *protocol_version*), e.g. to choose its ``hwm`` or
        ZeroMQ context. It must not be serving yet; the node serves it from then on and
        :meth:`close` closes it.
    **kwargs
        As for any streamz node (``stream_name``, ...).

    Attributes
    ----------
    server
        The :class:`~kb_streams.server.BridgeServer` publishing the results.
    errors
        Emits an :class:`~kb_streams.records.ErrorRecord` per unsendable item.
    finished
        A :class:`~kb_streams.nodes.Finished` event, set once the node is closed
        (``join(timeout)`` waits for it).

    Notes
    -----
    :meth:`close` releases the server (its port is free again when it returns). :meth:`stop`
    does that too, after stopping the upstream sources as any streamz node's ``stop`` does.
    ``node.stats`` holds the counters (:class:`SinkStats`); ``node.server.stats`` the server's.

    Examples
    --------
    Publish a number per train and read it back with a bridge client:

    >>> from streamz import Stream
    >>> from kb_streams import Client
    >>> source = Stream()
    >>> node = source.to_karabo_bridge(sock='PUSH', source='SPB/RESULTS/roi')
    >>> source.emit(({'SPB/XGM': {'energy': 1.2}}, {'SPB/XGM': {'timestamp.tid': 10_000}}))
    >>> source.emit(42.0)                # no train ID of its own: the last one seen
    >>> with Client(node.endpoint, sock='PULL', timeout=5) as client:
    ...     first, second = client.next(), client.next()
    >>> first[0]['SPB/XGM']['energy'], second[0]['SPB/RESULTS/roi']['data']
    (1.2, 42.0)
    >>> second[1]['SPB/RESULTS/roi']['timestamp.tid'], node.stats.published
    (10000, 2)
    >>> node.close()
    """

    _graphviz_shape = "trapezium"

    def __init__(
        self,
        upstream: Stream,
        endpoint: str | int | None = None,
        sock: str | None = None,
        *,
        source: str = DEFAULT_SOURCE,
        protocol_version: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        copy: bool = True,
        server: BridgeServer | None = None,
        **kwargs: Any,
    ) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size!r}")
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, not {source!r}")
        self.source = source
        self.copy = copy
        self._stats = SinkStats()
        self._lock = threading.Lock()
        self._last_train_id: int | None = None
        self._outbox: DropQueue[tuple[list[Any], int]] = DropQueue(int(queue_size))
        self._closed = False
        self._warned_drop = False
        self.server = self._make_server(endpoint, sock, protocol_version, server, int(queue_size))
        try:
            super().__init__(upstream, **kwargs)
        except BaseException:
            self.close()
            raise
        self._init_interface(kwargs.get("stream_name") or "to_karabo_bridge")
        self.finished.clear()  # set once closed
        try:
            self.server.start(self._results(self.server))
        except BaseException:
            self.destroy()
            raise

    @staticmethod
    def _make_server(endpoint: str | int | None, sock: str | None, protocol_version: str | None,
                     server: BridgeServer | None, queue_size: int) -> BridgeServer:
        if server is None:
            sock = "PUB" if sock is None else str(sock).upper()
            # At a high-water mark of 1, PUB silently drops a message sent a moment after the
            # previous one, even to a subscriber that keeps up (ZeroMQ acknowledges reads late).
            return BridgeServer(endpoint, sock=sock, protocol_version=protocol_version or "2.2",
                                hwm=queue_size if sock == "PUB" else 1)
        given = [name for name, value in [("endpoint", endpoint), ("sock", sock),
                                          ("protocol_version", protocol_version)]
                 if value is not None]
        if given:
            raise ValueError(f"give either server= or {', '.join(given)}, not both")
        if server.running:
            raise ValueError(f"bridge server {server.endpoint} is already serving")
        return server

    # -- public -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Where readers connect (the endpoint bound, with its real port)."""
        return self.server.endpoint

    @property
    def stats(self) -> SinkStats:
        """A snapshot of the counters (:class:`SinkStats`)."""
        with self._lock:
            return replace(self._stats, queued=len(self._outbox))

    def close(self) -> None:
        """Stop publishing and release the server (the port is free when this returns).

        A server given to the node is closed too. Results still queued are dropped; items
        arriving later are counted as dropped. Safe to call more than once.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._count(dropped=self._outbox.close())
        self.server.close()
        if hasattr(self, "finished"):
            self.finished.set()

    def stop(self) -> None:
        """Stop the upstream sources (as any streamz node's ``stop``), then :meth:`close`."""
        super().stop()
        self.close()

    def destroy(self) -> None:
        """Disconnect from upstream (as any streamz sink) and :meth:`close`."""
        super().destroy()
        self.close()

    # -- the graph's side -------------------------------------------------------------------

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> None:
        self._count(received=1)
        train_id = self._train_id(x)
        frames = self._encode(x, train_id)
        if frames is None:
            return
        if self._outbox.closed:
            self._count(dropped=1)
            return
        self._count(dropped=self._outbox.push((frames, train_id)))

    def _train_id(self, item: Any) -> int:
        train_id = train_id_of(item)
        with self._lock:
            if train_id is not None:
                self._last_train_id = train_id
            elif self._last_train_id is not None:
                train_id = self._last_train_id
            else:
                train_id = self._stats.received
        return train_id

    def _encode(self, item: Any, train_id: int) -> list[Any] | None:
        """The message parts publishing *item*, or None (logged and counted) if there are none."""
        try:
            data, meta = to_bridge_train(item, train_id, source=self.source)
            if not data:
                raise ValueError("no sources to send")
            frames = encode(data, meta, protocol_version=self.server.protocol_version,
                            dummy_timestamps=True)
        except Exception as exc:  # one bad result must not stop the graph
            self._count(unsendable=1)
            logger.warning("Not published: train %s to %s: %s", train_id, self.endpoint, exc)
            text, exc = detach(exc)
            self._report(ErrorRecord(train_id, "to_karabo_bridge", exc, text, reason="unsendable",
                                     endpoint=self.endpoint), log=False)
            return None
        if self.copy:
            frames = [bytes(frame) if isinstance(frame, memoryview) else frame
                      for frame in frames]
        return frames

    def _count(self, *, received: int = 0, dropped: int = 0, unsendable: int = 0) -> None:
        with self._lock:
            self._stats.received += received
            self._stats.dropped += dropped
            self._stats.unsendable += unsendable
            warn = dropped and not self._warned_drop and not self._closed
            self._warned_drop = self._warned_drop or bool(warn)
        if warn:
            logger.info("Results for %s wait for a reader: dropping the oldest ones "
                        "(counted in stats.dropped)", self.endpoint)

    # -- the serving thread's side ----------------------------------------------------------

    def _results(self, server: BridgeServer) -> Iterator[list[Any]]:
        """The message parts to send, one result at a time, until the node or server closes."""
        newest = server.sock == "REP"
        while True:
            # checking server.stopping lets node.server.close() end this wait at once
            result, dropped = self._outbox.take(newest=newest, stopping=lambda: server.stopping)
            if result is None:
                return
            frames, train_id = result
            with self._lock:
                self._stats.dropped += dropped
                self._stats.published += 1
                self._stats.last_train_id = train_id
            yield frames
            del result, frames  # not kept while waiting for the next result
