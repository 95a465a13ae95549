"""Checking a ZeroMQ endpoint before any socket exists.

ZeroMQ accepts more than it should: ``tcp://127.0.0.1:110131`` binds port 44595 (the port modulo
65536), and ``foo`` or ``tcp://`` fail only deep inside a socket call. :func:`check_endpoint` is the
one place that says what an endpoint may be; the clients, the bridge source, the server and every
``kb-streams`` command call it first and raise :class:`~kb_streams.errors.EndpointError`.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import EndpointError

__all__ = ["EndpointError", "check_endpoint"]

SCHEMES = ("tcp", "ipc", "inproc")
MAX_PORT = 65535
#: Where a bare port number is bound (servers only).
BARE_PORT_HOST = "127.0.0.1"

_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def check_endpoint(endpoint: str | int, *, bind: bool = False) -> str:
    """``endpoint`` checked (scheme, host, port range), as ZeroMQ should be given it.

    Parameters
    ----------
    endpoint
        ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.
    bind
        Check it for binding (a server): the host may be ``*`` and the port ``0`` or ``*`` (a free
        port), and a bare port number (an int or a string of digits) means that port on
        127.0.0.1. For connecting, the port must be 1 to 65535.

    Returns
    -------
    str
        The endpoint, stripped of surrounding blanks (a bare port written out in full).

    Raises
    ------
    EndpointError
        What is wrong with it, in one line (also a :class:`ValueError`).

    Examples
    --------
    >>> check_endpoint("tcp://exflonc12:45000")
    'tcp://exflonc12:45000'
    >>> check_endpoint(45000, bind=True), check_endpoint("ipc:///tmp/bridge")
    ('tcp://127.0.0.1:45000', 'ipc:///tmp/bridge')
    >>> check_endpoint("tcp://127.0.0.1:110131")
    Traceback (most recent call last):
    kb_streams.errors.EndpointError: bad endpoint 'tcp://127.0.0.1:110131': port 110131 is out of \
range (1 to 65535)
    """
    reason = _problem(endpoint, bind=bind)
    if reason is not None:
        raise EndpointError(endpoint, reason, bind=bind)
    text = str(endpoint).strip()
    return f"tcp://{BARE_PORT_HOST}:{int(text)}" if text.isdigit() else text


def _problem(endpoint: str | int, *, bind: bool) -> str | None:
    """What is wrong with ``endpoint``, or None."""
    if isinstance(endpoint, bool) or not isinstance(endpoint, (str, int)):
        return "expected a string such as tcp://HOST:PORT"
    text = str(endpoint).strip()
    if bind and text.isdigit():
        return _port_problem(text, bind=True)
    scheme, sep, address = text.partition("://")
    if not sep:
        return ("expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
                + (" or a bare port number" if bind else ""))
    if scheme.lower() not in SCHEMES:
        return f"unknown scheme {scheme!r} (use tcp, ipc or inproc)"
    if not address:
        return f"nothing after {scheme}://"
    if scheme.lower() != "tcp":
        return None
    host, sep, port = address.rpartition(":")
    if not sep:
        return "no port (expected tcp://HOST:PORT)"
    if not host:
        return "no host (expected tcp://HOST:PORT)"
    return _port_problem(port, bind=bind) or _host_problem(host, bind=bind)


def _port_problem(port: str, *, bind: bool) -> str | None:
    if bind and port == "*":
        return None
    if not port.isdigit():
        return f"port {port!r} is not a number" if port else "no port"
    lowest = 0 if bind else 1
    if not lowest <= int(port) <= MAX_PORT:
        return f"port {int(port)} is out of range ({lowest} to {MAX_PORT})"
    return None


def _host_problem(host: str, *, bind: bool) -> str | None:
    if host == "*":
        return None if bind else "host '*' is for binding; name the server's host"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not an IPv4 address"
        return None
    if not _HOSTNAME.fullmatch(host):
        return f"{host!r} is not a host name or address"
    return None
