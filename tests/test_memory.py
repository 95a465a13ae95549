"""Memory hygiene: a graph holds only the trains in flight, not the last train on every node."""

from __future__ import annotations

import gc
import weakref

import numpy as np
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
    """The trap itself (guards the premise of this module: if streamz fixes it, we can drop ours)."""
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
