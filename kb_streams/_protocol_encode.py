"""Encoding of trains into bridge messages. Private to :mod:`kb_streams.protocol`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from ._protocol_arrays import Invalid, check_dtype, contiguous_bytes, numpy_map, numpy_scalar_map
from .errors import ProtocolError

SourceData = dict[str, dict[str, Any]]
#: What an empty train (no sources) is sent as: one part holding an empty map.
EMPTY_TRAIN = b"\x80"
_NUMPY_SCALARS = (np.bool_, np.number, np.datetime64, np.timedelta64)
_MAX_DEPTH = 256


def dummy_timestamp() -> dict[str, Any]:
    """Timestamp metadata from the machine clock, spelled like the reference's dummy timestamps."""
    epoch = time.time()
    sec, _, frac = repr(epoch).partition(".")
    return {"timestamp": epoch, "timestamp.sec": sec, "timestamp.frac": frac.ljust(18, "0")}


def _default_v1(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return numpy_map(obj)
    if isinstance(obj, _NUMPY_SCALARS):
        return numpy_scalar_map(obj)
    if isinstance(obj, complex):
        return {b"complex": True, b"data": repr(obj)}
    raise TypeError(f"cannot encode a {type(obj).__name__}")


def _default_v2(obj: Any) -> Any:
    if isinstance(obj, (np.bool_, np.number)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        raise TypeError("arrays can only be top-level values of a source in protocol 2.2")
    raise TypeError(f"cannot encode a {type(obj).__name__} in protocol 2.2")


def _key_problem(value: Any) -> str | None:
    """What makes ``value`` (searched through dicts, lists, tuples) unreadable by clients."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return f"values nested deeper than {_MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, (str, bytes)):
                    return f"map key {key!r:.80} is not a string"
                stack.append((inner, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((inner, depth + 1) for inner in item)
    return None


class _Encoder:
    """One train's encoding: checks, then packing, with errors naming the source and key."""

    def __init__(self, data: Mapping[str, Any], metadata: Mapping[str, Any] | None,
                 dummy_timestamps: bool) -> None:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"data must be a dict of sources, not {type(data).__name__}")
        stamp = dummy_timestamp() if dummy_timestamps else {}
        self.data: dict[str, Mapping[str, Any]] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        for source, values in data.items():
            if not isinstance(source, str):
                raise ProtocolError(f"source name {source!r:.80} is not a string")
            if not isinstance(values, Mapping):
                raise ProtocolError(f"source data must be a dict, not {type(values).__name__}",
                                    source=source)
            if metadata is not None and source in metadata:
                source_meta = metadata[source]
            else:
                source_meta = values.get("metadata", {})
            if not isinstance(source_meta, Mapping):
                raise ProtocolError("metadata must be a dict", source=source, key="metadata")
            source_meta = dict(source_meta)
            if stamp and "timestamp" not in source_meta:
                source_meta.update(stamp)
            self.data[source] = values
            self.meta[source] = source_meta
        self.train_id = next((tid for m in self.meta.values()
                              if isinstance(tid := m.get("timestamp.tid"), (int, np.integer))),
                             None)

    def error(self, reason: str, source: str | None = None,
              key: str | None = None) -> ProtocolError:
        return ProtocolError(reason, source=source, key=key,
                             train_id=None if self.train_id is None else int(self.train_id))

    def check(self, source: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if not isinstance(key, str):
                raise self.error(f"key {key!r:.80} is not a string", source)
            if isinstance(value, np.ndarray):
                try:
                    check_dtype(value.dtype)
                except Invalid as err:
                    raise self.error(str(err), source, key) from None
            elif problem := _key_problem(value):
                raise self.error(problem, source, key)
        if problem := _key_problem(self.meta[source]):
            raise self.error(problem, source, "metadata")

    def pack(self, obj: Any, default: Any, source: str, where: Mapping[str, Any] | None) -> bytes:
        """Pack ``obj``; on failure, find which key of ``where`` cannot be packed."""
        try:
            return msgpack.packb(obj, use_bin_type=True, default=default)
        except (TypeError, ValueError, OverflowError, Invalid) as err:
            for key, value in (where or {}).items():
                try:
                    msgpack.packb(value, use_bin_type=True, default=default)
                except (TypeError, ValueError, OverflowError, Invalid) as inner:
                    raise self.error(f"cannot encode value: {inner}", source, key) from inner
            raise self.error(f"cannot encode: {err}", source) from err

    def v1(self) -> list[Any]:
        message = {}
        for source, values in self.data.items():
            self.check(source, values)
            message[source] = {**values, "metadata": self.meta[source]}
        try:
            return [msgpack.packb(message, use_bin_type=True, default=_default_v1)]
        except (TypeError, ValueError, OverflowError, Invalid) as err:
            for source, values in message.items():
                self.pack(values, _default_v1, source, values)
            raise self.error(f"cannot encode: {err}") from err

    def v2(self) -> list[Any]:
        parts: list[Any] = []
        for source in sorted(self.data):
            values = self.data[source]
            self.check(source, values)
            plain = {k: v for k, v in values.items() if not isinstance(v, np.ndarray)}
            header = {"source": source, "content": "msgpack", "metadata": self.meta[source]}
            parts.append(self.pack(header, _default_v2, source, {"metadata": self.meta[source]}))
            parts.append(self.pack(plain, _default_v2, source, plain))
            for key, array in values.items():
                if isinstance(array, np.ndarray):
                    parts.extend(self.array_pair(source, key, array))
        return parts

    def array_pair(self, source: str, key: str, array: np.ndarray) -> list[Any]:
        if array.dtype.fields is not None:
            raise self.error(
                "structured arrays cannot be sent in protocol 2.2 so that karabo_bridge can read "
                "them: send each field as its own array, or use protocol 1.0",
                source, key,
            )
        header = {"source": source, "content": "array", "path": key,
                  "dtype": str(array.dtype), "shape": list(array.shape)}
        return [msgpack.packb(header, use_bin_type=True), contiguous_bytes(array)]


def encode_train(data: Mapping[str, Any], metadata: Mapping[str, Any] | None,
                 protocol_version: str, dummy_timestamps: bool) -> list[Any]:
    """The parts of one message; see :func:`kb_streams.protocol.encode`."""
    if protocol_version not in ("1.0", "2.2"):
        raise ValueError(f"Unknown protocol version {protocol_version}")
    encoder = _Encoder(data, metadata, dummy_timestamps)
    if not encoder.data:
        return [EMPTY_TRAIN]
    return encoder.v1() if protocol_version == "1.0" else encoder.v2()
