"""The exceptions kb_streams raises.

Every error of ours derives from :class:`KBStreamsError`. A receive timeout stays the builtin
:class:`TimeoutError`, as ``karabo_bridge.Client`` raises it.
"""

from __future__ import annotations


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


class MissingExtraError(KBStreamsError, ImportError):
    """An optional part of kb_streams needs a package that is not installed; the message names
    the extra to install (e.g. ``pip install 'kb-streams[web]'``)."""
