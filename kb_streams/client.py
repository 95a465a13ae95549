"""Receive trains from a Karabo bridge: :class:`Client` (sync) and :class:`AsyncClient` (asyncio).

:class:`Client` is a drop-in replacement for ``karabo_bridge.Client``: same constructor, same
``next() -> (data, meta)``, iteration and context manager. On top of it: recovery of REQ clients
whose server died, request prefetch, ``latest=True`` to skip stale trains, a ``close()`` method,
a passed-in context left alone, and counters in :attr:`Client.stats`. Both clients share one core
(:mod:`kb_streams._client_core`); they differ only in how they wait.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import zmq
import zmq.asyncio

from ._client_core import ClientCore
from .protocol import Limits, Message
from .stats import StreamStats

__all__ = ["Client", "AsyncClient"]

T = TypeVar("T")

_PARAMETERS_DOC = """
    Parameters
    ----------
    endpoint
        Address of the bridge server to connect to, e.g. ``'tcp://host:4545'`` or ``'ipc:///tmp/kb'``.
        The client always connects; it never binds.
    sock
        ``'REQ'`` (the server is REP: one train per request), ``'SUB'`` (the server is PUB; all
        messages are subscribed to) or ``'PULL'`` (the server is PUSH).
    ser
        Deprecated, as in ``karabo_bridge``; only ``'msgpack'`` is supported.
    timeout
        Seconds to wait for a train before raising :class:`TimeoutError`; ``None`` waits forever.
        Large trains take time to arrive (about 0.1 s for 125 MB, 1 s for 1.4 GB): a timeout shorter
        than that never gets data.
    context
        A ``zmq.Context`` to create the sockets in. It is never closed by the client; a context the
        client creates itself is closed by :meth:`close`.
    prefetch
        REQ only: how many trains to have requested at once, counting the one being returned. The
        default 1 requests on demand, like ``karabo_bridge.Client``. With 2, the next train is
        requested as soon as one arrives, so it travels while you work on this one. At most
        ``prefetch`` trains are held in memory; more than 2 rarely helps, as the transfer is then
        the bottleneck.
    hwm
        ZeroMQ high-water mark (messages) of the data socket, 1 as in the reference. A larger value
        lets SUB/PULL queue more trains (see ``latest=True``), at the cost of memory.
    limits
        How much work one message may ask for (:class:`kb_streams.Limits`; the defaults by
        default). A message over them raises :class:`~kb_streams.ProtocolError` from that call,
        after as little work as one legitimate train's; with more parts than allowed, the
        connection is also dropped (and remade), which discards the rest of that message.

    Raises
    ------
    NotImplementedError
        If ``sock`` or ``ser`` is not supported.
    zmq.ZMQError
        If ``endpoint`` is not valid.
"""


async def _poll_async(items: list[tuple[zmq.Socket, int]], timeout_ms: int) -> list:
    """``zmq.zmq_poll`` for asyncio: wait until one of *items* is ready, at most *timeout_ms*."""
    poller = zmq.asyncio.Poller()
    for sock, flags in items:
        poller.register(sock, flags)
    return await poller.poll(timeout_ms)


class _FromCore(Generic[T]):
    """A read-only attribute of a client, answered by its :class:`ClientCore`."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, client: _ClientBase | None, owner: type | None = None) -> T:
        if client is None:
            return self  # type: ignore[return-value]  # the class's attribute, for autodoc
        return getattr(client._core, self.name)

    def __set__(self, client: _ClientBase, value: object) -> None:
        raise AttributeError(f"{type(client).__name__}.{self.name} is read-only")


class _ClientBase:
    """What both clients share: construction (one :class:`ClientCore`) and read-only options."""

    def __init__(
        self,
        endpoint: str,
        sock: str = "REQ",
        ser: str = "msgpack",
        timeout: float | None = None,
        context: zmq.Context | None = None,
        *,
        prefetch: int = 1,
        hwm: int = 1,
        limits: Limits | None = None,
    ) -> None:
        self._core = ClientCore(endpoint, sock, ser, timeout, context, prefetch, hwm, limits)

    endpoint = _FromCore[str]("The endpoint this client connects to.")
    sock = _FromCore[str]("Socket type name: ``'REQ'``, ``'SUB'`` or ``'PULL'``.")
    timeout = _FromCore[float | None]("Receive timeout in seconds (``None``: wait forever).")
    prefetch = _FromCore[int]("Number of trains requested at once (REQ).")
    context = _FromCore[zmq.Context]("The ZeroMQ context the sockets live in.")
    stats = _FromCore[StreamStats](
        "Counters: trains, bytes, gaps, decode errors, timeouts, reconnects, dropped.")
    closed = _FromCore[bool]("Whether :meth:`close` was called.")

    @property
    def _socket(self) -> zmq.Socket:
        """The data socket, as ``karabo_bridge.Client._socket`` (its tests check ``.closed``)."""
        return self._core.socket

    def close(self) -> None:
        """Close the socket, and the ZeroMQ context if this client created it.

        A context passed to the constructor is left open. Closing twice is harmless.
        """
        self._core.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.sock} {self.endpoint} ({state})>"


