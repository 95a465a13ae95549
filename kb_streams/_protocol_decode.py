"""Decoding of bridge messages, with validation. Private to :mod:`kb_streams.protocol`.

Every problem becomes a :class:`~kb_streams.errors.ProtocolError` naming the part, source, key and
train ID where known; no other exception leaves :func:`decode_parts`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgpack

from ._protocol_arrays import Invalid, array_on_buffer, check_shape, decode_numpy_map, parse_dtype
from ._protocol_limits import DEFAULT_LIMITS, Limits
from ._protocol_meta import first_train_id, metadata_in_data
from .errors import ProtocolError, shorten

logger = logging.getLogger(__name__)

SourceData = dict[str, dict[str, Any]]
_ARRAY_CONTENTS = ("array", "ImageData")
_warned_versions: set[str] = set()
_TIMESTAMP_REFUSED = "msgpack timestamp extension is not allowed"


class _Refused:
    """Placed in the decoded tree where something was refused, so it can be located afterwards."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Unpacker:
    """msgpack decoding that refuses extension types (timestamps included).

    Hooks never raise: they leave a :class:`_Refused` marker in the tree, which the caller locates
    with :func:`_locate` to name the source and key.
    """

    def __init__(self, numpy_maps: bool, limits: Limits) -> None:
        self.numpy_maps = numpy_maps
        self.limits = limits
        self.refused: list[_Refused] = []

    def _refuse(self, reason: str) -> _Refused:
        marker = _Refused(reason)
        self.refused.append(marker)
        return marker

    def _ext_hook(self, code: int, data: bytes) -> _Refused:
        return self._refuse(f"msgpack extension type {code} is not allowed")

    def _object_hook(self, obj: dict) -> Any:
        if self.numpy_maps and (b"nd" in obj or b"complex" in obj):
            try:
                return decode_numpy_map(obj, self.limits.max_dtype_fields)
            except Invalid as err:
                return self._refuse(str(err))
        if msgpack.Timestamp in set(map(type, obj.values())):
            for key, value in obj.items():
                if type(value) is msgpack.Timestamp:
                    obj[key] = self._refuse(_TIMESTAMP_REFUSED)
        return obj

    def _list_hook(self, obj: list) -> Any:
        if msgpack.Timestamp in set(map(type, obj)):
            obj = [self._refuse(_TIMESTAMP_REFUSED) if type(v) is msgpack.Timestamp else v
                   for v in obj]
        return obj

    def unpack(self, buffer: memoryview) -> Any:
        """Decode one whole msgpack object (trailing bytes are an error)."""
        # msgpack bounds string and bin lengths by the buffer size already; arrays and maps it
        # allocates up front from the claimed count, so those get a cap as well.
        count_limit = min(buffer.nbytes, self.limits.max_container_len)
        obj = msgpack.unpackb(
            buffer,
            raw=False,
            object_hook=self._object_hook,
            list_hook=self._list_hook,
            ext_hook=self._ext_hook,
            max_array_len=count_limit,
            max_map_len=count_limit,
        )
        if type(obj) is msgpack.Timestamp:
            obj = self._refuse(_TIMESTAMP_REFUSED)
        return obj


def _unpack(buffer: memoryview, *, part: int, limits: Limits, numpy_maps: bool = False,
            what: str, source: str | None = None,
            train_id: int | None = None) -> tuple[Any, list[_Refused]]:
    unpacker = _Unpacker(numpy_maps, limits)
    try:
        return unpacker.unpack(buffer), unpacker.refused
    except Exception as err:
        raise ProtocolError(
            f"{what} is not valid msgpack: {type(err).__name__}{f': {err}' if str(err) else ''}",
            part=part, source=source, train_id=train_id,
        ) from err


def _locate(root: Any, target: object) -> tuple[str | None, str | None]:
    """``(top-level key, second-level key)`` of the first path leading to ``target``, else Nones."""
    if root is target or not isinstance(root, dict):
        return None, None
    for top, value in root.items():
        if value is target:
            return _name(top), None
        if isinstance(value, dict):
            for key, inner in value.items():
                if _contains(inner, target):
                    return _name(top), _name(key)
        elif _contains(value, target):
            return _name(top), None
    return None, None


