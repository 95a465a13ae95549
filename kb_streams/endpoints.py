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
    if isinstance(endpoint, bool) or not isinstance(endpoint, (str, int)):
        raise EndpointError(endpoint, "expected a string such as tcp://HOST:PORT")
    text = str(endpoint).strip()
    if bind and text.isdigit():
        _check_port(endpoint, text, bind=True)
        return f"tcp://{BARE_PORT_HOST}:{int(text)}"
    scheme, sep, address = text.partition("://")
    if not sep:
        hint = " or a bare port number" if bind else ""
        raise EndpointError(endpoint, f"expected tcp://HOST:PORT, ipc://PATH or "
                                      f"inproc://NAME{hint}")
    if scheme.lower() not in SCHEMES:
        raise EndpointError(endpoint, f"unknown scheme {scheme!r} (use tcp, ipc or inproc)")
    if not address:
        raise EndpointError(endpoint, f"nothing after {scheme}://")
    if scheme.lower() == "tcp":
        _check_tcp(endpoint, address, bind=bind)
    return text


def _check_tcp(endpoint: str | int, address: str, *, bind: bool) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise EndpointError(endpoint, "expected tcp://HOST:PORT")
    _check_port(endpoint, port, bind=bind)
    _check_host(endpoint, host, bind=bind)


def _check_port(endpoint: str | int, port: str, *, bind: bool) -> None:
    if bind and port == "*":
        return
    if not port.isdigit():
        raise EndpointError(endpoint, f"port {port!r} is not a number" if port else "no port")
    lowest = 0 if bind else 1
    if not lowest <= int(port) <= MAX_PORT:
        raise EndpointError(endpoint, f"port {int(port)} is out of range "
                                      f"({lowest} to {MAX_PORT})")


def _check_host(endpoint: str | int, host: str, *, bind: bool) -> None:
    if host == "*":
        if bind:
            return
        raise EndpointError(endpoint, "host '*' is for binding; name the server's host")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EndpointError(endpoint, f"{host} is not an IPv6 address") from None
        return
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise EndpointError(endpoint, f"{host!r} is not an IPv4 address") from None
        return
    if not _HOSTNAME.fullmatch(host):
        raise EndpointError(endpoint, f"{host!r} is not a host name or address")
