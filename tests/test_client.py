"""kb_streams.Client and AsyncClient against real peers: the reference karabo_bridge servers and
raw pyzmq servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator

import karabo_bridge
import numpy as np
import pytest
import zmq

from kb_streams import ProtocolError
from kb_streams.client import AsyncClient, Client

DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
XGM = "SA1_XTD2_XGM/XGM/DOOCS"
WAIT = 5.0  # upper bound on any wait for something that should happen promptly


def make_train(tid: int) -> tuple[dict, dict]:
    """A small train: one detector module with a few pulses, one slow source."""
    data = {
        DET: {
            "image.data": np.arange(2 * 8 * 4, dtype=np.float32).reshape(2, 8, 4) + tid,
            "image.cellId": np.arange(2, dtype=np.uint16),
            "header.pulseCount": 2,
        },
        XGM: {"beamPosition.ixPos": 1.5, "pulseEnergy.photonFlux": float(tid % 7)},
    }
    meta = {
        src: {"source": src, "timestamp.tid": tid, "timestamp.sec": "1700000000",
              "timestamp.frac": "500000000000000000", "timestamp": 1700000000.5}
        for src in data
    }
    return data, meta


def frames_of(tid: int, protocol_version: str = "2.2") -> list:
    return karabo_bridge.serialize(*make_train(tid), protocol_version=protocol_version)


def assert_same(actual, expected, path="") -> None:
    """Deep equality for nested dicts/lists with numpy arrays."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), path
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        np.testing.assert_array_equal(actual, expected, err_msg=path)
    elif isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}/{key}")
    else:
        assert type(actual) is type(expected) and actual == expected, path


def reference_roundtrip(tid: int, protocol_version: str) -> tuple[dict, dict]:
    return karabo_bridge.deserialize(frames_of(tid, protocol_version))