class Client(_ClientBase):
    __doc__ = (
        """Receive trains from a Karabo bridge server (drop-in for ``karabo_bridge.Client``).
"""
        + _PARAMETERS_DOC
        + """
    Notes
    -----
    Differences from ``karabo_bridge.Client``, all of them compatible:

    * a REQ client recovers when the server dies holding its request (it reconnects after a
      timeout or a dropped connection, see :mod:`kb_streams._client_core`); trains that had
      already arrived when a server closed are still handed out;
    * ``prefetch`` overlaps the transfer of the next train with your work on this one;
    * ``next(latest=True)`` returns the newest train, skipping older ones (``stats.dropped``);
      on SUB/PULL a thread then keeps reading the socket so no backlog of old trains forms;
    * a message that cannot be decoded raises :class:`~kb_streams.ProtocolError` from that call
      only; the next call returns the next good train;
    * ``ser != 'msgpack'`` raises :class:`NotImplementedError` (a subclass of ``Exception``, which
      the reference raises);
    * leaving a ``with`` block, or :meth:`close`, never closes a context you passed in, and a bad
      endpoint does not leak the context the client created;
    * the first client in a process tunes glibc's allocator so received trains reuse memory
      instead of page-faulting fresh buffers in (2-4x the trains/s on 268 MB trains on the
      2-core test machine; see :mod:`kb_streams._malloc`; ``KB_STREAMS_TUNE_MALLOC=0`` opts
      out).

    Use a client from one thread only (ZeroMQ sockets are not thread-safe).

    Examples
    --------
    >>> from kb_streams import Client
    >>> with Client("tcp://localhost:4545", timeout=10) as client:  # doctest: +SKIP
    ...     data, meta = client.next()
    ...     for source, source_meta in meta.items():
    ...         print(source, source_meta["timestamp.tid"], list(data[source]))

    Iterating never ends by itself (a timeout raises):

    >>> for data, meta in Client("tcp://localhost:4545", prefetch=2):  # doctest: +SKIP
    ...     process(data)
"""
    )

    def next_message(self, *, latest: bool = False) -> Message:
        """Receive the next train as a :class:`~kb_streams.protocol.Message`.

        Parameters
        ----------
        latest
            Return the newest train, dropping older ones that arrived meanwhile (counted in
            ``stats.dropped``, never in ``stats.gaps``). On a SUB or PULL client the first such
            call starts a thread that reads every train as it arrives and keeps only the newest
            (:mod:`kb_streams._newest`), so what you get is at most one train period plus its
            transfer time old, however slow you are; from then on every call gets the newest.
            On REQ, the replies already queued (``prefetch > 2``) are drained.

        Returns
        -------
        Message
            ``data``, ``meta``, ``protocol_version``, ``nbytes`` and ``train_id``. Arrays are
            zero-copy views on the received frames (protocol 2.x).

        Raises
        ------
        TimeoutError
            If no train arrived within ``timeout`` seconds.
        ProtocolError
            If the message received cannot be decoded.

        Examples
        --------
        >>> msg = client.next_message()  # doctest: +SKIP
        >>> msg.train_id, msg.protocol_version, msg.nbytes  # doctest: +SKIP
        (10000000042, '2.2', 276807426)
        """
        core = self._core
        deadline = core.begin()
        while (message := core.receive_or_time_out(latest, deadline)) is None:
            core.after_poll(zmq.zmq_poll(core.poll_items, core.remaining_ms(deadline)))
        return message

    def next(self, *, latest: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """Receive the next train as ``(data, meta)``, like ``karabo_bridge.Client.next()``.

        Returns
        -------
        data : dict
            ``{source: {key: value}}``.
        meta : dict
            ``{source: {'timestamp.tid': ..., ...}}``.

        Raises
        ------
        TimeoutError, ProtocolError
            As :meth:`next_message`.

        Examples
        --------
        >>> data, meta = client.next()  # doctest: +SKIP
        """
        message = self.next_message(latest=latest)
        return message.data, message.meta

    def __iter__(self) -> Client:
        return self

    def __next__(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.next()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    __doc__ = (
        """Receive trains from a Karabo bridge server in asyncio code.

    The same options and behaviour as :class:`Client`; ``next()`` and ``next_message()`` are
    coroutines. Works in any running asyncio event loop (including tornado's).
"""
        + _PARAMETERS_DOC
        + """
    Examples
    --------
    >>> import asyncio
    >>> from kb_streams import AsyncClient
    >>> async def main():
    ...     async with AsyncClient("tcp://localhost:4545", timeout=10, prefetch=2) as client:
    ...         async for data, meta in client:
    ...             print(list(meta))
    >>> asyncio.run(main())  # doctest: +SKIP
"""
    )

    async def next_message(self, *, latest: bool = False) -> Message:
        """Receive the next train as a :class:`~kb_streams.protocol.Message`.

        See :meth:`Client.next_message`.

        Examples
        --------
        >>> msg = await client.next_message(latest=True)  # doctest: +SKIP
        """
        core = self._core
        deadline = core.begin()
        while (message := core.receive_or_time_out(latest, deadline)) is None:
            core.after_poll(await _poll_async(core.poll_items, core.remaining_ms(deadline)))
        return message

    async def next(self, *, latest: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """Receive the next train as ``(data, meta)``. See :meth:`Client.next`.

        Examples
        --------
        >>> data, meta = await client.next()  # doctest: +SKIP
        """
        message = await self.next_message(latest=latest)
        return message.data, message.meta

    def __aiter__(self) -> AsyncClient:
        return self

    async def __anext__(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return await self.next()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
