"""Memory hygiene for streamz graphs: nodes that forget the last item they emitted.

Every streamz node stores the last item it emitted in ``current_value`` (and its metadata in
``current_metadata``). With 100 MB–1.4 GB trains, a graph of a few nodes then pins a few trains in
memory after they have left the graph, and keeps them while the stream is idle. The nodes here clear
both attributes as soon as the downstream call returns, so a graph holds only the trains in flight
(plus what a node keeps on purpose: ``buffer``, ``sliding_window``, ``partition``, ``latest``,
``zip``, ``combine_latest``, ``accumulate`` state and sinks).

``current_value`` is only read by ``streamz.dataframe``/``streamz.collection`` (the ``Streaming``
objects), which kb_streams graphs do not use.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from streamz import Stream

__all__ = ["ForgetValues", "forget_values", "graph_nodes"]


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
