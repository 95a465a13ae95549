"""The exceptions kb_streams raises.

Every error of ours derives from :class:`KBStreamsError`. A receive timeout stays the builtin
:class:`TimeoutError`, as ``karabo_bridge.Client`` raises it.
"""

from __future__ import annotations

import errno
from typing import Any

import zmq

__all__ = ["KBStreamsError", "ProtocolError", "SourceNameError", "PropertyNameError",
           "LayoutError", "EndpointError", "shorten"]

#: Longest text an error message quotes from a value (a message, a name, a dtype).
MAX_QUOTED = 200


def shorten(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` cut to about *limit* characters, saying how much was left out.

    Errors quote what they found on the wire; a hostile peer must not make them megabytes long.
    The repr of a large container is not built in full: only its first elements are.

    Examples
    --------
    >>> shorten("x" * 1000, 20)
    "'xxxxxxxxxxxxxxxxxx… (1002 characters)"
    >>> shorten([[f"f{i}", "u1"] for i in range(10**6)], 40)
    "[['f0', 'u1'], ['f1', 'u1'], ['f2', 'u1… (1000000 elements)"
    >>> shorten(12)
    '12'
    """
    if isinstance(value, (list, tuple, dict, set)) and len(value) > limit:
        head = list(value.items() if isinstance(value, dict) else value)[:limit]
        text = repr(type(value)(head) if not isinstance(value, dict) else dict(head))
        return f"{text[:limit - 1]}… ({len(value)} elements)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} characters)"


def _cut(text: str, limit: int = 2 * MAX_QUOTED) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} characters)"


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
        self.reason = message = _cut(message)
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
            where.append(f"source {shorten(self.source)}")
        if self.key is not None:
            where.append(f"key {shorten(self.key)}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


class _LookupError(KBStreamsError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SourceNameError(_LookupError):
    """A source the train does not have. A :class:`KeyError`, as in extra-data."""


class PropertyNameError(_LookupError):
    """A key a source does not have. A :class:`KeyError`, as in extra-data."""


class LayoutError(KBStreamsError, ValueError):
    """An array does not fit the layout asked for (or any layout known for its detector)."""


class BenchmarkNotFound(KBStreamsError):
    """``kb-streams bench``: no benchmarks directory, or no benchmark of that name."""


# -- internal signals: caught inside kb_streams, never raised to a caller -----------------------


class Invalid(ValueError):
    """Something in a message (or in data to encode) breaks the protocol; the text says what.

    The codec turns it into a :class:`ProtocolError` that also names part, source, key and train.
    """


class TooManyParts(Exception):
    """The message being received has more parts than allowed; the rest is still unread."""


class Unsendable(ValueError):
    """An item a bridge server cannot send; the text says why (the server logs and skips it)."""


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


class MissingExtraError(KBStreamsError, ImportError):
    """An optional part of kb_streams needs a package that is not installed; the message names
    the extra to install (e.g. ``pip install 'kb-streams[web]'``)."""
