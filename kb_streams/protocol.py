"""Sans-I/O codec for Karabo bridge messages (protocol 1.0 and 2.2; 2.0/2.1 tolerated).

Nothing here touches a socket: messages are sequences of buffers (``bytes``, ``memoryview``,
``zmq.Frame`` or anything with the buffer protocol) in, dictionaries out, and back. Every transport
(the sync and async clients, the server, tests) shares this one codec.

Wire formats, in short:

* **1.0**: one part, a msgpack map ``{source: {key: value}}``; metadata inside each source under
  ``'metadata'``; arrays as msgpack-numpy maps.
* **2.2**: (header, payload) pairs. Per source a ``'msgpack'`` header carrying ``metadata`` and a
  payload of the non-array values, then one ``'array'`` header (``path``, ``dtype``, ``shape``) and
  the raw C-order bytes per array.
* **2.0 / 2.1** (historical): 2.2 framing, metadata left in the data, nested under ``'metadata'``
  (2.0) or flattened as ``'metadata.*'`` keys (2.1).

The private pieces live in ``_protocol_decode``, ``_protocol_encode``, ``_protocol_arrays``,
``_protocol_limits`` (:class:`Limits`: how much work one message may ask for) and
``_protocol_meta`` (where a source's metadata and the train ID are, in every version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._protocol_decode import decode_parts
from ._protocol_encode import encode_train
from ._protocol_limits import DEFAULT_LIMITS, Limits
from ._protocol_meta import find_train_id, first_train_id, metadata_in_data, source_meta
from .errors import ProtocolError

__all__ = ["Message", "Limits", "decode", "encode", "serialize", "deserialize", "ProtocolError",
           "find_train_id", "source_meta", "metadata_in_data"]

SourceData = dict[str, dict[str, Any]]


@dataclass
class Message:
    """One decoded train, as it came off the wire.

    Attributes
    ----------
    data
        ``{source: {key: value}}``; arrays are zero-copy views on the received frames (2.x).
    meta
        ``{source: {'source', 'timestamp', 'timestamp.sec', 'timestamp.frac',
        'timestamp.tid', ...}}``.
    protocol_version
        ``'1.0'``, ``'2.0'``, ``'2.1'`` or ``'2.2'``, as detected from the message.
    nbytes
        Total size of the message's parts in bytes.

    Examples
    --------
    >>> msg = decode(encode({"src": {"x": 1}}, {"src": {"timestamp.tid": 10}}))
    >>> msg.train_id, msg.protocol_version, msg.data["src"]["x"]
    (10, '2.2', 1)
    """

    data: SourceData
    meta: SourceData
    protocol_version: str
    nbytes: int

    @property
    def train_id(self) -> int | None:
        """The train ID (``timestamp.tid``) of the first source that has one, else ``None``."""
        return first_train_id(self.meta.values())


def decode(frames: Sequence[Any], limits: Limits | None = None) -> Message:
    """Decode one bridge message (all its ZeroMQ parts) into a :class:`Message`.

    Parameters
    ----------
    frames
        The message parts: ``bytes``, ``bytearray``, ``memoryview``, ``zmq.Frame`` (as returned by
        ``recv_multipart(copy=False)``) or anything else with the buffer protocol.
    limits
        How much work the message may ask for (:class:`Limits`; by default its defaults):
        parts, header size, dtype fields, msgpack container lengths, total bytes. Each is
        checked before the work it bounds, so an oversized message is refused in microseconds.

    Returns
    -------
    Message
        One part is read as protocol 1.0: ``meta[src]`` is ``data[src]['metadata']``, which stays
        in ``data`` as ``karabo_bridge`` leaves it, and arrays are read-only views on the bytes
        msgpack produced. Two or more parts are read as 2.x pairs, in any order (an array part
        may come before its source's ``'msgpack'`` part; a source with array parts only gets
        empty metadata). Arrays are zero-copy views on the parts, writeable when the part is.
        Metadata comes from the ``'msgpack'`` header (2.2) or, when a header has none, from the
        data's ``'metadata'`` map (2.0) or ``'metadata.*'`` keys (2.1, exposed without the prefix);
        ``protocol_version`` says which. Legacy ``'ImageData'`` parts become
        ``data[src][path] = {**params, 'Data': array}``.

    Raises
    ------
    ProtocolError
        For any malformed message, naming the part, source, key and train ID where known. No
        other exception escapes. Pickled data, object dtypes and msgpack extension types are
        refused, never executed; sizes claimed by headers are checked against the bytes received
        before anything is built from them; anything over *limits* is refused before it is
        decoded. Error messages quote at most a few hundred characters of what was received.

    Examples
    --------
    >>> import numpy as np
    >>> parts = encode({"det": {"image.data": np.arange(6, dtype="u2").reshape(2, 3)}},
    ...                {"det": {"timestamp.tid": 1000}})
    >>> msg = decode([bytearray(p) for p in parts])
    >>> msg.data["det"]["image.data"].shape, msg.train_id, msg.nbytes
    ((2, 3), 1000, 132)
    >>> decode([b"\\xc1"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kb_streams.errors.ProtocolError: protocol 1.0 message is not valid msgpack: ... (part 0)
    """
    data, meta, version, nbytes = decode_parts(frames, DEFAULT_LIMITS if limits is None else limits)
    return Message(data, meta, version, nbytes)


def encode(
    data: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    protocol_version: str = "2.2",
    dummy_timestamps: bool = False,
) -> list[Any]:
    """Encode one train into the list of message parts to send with ``send_multipart``.

    Parameters
    ----------
    data
        ``{source: {key: value}}``. Values are builtins (nested dicts, lists, tuples, str, bytes,
        int, float, bool, None), numpy scalars (anywhere) and numpy arrays.
    metadata
        ``{source: {...}}``; for sources not in it (or when ``None``), ``data[src]['metadata']``
        or ``{}``, as ``karabo_bridge.serialize`` does.
    protocol_version
        ``'2.2'`` (default) or ``'1.0'``.
    dummy_timestamps
        Fill ``timestamp``, ``timestamp.sec`` and ``timestamp.frac`` (attoseconds, 18 digits)
        from the clock in sources whose metadata lacks ``timestamp``.

    Returns
    -------
    list
        2.2: for each source in sorted order, a ``'msgpack'`` header and payload (the non-array
        values; ``'metadata'`` is left in it when ``data`` has it, as the reference does), then a
        header and a zero-copy ``memoryview`` per array (copied only when not C-contiguous).
        1.0: one ``bytes`` part. An empty train (no sources) is one part ``b'\\x80'`` (an empty
        map) in either version: 2.2 has no way to say "no sources", and every reader, including
        ``karabo_bridge.deserialize``, decodes that part as ``({}, {})`` instead of crashing the
        sender the way an empty ``send_multipart`` does.

    Raises
    ------
    ValueError
        For a protocol version other than ``'1.0'`` or ``'2.2'`` (as the reference).
    ProtocolError
        For data no bridge client could read, naming source and key: object arrays (never
        pickled), non-string keys, values msgpack cannot hold (in 2.2 also complex numbers and
        arrays nested in other values) and, in 2.2 only, structured arrays (the reference cannot
        parse their dtype; 1.0 sends them as msgpack-numpy ``descr``).

    Examples
    --------
    >>> import numpy as np
    >>> parts = encode({"det": {"image.data": np.zeros((2, 3), "f4"), "n": np.int64(2)}})
    >>> len(parts)
    4
    >>> len(encode({"det": {"n": 1}}, protocol_version="1.0"))
    1
    >>> encode({})
    [b'\\x80']
    """
    return encode_train(data, metadata, protocol_version, dummy_timestamps)


def serialize(
    data: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    protocol_version: str = "2.2",
    dummy_timestamps: bool = False,
) -> list[Any]:
    """Drop-in for ``karabo_bridge.serialize``: :func:`encode` with positional options.

    Examples
    --------
    >>> parts = serialize({"src": {"x": 1}}, {"src": {"timestamp.tid": 5}}, "1.0")
    >>> deserialize(parts)
    ({'src': {'x': 1, 'metadata': {'timestamp.tid': 5}}}, {'src': {'timestamp.tid': 5}})
    """
    return encode(data, metadata, protocol_version=protocol_version,
                  dummy_timestamps=dummy_timestamps)


def deserialize(msg: Sequence[Any]) -> tuple[SourceData, SourceData]:
    """Drop-in for ``karabo_bridge.deserialize``: ``(data, meta)``.

    Equal to the reference's result on every valid 1.0 and 2.2 message; on 2.0/2.1 messages
    ``meta`` also exposes the metadata found in the data (the reference gives ``{}``), and
    malformed messages raise :class:`ProtocolError`.

    Examples
    --------
    >>> data, meta = deserialize(serialize({"src": {"x": [1, 2]}}, {"src": {"timestamp.tid": 7}}))
    >>> data, meta
    ({'src': {'x': [1, 2]}}, {'src': {'timestamp.tid': 7}})
    """
    message = decode(msg)
    return message.data, message.meta