class RawServer:
    """A raw pyzmq server in a thread, scripted per request/message.

    ``REP``: for each request, ``script(i)`` returns the frames to reply, or ``None`` to close the
    socket without replying (the server "dies holding the request"); then, if ``rebind`` is set, it
    binds again and answers every later request with ``rebind(i)``. ``PUSH``/``PUB``: sends every
    item of ``messages`` once. Request arrival times are recorded.
    """

    def __init__(self, endpoint: str, kind: str = "REP", *,
                 script: Callable[[int], list | None] | None = None,
                 rebind: Callable[[int], list] | None = None,
                 messages: list[list] | None = None) -> None:
        self.endpoint, self.kind = endpoint, kind
        self.script, self.rebind, self.messages = script, rebind, messages
        self.requests: list[float] = []
        self.cond = threading.Condition()
        self.died = threading.Event()
        self.sent_all = threading.Event()
        self._stop = threading.Event()
        self.ctx = zmq.Context()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(WAIT)
        self.ctx.destroy(linger=0)

    def wait_requests(self, n: int, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def _bind(self, kind: str) -> zmq.Socket:
        sock = self.ctx.socket(getattr(zmq, kind))
        sock.linger = 0
        sock.sndhwm = 100
        deadline = time.monotonic() + WAIT
        while True:  # a just-closed socket releases its address asynchronously
            try:
                sock.bind(self.endpoint)
                return sock
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        sock = self._bind(self.kind)
        if self.kind != "REP":
            for frames in self.messages:
                sock.send_multipart(frames)
            self.sent_all.set()
            self._stop.wait(30)
            sock.close()
            return
        script, i = self.script, 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not sock.poll(20):
                continue
            sock.recv()
            with self.cond:
                self.requests.append(time.monotonic())
                self.cond.notify_all()
            reply = script(i)
            i += 1
            if reply is None:
                sock.close()
                self.died.set()
                if self.rebind is None:
                    return
                sock, script, i = self._bind("REP"), self.rebind, 0
                continue
            sock.send_multipart(reply)
        sock.close()


@pytest.fixture
def reference_server() -> Iterator[Callable[..., karabo_bridge.ServerInThread]]:
    """Start karabo_bridge.ServerInThread instances; stop them all at teardown.

    Call ``server.stop()`` (made idempotent) *before* closing the client of a PUSH server: the
    reference Sender polls, then sends blocking, so a PULL peer leaving in between would leave its
    thread blocked in send_multipart() forever, and stop() waiting for it.
    """
    servers = []

    def start(endpoint: str, sock: str, protocol_version: str = "2.2"):
        server = karabo_bridge.ServerInThread(endpoint, sock=sock,
                                              protocol_version=protocol_version)
        server.start()
        reference_stop = server.stop

        def stop_once():
            if server in servers:
                servers.remove(server)
                reference_stop()

        server.stop = stop_once
        servers.append(server)
        return server

    yield start
    for server in list(servers):
        server.stop()


def feed_until(server, stop: threading.Event, first_tid: int = 1000) -> threading.Thread:
    """Feed trains with increasing train IDs until ``stop`` is set (PUB drops until subscribed)."""

    def run():
        for tid in range(first_tid, first_tid + 2000):
            if stop.is_set():
                return
            try:
                server.feed(*make_train(tid), timeout=0.05)
            except Exception:  # queue.Full: the client is not taking trains right now
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- constructor, context, timeout ---------------------------------------------------------------


def test_constructor_errors(tcp_endpoint):
    with pytest.raises(NotImplementedError, match="Unsupported socket: PAIR"):
        Client(tcp_endpoint, sock="PAIR")
    with pytest.raises(NotImplementedError, match="Unsupported socket: DEALER"):
        AsyncClient(tcp_endpoint, sock="DEALER")
    with pytest.raises(NotImplementedError):  # the reference raises a plain Exception: still caught
        Client(tcp_endpoint, ser="pickle")
    with pytest.raises(ValueError):
        Client(tcp_endpoint, prefetch=0)


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_bad_endpoint_raises_zmqerror_without_leaking_a_context():
    kept = []  # keep the errors (and their tracebacks) alive, as a caller's handler might
    before = _native_threads()
    for _ in range(3):
        with pytest.raises(zmq.ZMQError) as info:
            Client("foo")
        kept.append(info)
    assert _native_threads() == before

    # Control: the reference leaks the context it created (ZeroMQ I/O and reaper threads stay).
    leaked = []
    for _ in range(3):
        with pytest.raises(zmq.ZMQError) as info:
            karabo_bridge.Client("foo")
        leaked.append(_reference_client_in(info.tb))
    assert _native_threads() > before
    for ref in leaked:  # otherwise garbage collection of these may hang in Context.term()
        ref._socket.close(linger=0)
        ref._context.term()


def _reference_client_in(tb):
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, karabo_bridge.Client):
            return obj
        tb = tb.tb_next
    raise AssertionError("no karabo_bridge.Client in the traceback")


def test_unclosed_client_in_a_reference_cycle_is_cleaned_up(tcp_endpoint):
    # pyzmq alone would hang here: the sockets' weak references are cleared before the context's
    # finalizer runs Context.term(), which then waits for sockets nobody can close.
    before = _native_threads()
    cycle = [Client(tcp_endpoint), AsyncClient(tcp_endpoint, sock="PULL")]
    cycle.append(cycle)
    del cycle
    gc.collect()
    assert _native_threads() <= before


@pytest.mark.parametrize("sock", ["REQ", "SUB", "PULL"])
def test_timeout_message(tcp_endpoint, sock):
    with Client(tcp_endpoint, sock=sock, timeout=0.1) as client:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            client.next()
        assert 0.09 <= time.monotonic() - start < 2
        expected = f"No data received from {tcp_endpoint} in the last 100 ms"
        assert str(info.value).startswith(expected)
        assert client.stats.timeouts == 1


