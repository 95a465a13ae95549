"""Endpoints are checked once, before any socket exists, by every client, source and server."""

from __future__ import annotations

import os

import pytest
import zmq
from streamz import Stream

import kb_streams  # noqa: F401  (registers Stream.from_karabo_bridge)
from kb_streams import AsyncClient, BridgeServer, Client, EndpointError, check_endpoint


@pytest.mark.parametrize("endpoint", [
    "tcp://127.0.0.1:45000", "tcp://exflonc12:45000", "tcp://[::1]:4545", "tcp://a-b.c_d:1",
    "tcp://127.0.0.1:65535", " tcp://127.0.0.1:45000 ", "ipc:///tmp/bridge", "inproc://x",
])
def test_valid_endpoints_pass(endpoint):
    assert check_endpoint(endpoint) == endpoint.strip()


@pytest.mark.parametrize("endpoint, reason", [
    ("tcp://127.0.0.1:110131", "port 110131 is out of range (1 to 65535)"),
    ("tcp://127.0.0.1:0", "port 0 is out of range"),
    ("tcp://", "nothing after tcp://"),
    ("foo", "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    ("45000", "expected tcp://HOST:PORT"),
    ("udp://127.0.0.1:45000", "unknown scheme 'udp'"),
    ("tcp://127.0.0.1", "no port (expected tcp://HOST:PORT)"),
    ("tcp://:45000", "no host"),
    ("tcp://127.0.0.1:", "no port"),
    ("tcp://127.0.0.1:45000x", "port '45000x' is not a number"),
    ("tcp://300.1.1.1:45000", "'300.1.1.1' is not an IPv4 address"),
    ("tcp://[::zz]:45000", "[::zz] is not an IPv6 address"),
    ("tcp://ex flonc:45000", "'ex flonc' is not a host name"),
    ("tcp://*:45000", "host '*' is for binding"),
    (None, "expected a string"),
])
def test_invalid_endpoints_say_why_in_one_line(endpoint, reason):
    with pytest.raises(EndpointError) as info:
        check_endpoint(endpoint)
    message = str(info.value)
    assert message.startswith(f"bad endpoint {endpoint!r}: ") and reason in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, zmq.ZMQError)


def test_binding_allows_wildcards_port_zero_and_a_bare_port():
    assert check_endpoint("tcp://*:0", bind=True) == "tcp://*:0"
    assert check_endpoint("tcp://127.0.0.1:*", bind=True) == "tcp://127.0.0.1:*"
    assert check_endpoint(45000, bind=True) == "tcp://127.0.0.1:45000"
    assert check_endpoint("45000", bind=True) == "tcp://127.0.0.1:45000"
    with pytest.raises(EndpointError, match="cannot bind 110131: port 110131 is out of range"):
        check_endpoint(110131, bind=True)
    with pytest.raises(EndpointError, match="cannot bind tcp://127.0.0.1:110131"):
        check_endpoint("tcp://127.0.0.1:110131", bind=True)


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_clients_source_and_server_refuse_before_making_a_socket():
    before = _native_threads()  # a ZeroMQ context would start I/O threads
    bad = "tcp://127.0.0.1:110131"  # ZeroMQ itself would use port 110131 % 65536
    with pytest.raises(EndpointError, match="out of range"):
        Client(bad)
    with pytest.raises(EndpointError, match="out of range"):
        AsyncClient(bad)
    with pytest.raises(EndpointError, match="nothing after tcp://"):
        Stream.from_karabo_bridge("tcp://")  # at construction, not logged later by start()
    with pytest.raises(EndpointError, match="cannot bind tcp://127.0.0.1:110131"):
        BridgeServer(bad)
    with pytest.raises(EndpointError, match="cannot bind foo"):
        BridgeServer("foo")
    assert _native_threads() == before


def test_a_bare_port_still_binds_loopback(tcp_endpoint):
    port = int(tcp_endpoint.rsplit(":", 1)[1])
    with BridgeServer(port) as server:
        assert server.endpoint == tcp_endpoint
