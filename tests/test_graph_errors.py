"""A node of the graph raising on a train is reported once: train, endpoint, node, traceback."""

from __future__ import annotations

import itertools
import logging

from _waiting import wait_until
from streamz import Stream

import kb_streams  # noqa: F401  (registers Stream.from_karabo_bridge)
from kb_streams.server import BridgeServer


def ratio(train):
    return 1 / 0


def test_a_failing_map_is_one_log_record_per_train(tcp_endpoint, caplog):
    caplog.set_level(logging.WARNING)
    with BridgeServer(tcp_endpoint, sock="REP") as server:
        server.start(({"src": {"x": i}}, {"src": {"timestamp.tid": 1000 + i}})
                     for i in itertools.count())
        source = Stream.from_karabo_bridge(tcp_endpoint, timeout=10)
        source.map(ratio).sink(print)
        source.start()
        try:
            wait_until(lambda: source.stats.errors >= 3, 30, "three failed trains")
        finally:
            source.stop()
            assert source.join(10)
    errors = source.stats.errors
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == errors  # not two (streamz's traceback, then our train ID) per train
    first = records[0]
    assert (first.train_id, first.endpoint, first.node) == (1000, tcp_endpoint, "map(ratio)")
    assert isinstance(first.exception, ZeroDivisionError)
    assert first.error_traceback.splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert "in ratio" in first.error_traceback and "streamz" not in first.error_traceback
    assert first.getMessage().startswith(
        f"Train 1000: error in the graph (map(ratio), from {tcp_endpoint}): "
        "ZeroDivisionError: division by zero\n"
        "Traceback (most recent call last):\n")