def test_passed_context_survives_with_block_and_own_context_is_closed(tcp_endpoint):
    ctx = zmq.Context()
    try:
        with Client(tcp_endpoint, context=ctx) as client:
            assert client.context is ctx
        assert client.closed and not ctx.closed
        ctx.socket(zmq.PULL).close()  # still usable

        with Client(tcp_endpoint) as own:
            pass
        assert own.context.closed
        own.close()  # closing twice is harmless
        with pytest.raises(RuntimeError, match="closed"):
            own.next()

        # Control: the reference destroys the context it was given.
        ctx2 = zmq.Context()
        with karabo_bridge.Client(tcp_endpoint, context=ctx2):
            pass
        assert ctx2.closed
    finally:
        ctx.term()


# -- against the reference servers ----------------------------------------------------------------


@pytest.mark.parametrize("protocol_version", ["2.2", "1.0"])
@pytest.mark.parametrize("server_sock, sock", [("REP", "REQ"), ("PUSH", "PULL"), ("PUB", "SUB")])
def test_against_reference_server(reference_server, tcp_endpoint, server_sock, sock,
                                  protocol_version):
    server = reference_server(tcp_endpoint, server_sock, protocol_version)
    stop = threading.Event()
    feeder = feed_until(server, stop)
    with Client(tcp_endpoint, sock=sock, timeout=WAIT) as client:
        try:
            tids = []
            for data, meta in client:  # iteration: never stops by itself
                tid = meta[DET]["timestamp.tid"]
                assert_same((data, meta), reference_roundtrip(tid, protocol_version))
                tids.append(tid)
                if len(tids) == 3:
                    break
            array = data[DET]["image.data"]
            if protocol_version == "2.2":
                assert not array.flags.owndata and array.flags.writeable  # a view on the frame
            assert client.stats.protocol_version == protocol_version
        finally:
            stop.set()
            feeder.join(WAIT)
            server.stop()  # while our client is still connected (see reference_server)
    assert tids == sorted(tids) and len(set(tids)) == 3
    assert client.stats.trains == 3 and client.stats.last_train_id == tids[-1]
    nbytes = sum(memoryview(f).nbytes for f in frames_of(tids[-1], protocol_version))
    assert client.stats.bytes == 3 * nbytes


def test_ipc_and_simulator(ipc_endpoint):
    """The reference simulator over ipc; our client and the reference client see the same keys."""
    server = karabo_bridge.server.SimServerInThread(
        ipc_endpoint, sock="REP", detector="AGIPDModule", raw=True, datagen="zeros",
        data_like="file", debug=False)
    server.start()
    try:
        with Client(ipc_endpoint, timeout=WAIT) as ours, \
                karabo_bridge.Client(ipc_endpoint, timeout=WAIT) as ref:
            data, meta = ours.next()
            ref_data, ref_meta = ref.next()
            assert data.keys() == ref_data.keys() == {DET}
            assert meta[DET].keys() == ref_meta[DET].keys()
            for key, value in ref_data[DET].items():
                if isinstance(value, np.ndarray):
                    assert data[DET][key].shape == value.shape
                    assert data[DET][key].dtype == value.dtype
            assert data[DET]["image.data"].shape == (64, 512, 128)
            assert ours.stats.last_train_id == meta[DET]["timestamp.tid"]
    finally:
        server.stop()


# -- better than the reference ---------------------------------------------------------------------


