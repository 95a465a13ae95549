"""The bridge server's socket: which ZeroMQ type, its bounds, and binding it.

One socket with two views: the asyncio socket owns it (closing it also unhooks it from an event
loop), and a plain shadow of it serves ``serve()`` and ``start()``. A REP socket queues at most
:data:`REP_SNDHWM` replies per reader, and a request over :data:`MAX_REQUEST_BYTES`
disconnects its sender unread.
"""

from __future__ import annotations

import socket

import zmq
import zmq.asyncio

from .endpoints import check_endpoint

__all__ = ["SOCKET_TYPES", "DEFAULT_ENDPOINT", "normalise_endpoint", "bind_server_socket"]

SOCKET_TYPES = {"REP": zmq.REP, "PUB": zmq.PUB, "PUSH": zmq.PUSH}
DEFAULT_ENDPOINT = "tcp://127.0.0.1:0"

# A REP socket queues this many replies per reader at most (beyond, ZeroMQ drops them): room for
# a client's prefetch, and a bound on what a reader that never reads can pin (a few trains).
REP_SNDHWM = 4
MAX_REQUEST_BYTES = 64 * 1024  # MAXMSGSIZE: a peer sending more is disconnected unread


def normalise_endpoint(endpoint: str | int | None) -> str:
    """The endpoint to bind: ``None`` is 127.0.0.1 on a free port, else as checked."""
    if endpoint is None:
        return DEFAULT_ENDPOINT
    return check_endpoint(endpoint, bind=True)


def bind_server_socket(context: zmq.Context, sock_name: str, endpoint: str,
                       hwm: int) -> tuple[zmq.asyncio.Socket, zmq.Socket, str]:
    """Make a server socket of type ``sock_name`` and bind it to ``endpoint``.

    Returns
    -------
    tuple
        The asyncio socket (the owner), its plain shadow, and the endpoint actually bound (the
        real port when port 0 was asked for; a wildcard host as this host's name).

    Raises
    ------
    zmq.ZMQError
        Naming the endpoint, when it cannot be bound; the socket is closed by then.
    """
    asocket = zmq.asyncio.Socket(context, SOCKET_TYPES[sock_name])
    plain = zmq.Socket.shadow(asocket.underlying)
    try:
        plain.linger = 0
        plain.set_hwm(hwm)
        plain.maxmsgsize = MAX_REQUEST_BYTES
        if sock_name == "REP":
            plain.sndhwm = max(hwm, REP_SNDHWM)
        plain.bind(endpoint)
    except zmq.ZMQError as exc:
        asocket.close(linger=0)
        raise zmq.ZMQError(exc.errno, f"cannot bind {endpoint}: {exc}") from None
    bound = plain.getsockopt_string(zmq.LAST_ENDPOINT)
    return asocket, plain, bound.replace("0.0.0.0", socket.gethostname())
