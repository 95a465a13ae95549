"""Sans-I/O codec for Karabo bridge messages (protocol 1.0 and 2.2; 2.0/2.1 tolerated).

Nothing here touches a socket: messages are sequences of buffers (``bytes``, ``memoryview``,
``zmq.Frame`` or anything with the buffer protocol) in, dictionaries out, and back.

CONTRACT STUB: the protocol helper replaces the bodies; the names and signatures below are what the
rest of the package builds on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError

__all__ = ["Message", "decode", "encode", "serialize", "deserialize", "ProtocolError"]

SourceData = dict[str, dict[str, Any]]


@dataclass
class Message:
    """One decoded train, as it came off the wire.

    Attributes
    ----------
    data
        ``{source: {key: value}}``; arrays are zero-copy views on the received frames (2.x).
    meta
        ``{source: {'source', 'timestamp', 'timestamp.sec', 'timestamp.frac', 'timestamp.tid', ...}}``.
    protocol_version
        ``'1.0'``, ``'2.0'``, ``'2.1'`` or ``'2.2'``, as detected from the message.
    nbytes
        Total size of the message's parts in bytes.
    """

    data: SourceData
    meta: SourceData
    protocol_version: str
    nbytes: int

    @property
    def train_id(self) -> int | None:
        """The train ID (``timestamp.tid``) of the first source that has one, else ``None``."""
        for source_meta in self.meta.values():
            tid = source_meta.get("timestamp.tid")
            if tid is not None:
                return int(tid)
        return None


def decode(frames: Sequence[Any]) -> Message:
    """Decode one bridge message (all its ZeroMQ parts) into a :class:`Message`."""
    raise NotImplementedError


def encode(
    data: SourceData,
    metadata: SourceData | None = None,
    *,
    protocol_version: str = "2.2",
    dummy_timestamps: bool = False,
) -> list[Any]:
    """Encode one train into the list of message parts to send with ``send_multipart``."""
    raise NotImplementedError


def serialize(
    data: SourceData,
    metadata: SourceData | None = None,
    protocol_version: str = "2.2",
    dummy_timestamps: bool = False,
) -> list[Any]:
    """Drop-in for ``karabo_bridge.serialize``."""
    raise NotImplementedError


def deserialize(msg: Sequence[Any]) -> tuple[SourceData, SourceData]:
    """Drop-in for ``karabo_bridge.deserialize``: ``(data, meta)``."""
    raise NotImplementedError