def test_req_recovers_when_server_dies_holding_the_request(tcp_endpoint):
    def die(i):
        return None

    # Ours: the request is taken by a server that dies; we time out; a new server comes up.
    with RawServer(tcp_endpoint, script=die) as dying:
        client = Client(tcp_endpoint, timeout=0.3)
        with pytest.raises(TimeoutError):
            client.next()
        assert dying.died.wait(WAIT)
    with RawServer(tcp_endpoint, script=lambda i: frames_of(500 + i)):
        start = time.monotonic()
        data, meta = client.next()
        assert time.monotonic() - start < WAIT
        assert meta[DET]["timestamp.tid"] == 500
        assert client.stats.timeouts == 1 and client.stats.reconnects >= 1
        client.close()

    # Control: the reference client stays stuck in the same situation.
    with RawServer(tcp_endpoint, script=die) as dying:
        ref = karabo_bridge.Client(tcp_endpoint, timeout=0.3)
        with pytest.raises(TimeoutError):
            ref.next()
        assert dying.died.wait(WAIT)
    with RawServer(tcp_endpoint, script=lambda i: frames_of(600 + i)) as healthy:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                ref.next()
        assert healthy.requests == []
        with karabo_bridge.Client(tcp_endpoint, timeout=WAIT) as fresh:  # the server is fine
            assert fresh.next()[1][DET]["timestamp.tid"] == 600
        ref._context.destroy(linger=0)


def test_req_recovers_from_dropped_connection_before_the_timeout(tcp_endpoint):
    """The socket monitor notices the server went away: no timeout needed."""
    with RawServer(tcp_endpoint, script=lambda i: None,
                   rebind=lambda i: frames_of(700 + i)) as server:
        with Client(tcp_endpoint, timeout=WAIT) as client:
            start = time.monotonic()
            data, meta = client.next()
            assert time.monotonic() - start < WAIT / 2
            assert server.died.is_set()
            assert meta[DET]["timestamp.tid"] == 700
            assert len(server.requests) == 2  # the lost request, and one to the new server
            assert client.stats.timeouts == 0 and client.stats.reconnects == 1


@pytest.mark.parametrize("prefetch", [1, 2, 3])
def test_prefetch_requests_the_next_train_before_next_is_called(tcp_endpoint, prefetch):
    with RawServer(tcp_endpoint, script=lambda i: frames_of(800 + i)) as server:
        with Client(tcp_endpoint, timeout=WAIT, prefetch=prefetch) as client:
            for call in range(1, 4):
                assert client.next()[1][DET]["timestamp.tid"] == 800 + call - 1
                if prefetch == 1:
                    # like the reference: nothing is requested until next() is called again
                    assert not server.wait_requests(call + 1, timeout=0.2)
                else:
                    # prefetch - 1 requests go out as soon as a train arrives, before next()
                    assert server.wait_requests(call + prefetch - 1)
                assert len(server.requests) == call + prefetch - 1  # and no more


@pytest.mark.parametrize("server_sock, sock", [("REP", "REQ"), ("PUSH", "PULL")])
def test_malformed_message_raises_once_then_next_train(tcp_endpoint, server_sock, sock):
    bad = [b"\xc1\xc1", b"\x80"]  # 0xc1 is never valid msgpack
    messages = [frames_of(10), bad, frames_of(11), frames_of(14), frames_of(15), frames_of(20)]
    kwargs = (dict(script=lambda i: messages[i]) if server_sock == "REP"
              else dict(messages=messages))
    with RawServer(tcp_endpoint, server_sock, **kwargs):
        with Client(tcp_endpoint, sock=sock, timeout=WAIT) as client:
            assert client.next()[1][DET]["timestamp.tid"] == 10
            with pytest.raises(ProtocolError):
                client.next()
            tids = [client.next()[1][DET]["timestamp.tid"] for _ in range(4)]
            assert tids == [11, 14, 15, 20]
            stats = client.stats
            assert stats.decode_errors == 1 and stats.trains == 5
            assert stats.gaps == 2 + 4 and stats.gap_events == 2


