"""Memory hygiene for streamz graphs: nodes that forget the last item they emitted.

Every streamz node stores the last item it emitted in ``current_value`` (and its metadata in
``current_metadata``). With 100 MB–1.4 GB trains, a graph of a few nodes then pins a few trains in
memory after they have left the graph, and keeps them while the stream is idle. The nodes here clear
both attributes as soon as the downstream call returns, so a graph holds only the trains in flight
(plus what a node keeps on purpose: ``buffer``, ``sliding_window``, ``partition``, ``latest``,
``zip``, ``combine_latest``, ``accumulate`` state and sinks).

``current_value`` is only read by ``streamz.dataframe``/``streamz.collection`` (the ``Streaming``
objects), which kb_streams graphs do not use.

Every source, sink and Dask node of ours also has one interface (:class:`NodeInterface`):
``stats`` (a :class:`kb_streams.stats.NodeStats`), ``errors`` (a stream of
:class:`kb_streams.records.ErrorRecord`), ``finished`` (a :class:`Finished` event), ``join()`` and
``stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from streamz import Stream

from .records import ErrorRecord

__all__ = ["ForgetValues", "Finished", "NodeInterface", "forget_values", "graph_nodes"]

logger = logging.getLogger(__name__)


class ForgetValues:
    """Mixin for streamz nodes: clear ``current_value`` once the item has been passed on.

    Put it first in the bases of a node class (``class node(ForgetValues, Stream)``), or convert
    the nodes of an existing graph with :func:`forget_values`.

    Examples
    --------
    >>> from streamz import Stream, map as map_node
    >>> class forgetful_map(ForgetValues, map_node):
    ...     pass
    >>> source = Stream()
    >>> out = []
    >>> node = forgetful_map(source, lambda x: x + 1)
    >>> sink = node.sink(out.append)
    >>> source.emit(1)
    >>> out, node.current_value
    ([2], None)
    """

    def _emit(self, x: Any, metadata: list[dict] | None = None) -> list:
        try:
            return super()._emit(x, metadata=metadata)  # type: ignore[misc]
        finally:
            self.current_value = None
            self.current_metadata = None


class Finished(threading.Event):
    """Set once a node has nothing left to do; true (as a bool) when set.

    Wait for it from any thread but the node's event loop (``finished.wait(timeout)``, or the
    node's ``join(timeout)``); test it anywhere (``if node.finished:``).

    Examples
    --------
    >>> finished = Finished()
    >>> bool(finished), finished.wait(0.01)
    (False, False)
    >>> finished.set()
    >>> bool(finished), finished.wait(0.01)
    (True, True)
    """

    def __bool__(self) -> bool:
        return self.is_set()

    def __repr__(self) -> str:
        return f"<Finished: {self.is_set()}>"


class NodeInterface:
    """What every source, sink and Dask node of ours offers besides the streamz node API.

    * ``stats``: the node's counters (a :class:`kb_streams.stats.NodeStats`), each failure
      counted there;
    * ``errors``: a streamz ``Stream`` emitting one :class:`~kb_streams.records.ErrorRecord` per
      failure (a train that could not be decoded, processed, sent or was lost);
    * ``finished``: a :class:`Finished` event, set while the node has nothing in flight (a
      source: stopped and drained; a sink: closed);
    * ``join(timeout)``: wait for ``finished``; ``stop()``: as streamz (stop the sources).

    Call :meth:`_init_interface` at the end of ``__init__`` (once ``loop`` is known).
    """

    errors: Stream
    finished: Finished

    def _init_interface(self, name: str) -> None:
        self.errors = Stream(loop=getattr(self, "loop", None),
                             asynchronous=getattr(self, "asynchronous", None),
                             stream_name=f"{name}.errors")
        self.finished = Finished()
        self.finished.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until :attr:`finished` (from any thread but the node's event loop).

        Returns
        -------
        bool
            ``True`` if the node finished within ``timeout`` seconds.
        """
        return self.finished.wait(timeout)

    def _report(self, record: ErrorRecord, log: bool = True) -> list:
        """Emit ``record`` on ``errors`` (logged first unless ``log=False``: the node logged it
        its own way); the awaitables the errors stream returned."""
        if log:
            logger.warning("%s", record)
        try:
            return self.errors._emit(record) or []
        except Exception:
            logger.exception("the errors stream raised on %s", record)
            return []

    async def _report_async(self, record: ErrorRecord, log: bool = True) -> None:
        """:meth:`_report`, awaiting what the errors stream returned (from the node's loop)."""
        try:
            await asyncio.gather(*self._report(record, log))
        except Exception:
            logger.exception("the errors stream raised on %s", record)


_forgetful_classes: dict[type, type] = {}
_lock = threading.Lock()


def _forgetful_class(cls: type) -> type:
    with _lock:
        try:
            return _forgetful_classes[cls]
        except KeyError:
            new = type(cls.__name__, (ForgetValues, cls), {"__module__": cls.__module__,
                                                             "__qualname__": cls.__qualname__})
            _forgetful_classes[cls] = new
            return new


def graph_nodes(stream: Stream) -> Iterator[Stream]:
    """Every node connected to ``stream``, upstream or downstream, each once.

    Examples
    --------
    >>> from streamz import Stream
    >>> source = Stream()
    >>> sink = source.map(abs).sink(print)
    >>> len(list(graph_nodes(sink)))
    3
    """
    seen: set[int] = set()
    todo = deque([stream])
    while todo:
        node = todo.popleft()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        todo.extend(node.upstreams)
        todo.extend(node.downstreams)


def forget_values(stream: Stream) -> int:
    """Make every node of the graph around ``stream`` forget the items it has passed on.

    Each node is switched, in place, to a subclass of its own class with :class:`ForgetValues` mixed
    in (same name, same behaviour otherwise). Safe to call again after adding nodes; nodes already
    converted are left alone. :func:`kb_streams.sources.from_karabo_bridge` does this for its graph
    when it starts.

    Parameters
    ----------
    stream
        Any node of the graph.

    Returns
    -------
    int
        The number of nodes converted by this call.

    Examples
    --------
    >>> import numpy as np
    >>> from streamz import Stream
    >>> source = Stream()
    >>> total = source.map(np.negative).map(np.sum)
    >>> sink = total.sink(lambda x: None)
    >>> forget_values(source)
    4
    >>> source.emit(np.ones(10))
    >>> [node.current_value for node in (source, total)]
    [None, None]
    """
    converted = 0
    for node in graph_nodes(stream):
        if isinstance(node, ForgetValues):
            continue
        node.__class__ = _forgetful_class(type(node))
        node.current_value = None
        node.current_metadata = None
        converted += 1
    return converted