def _name(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _contains(value: Any, target: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if item is target:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _as_bytes(frame: Any, part: int) -> memoryview:
    """A flat, C-contiguous byte view of one message part (no copy)."""
    try:
        view = memoryview(frame)
    except TypeError:
        raise ProtocolError(
            f"message part is a {type(frame).__name__}, not a buffer", part=part
        ) from None
    if not view.c_contiguous:
        raise ProtocolError("message part is not a contiguous buffer", part=part)
    if view.ndim == 1 and view.format == "B":
        return view
    if not view.nbytes:
        return memoryview(b"")  # cast() refuses zeros in the shape
    try:
        return view.cast("B")
    except (TypeError, ValueError):
        raise ProtocolError("message part cannot be read as bytes", part=part) from None


def _check_source_map(value: Any, *, part: int, source: str, train_id: int | None,
                      what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(
            f"{what} must be a map, not {type(value).__name__}",
            part=part, source=source, train_id=train_id,
        )
    for key in value:
        if not isinstance(key, str):
            raise ProtocolError(
                f"{what} has a non-string key {shorten(key, 80)}", part=part, source=source,
                train_id=train_id,
            )
    return value


def _check_meta(meta: Any, *, part: int | None, source: str, train_id: int | None,
                key: str = "metadata") -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise ProtocolError(
            f"metadata must be a map, not {type(meta).__name__}",
            part=part, source=source, key=key, train_id=train_id,
        )
    tid = meta.get("timestamp.tid")
    if tid is not None and type(tid) is not int:
        raise ProtocolError(
            f"'timestamp.tid' must be an int, not {type(tid).__name__}",
            part=part, source=source, key=key, train_id=train_id,
        )
    return meta


def decode_parts(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS
                 ) -> tuple[SourceData, SourceData, str, int]:
    """``(data, meta, protocol_version, nbytes)``; see :func:`kb_streams.protocol.decode`."""
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise ProtocolError("a message is a sequence of parts, not one buffer: wrap it in a list")
    try:
        parts = list(frames)
    except TypeError:
        raise ProtocolError(
            f"a message is a sequence of parts, not {type(frames).__name__}"
        ) from None
    if len(parts) > limits.max_parts:  # before any per-part work
        raise ProtocolError(f"message has {len(parts)} parts; the limit is {limits.max_parts} "
                            "(Limits.max_parts)")
    views = [_as_bytes(frame, i) for i, frame in enumerate(parts)]
    nbytes = sum(view.nbytes for view in views)
    if not views:
        raise ProtocolError("empty message: it has no parts")
    if limits.max_message_bytes is not None and nbytes > limits.max_message_bytes:
        raise ProtocolError(f"message has {nbytes} bytes; the limit is "
                            f"{limits.max_message_bytes} (Limits.max_message_bytes)")
    if len(views) == 1:
        data, meta = _decode_v1(views[0], limits)
        return data, meta, "1.0", nbytes
    data, meta, version = _decode_v2(views, limits)
    return data, meta, version, nbytes


def _decode_v1(view: memoryview, limits: Limits) -> tuple[SourceData, SourceData]:
    root, refused = _unpack(view, part=0, limits=limits, numpy_maps=True,
                            what="protocol 1.0 message")
    train_id = first_train_id(
        value.get("metadata") for value in root.values() if isinstance(value, dict)
    ) if isinstance(root, dict) else None
    if refused:
        source, key = _locate(root, refused[0])
        raise ProtocolError(refused[0].reason, part=0, source=source, key=key, train_id=train_id)
    if not isinstance(root, dict):
        raise ProtocolError(
            f"protocol 1.0 message must be a map of sources, not {type(root).__name__}", part=0
        )
    meta: SourceData = {}
    for source, value in root.items():
        if not isinstance(source, str):
            raise ProtocolError(f"source name {shorten(source, 80)} is not a string", part=0,
                                train_id=train_id)
        _check_source_map(value, part=0, source=source, train_id=train_id,
                          what="source data")
        meta[source] = _check_meta(value.get("metadata", {}), part=0, source=source,
                                   train_id=train_id)
    return root, meta


def _decode_v2(views: list[memoryview], limits: Limits) -> tuple[SourceData, SourceData, str]:
    for i in range(0, len(views) - 1, 2):  # before unpacking any of them
        if views[i].nbytes > limits.max_header_bytes:
            raise ProtocolError(f"header of {views[i].nbytes} bytes; the limit is "
                                f"{limits.max_header_bytes} (Limits.max_header_bytes)", part=i)
    headers = [(i, _header(views[i], i, limits)) for i in range(0, len(views) - 1, 2)]
    train_id = first_train_id(h.get("metadata") for _, h in headers if h["content"] == "msgpack")
    if len(views) % 2:
        raise ProtocolError(
            f"odd number of parts ({len(views)}): the last header has no payload",
            part=len(views) - 1, train_id=train_id,
        )
    for i, header in headers:
        if header["content"] not in ("msgpack", *_ARRAY_CONTENTS):
            raise ProtocolError(
                f"unknown content {shorten(header['content'], 80)}",
                part=i, source=header["source"], train_id=train_id,
            )

    data: SourceData = {}
    header_meta: dict[str, dict[str, Any]] = {}
    for i, header in headers:
        if header["content"] != "msgpack":
            continue
        source = header["source"]
        if source in data:
            raise ProtocolError("second 'msgpack' part for the same source", part=i,
                                source=source, train_id=train_id)
        payload, refused = _unpack(views[i + 1], part=i + 1, limits=limits, what="payload",
                                   source=source, train_id=train_id)
        if refused:
            _, key = _locate({source: payload}, refused[0])
            raise ProtocolError(refused[0].reason, part=i + 1, source=source, key=key,
                                train_id=train_id)
        data[source] = _check_source_map(payload, part=i + 1, source=source,
                                         train_id=train_id, what="payload")
        if "metadata" in header:
            header_meta[source] = _check_meta(header["metadata"], part=i, source=source,
                                              train_id=train_id)

    if train_id is None:  # 2.0 / 2.1: metadata in the payloads
        train_id = first_train_id(metadata_in_data(values)[0] for values in data.values())
    array_paths: set[tuple[str, str]] = set()
    for i, header in headers:
        if header["content"] in _ARRAY_CONTENTS:
            source, path, value = _array_part(header, views[i + 1], i, train_id, limits)
            if (source, path) in array_paths:
                raise ProtocolError("second array part for the same path", part=i,
                                    source=source, key=path, train_id=train_id)
            array_paths.add((source, path))
            data.setdefault(source, {})[path] = value

    meta, version = _meta_and_version(data, header_meta, train_id)
    return data, meta, version


def _header(view: memoryview, part: int, limits: Limits) -> dict[str, Any]:
    header, refused = _unpack(view, part=part, limits=limits, what="header")
    if refused:
        raise ProtocolError(f"header: {refused[0].reason}", part=part)
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a map, not {type(header).__name__}", part=part)
    source = header.get("source")
    if not isinstance(source, str):
        raise ProtocolError(
            "header lacks 'source'" if source is None
            else f"header 'source' must be a string, not {type(source).__name__}",
            part=part,
        )
    content = header.get("content")
    if not isinstance(content, str):
        raise ProtocolError(
            "header lacks 'content'" if content is None
            else f"header 'content' must be a string, not {type(content).__name__}",
            part=part, source=source,
        )
    return header


def _array_part(header: dict[str, Any], payload: memoryview, part: int,
                train_id: int | None, limits: Limits) -> tuple[str, str, Any]:
    source = header["source"]
    path = header.get("path")
    if not isinstance(path, str):
        raise ProtocolError(
            "array header lacks a string 'path'" if path is None
            else f"array header 'path' must be a string, not {type(path).__name__}",
            part=part, source=source, train_id=train_id,
        )
    try:
        for field in ("dtype", "shape"):
            if field not in header:
                raise Invalid(f"array header lacks {field!r}")
        array = array_on_buffer(payload, parse_dtype(header["dtype"], limits.max_dtype_fields),
                                check_shape(header["shape"]))
        if header["content"] == "array":
            return source, path, array
        params = header.get("params", {})
        if not isinstance(params, dict):
            raise Invalid("ImageData 'params' must be a map")
        return source, path, {**params, "Data": array}
    except Invalid as err:
        raise ProtocolError(str(err), part=part, source=source, key=path,
                            train_id=train_id) from None


def _meta_and_version(data: SourceData, header_meta: dict[str, dict[str, Any]],
                      train_id: int | None) -> tuple[SourceData, str]:
    """Metadata per source, and the protocol version it reveals.

    2.2 keeps metadata in the ``'msgpack'`` header; 2.0 nested it in the data under
    ``'metadata'``; 2.1 flattened it there as ``'metadata.*'`` keys.
    """
    meta: SourceData = {}
    found: set[str] = set()
    for source, values in data.items():
        if source in header_meta:
            meta[source] = header_meta[source]
            found.add("2.2")
        else:
            in_data, kind = metadata_in_data(values)
            meta[source] = _check_meta(in_data, part=None, source=source, train_id=train_id,
                                       key="metadata.timestamp.tid" if kind == "2.1"
                                       else "metadata")
            if kind:
                found.add(kind)
    version = next((v for v in ("2.2", "2.0", "2.1") if v in found), "2.2")
    if version != "2.2" and version not in _warned_versions:
        _warned_versions.add(version)
        logger.warning("received protocol %s messages: metadata read from the data map", version)
    return meta, version
