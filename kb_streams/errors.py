"""The exceptions kb_streams raises.

Every error of ours derives from :class:`KBStreamsError`. A receive timeout stays the builtin
:class:`TimeoutError`, as ``karabo_bridge.Client`` raises it.
"""

from __future__ import annotations

import errno

import zmq


class KBStreamsError(Exception):
    """Root of every kb_streams exception."""


class ProtocolError(KBStreamsError):
    """A bridge message that cannot be decoded (or data that cannot be encoded).

    Parameters
    ----------
    message
        What is wrong, in words.
    part
        Index of the ZeroMQ message part at fault, when known.
    source, key
        Source name and key at fault, when known.
    train_id
        Train ID of the message, when it could be read.

    Examples
    --------
    >>> err = ProtocolError("odd number of parts", part=4, source="SA1_XTD2_XGM/XGM/DOOCS:output")
    >>> print(err)
    odd number of parts (part 4, source 'SA1_XTD2_XGM/XGM/DOOCS:output')
    """

    def __init__(
        self,
        message: str,
        *,
        part: int | None = None,
        source: str | None = None,
        key: str | None = None,
        train_id: int | None = None,
    ) -> None:
        self.reason = message
        self.part = part
        self.source = source
        self.key = key
        self.train_id = train_id
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.train_id is not None:
            where.append(f"train {self.train_id}")
        if self.part is not None:
            where.append(f"part {self.part}")
        if self.source is not None:
            where.append(f"source {self.source!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


class EndpointError(KBStreamsError, ValueError, zmq.ZMQError):
    """An endpoint that is not a valid ZeroMQ address (found before any socket is made).

    Also a :class:`zmq.ZMQError` (``errno`` EINVAL), as ZeroMQ itself would raise for most bad
    endpoints, so that code written for ``karabo_bridge.Client`` still catches it.

    Parameters
    ----------
    endpoint
        The endpoint as given.
    reason
        What is wrong with it, in words.
    bind
        Whether it was given to bind (a server) rather than to connect.

    Examples
    --------
    >>> print(EndpointError("tcp://", "nothing after tcp://"))
    bad endpoint 'tcp://': nothing after tcp://
    >>> print(EndpointError("foo", "no scheme", bind=True))
    cannot bind foo: no scheme
    """

    def __init__(self, endpoint: object, reason: str, *, bind: bool = False) -> None:
        self.endpoint = endpoint
        self.reason = reason
        self.errno = errno.EINVAL
        self.strerror = (f"cannot bind {endpoint}: {reason}" if bind
                         else f"bad endpoint {endpoint!r}: {reason}")
        Exception.__init__(self, self.strerror)