def test_sub_latest_returns_newest_queued_train_and_counts_dropped():
    # inproc: a sent message is in the subscriber's queue when send returns, so exactly what is
    # queued is known (over TCP that depends on timing). The keep-newest thread may still be
    # taking trains 2-6 off the socket when next() is called: then a later call returns 6.
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.sndhwm = 100
    pub.bind("inproc://kb-streams-latest")
    try:
        with Client("inproc://kb-streams-latest", sock="SUB", context=ctx, hwm=100,
                    timeout=0.02) as client:
            for _ in range(100):  # wait until the subscription has reached the publisher
                pub.send_multipart(frames_of(1))
                try:
                    client.next(latest=True)
                    break
                except TimeoutError:
                    pass
            client.stats.timeouts = 0
            for tid in range(2, 7):
                pub.send_multipart(frames_of(tid))
            seen = [client.next_message(latest=True).train_id]
            while seen[-1] != 6:
                seen.append(client.next_message(latest=True).train_id)
                assert len(seen) <= 5
            assert seen == sorted(seen)
            assert client.stats.dropped == 5 - len(seen)
            assert client.stats.gaps == 0  # discarded trains are not gaps
            with pytest.raises(TimeoutError):
                client.next(latest=True)  # nothing left
    finally:
        pub.close()
        ctx.term()


def test_pull_latest_over_tcp_never_returns_older_trains(reference_server, tcp_endpoint):
    server = reference_server(tcp_endpoint, "PUSH")
    for tid in range(30, 36):
        server.feed(*make_train(tid))
    with Client(tcp_endpoint, sock="PULL", hwm=10, timeout=WAIT) as client:
        try:
            seen = []
            while not seen or seen[-1] < 35:
                seen.append(client.next_message(latest=True).train_id)
                assert len(seen) <= 6
        finally:
            server.stop()
    assert seen == sorted(seen)
    assert client.stats.trains + client.stats.dropped == 6


# -- AsyncClient ----------------------------------------------------------------------------------


@pytest.mark.parametrize("server_sock, sock", [("REP", "REQ"), ("PUSH", "PULL")])
def test_async_client_against_reference_server(reference_server, tcp_endpoint, server_sock, sock):
    server = reference_server(tcp_endpoint, server_sock, "2.2")
    for tid in range(40, 46):
        server.feed(*make_train(tid))

    async def main():
        async with AsyncClient(tcp_endpoint, sock=sock, timeout=WAIT, prefetch=2) as client:
            try:
                msg = await client.next_message()
                assert_same((msg.data, msg.meta), reference_roundtrip(40, "2.2"))
                tids = []
                async for _data, meta in client:
                    tids.append(meta[DET]["timestamp.tid"])
                    if len(tids) == 2:
                        break
                return tids, client.stats
            finally:
                server.stop()

    tids, stats = asyncio.run(main())
    assert tids == [41, 42] and stats.trains == 3


def test_async_timeout_recovery_and_context(tcp_endpoint):
    import zmq.asyncio

    ctx = zmq.asyncio.Context()

    async def main():
        client = AsyncClient(tcp_endpoint, timeout=0.3, context=ctx)
        try:
            with RawServer(tcp_endpoint, script=lambda i: None) as dying:
                with pytest.raises(TimeoutError, match="No data received from"):
                    await client.next()
                assert dying.died.wait(WAIT)
            with RawServer(tcp_endpoint, script=lambda i: frames_of(900 + i)):
                data, meta = await client.next()
        finally:
            client.close()
        return meta, client.stats

    try:
        meta, stats = asyncio.run(main())
        assert meta[DET]["timestamp.tid"] == 900
        assert stats.timeouts == 1 and stats.reconnects >= 1
        assert not ctx.closed
    finally:
        ctx.term()


def test_async_client_runs_on_tornado_loop(reference_server, tcp_endpoint):
    from tornado.ioloop import IOLoop

    server = reference_server(tcp_endpoint, "REP")
    server.feed(*make_train(77))

    async def main():
        async with AsyncClient(tcp_endpoint, timeout=WAIT) as client:
            return (await client.next())[1][DET]["timestamp.tid"]

    loop = IOLoop(make_current=False)
    try:
        assert loop.run_sync(main, timeout=WAIT * 2) == 77
    finally:
        loop.close()
