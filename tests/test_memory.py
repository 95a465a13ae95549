"""Memory hygiene: a graph holds only the trains in flight, not the last train on every node."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest
from streamz import Stream

from kb_streams.nodes import ForgetValues, forget_values, graph_nodes

BIG = 20_000_000 // 8  # 20 MB of float64: large enough to matter, cheap to make


def four_maps(source: Stream) -> tuple[Stream, list]:
    out: list = []
    tail = (source.map(lambda a: a * 1.0)
                  .map(lambda a: a + 1)
                  .map(lambda a: a[::2])
                  .map(lambda a: a.copy()))
    tail.sink(lambda a: out.append(float(a[0])))
    return tail, out


def emit_big(source: Stream, n: int) -> list[weakref.ref]:
    refs = []
    for i in range(n):
        array = np.full(BIG, i, dtype=np.float64)
        refs.append(weakref.ref(array))
        source.emit(array)
        del array
    gc.collect()
    return refs


def test_plain_streamz_pins_the_last_item():
    """The trap itself (the premise of this module: if streamz fixes it, we can drop ours)."""
    source = Stream()
    _, out = four_maps(source)
    refs = emit_big(source, 2)
    assert out == [1.0, 2.0]
    assert refs[-1]() is not None
    assert any(node.current_value is not None for node in graph_nodes(source))


def test_forget_values_frees_every_train():
    source = Stream()
    tail, out = four_maps(source)
    assert forget_values(tail) == 6  # source, 4 maps, sink; found from any node
    assert forget_values(source) == 0  # idempotent
    refs = emit_big(source, 3)
    assert out == [1.0, 2.0, 3.0]
    assert [r() for r in refs] == [None, None, None]
    assert all(node.current_value is None and node.current_metadata is None
               for node in graph_nodes(source))


def test_forgetful_nodes_keep_their_class_behaviour():
    source = Stream()
    window = source.sliding_window(2, return_partial=False)
    pairs = window.sink_to_list()
    forget_values(source)
    for i in range(3):
        source.emit(i)
    assert pairs == [(0, 1), (1, 2)]
    assert isinstance(window, ForgetValues)
    assert type(window).__name__ == "sliding_window"


SRC = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"


def serve_big_trains(endpoint: str, n: int, nbytes: int = BIG * 8):
    """A reference bridge server with ``n`` trains of ``nbytes`` each, ready to serve."""
    from karabo_bridge import ServerInThread

    server = ServerInThread(endpoint, sock="REP", maxlen=n)
    server.start()
    for tid in range(n):
        server.feed({SRC: {"image.data": np.full(nbytes // 4, tid, dtype=np.float32)}},
                    {SRC: {"timestamp.tid": 1000 + tid}})
    return server


@pytest.mark.parametrize("forget", [True, False])
def test_bridge_graph_keeps_no_train_once_drained(tcp_endpoint, forget):
    """Four maps over 20 MB trains from a real socket: after the run no train array is alive."""
    from kb_streams.sources import from_karabo_bridge

    source = Stream.from_karabo_bridge(tcp_endpoint, timeout=2, forget=forget)
    assert isinstance(source, from_karabo_bridge)
    refs: list[weakref.ref] = []

    def remember(train):
        array = train[SRC, "image.data"].ndarray()  # a view on the received message
        refs.append(weakref.ref(array))
        return array

    out = []
    source.map(remember).map(lambda a: a[::2]).map(lambda a: a[:10]).map(
        lambda a: float(a[0])).sink(out.append)
    server = serve_big_trains(tcp_endpoint, 4)
    try:
        source.start()
        deadline = time.monotonic() + 10
        while len(out) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        source.stop()
        assert source.join(5)
    finally:
        server.stop()
    gc.collect()
    assert out == [0.0, 1.0, 2.0, 3.0]
    alive = [r() is not None for r in refs]
    if forget:
        assert alive == [False] * 4
    else:  # the premise: without forget_values the last train stays pinned by the nodes
        assert alive[-1]
