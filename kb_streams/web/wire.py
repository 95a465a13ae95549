"""The messages between the graph's process and the dashboard's web process, as ZeroMQ frames.

A message is a tree of dicts, lists, strings and numbers with numpy arrays in it. The first
frame is the tree in msgpack with each array replaced by a small map (dtype, shape, frame
index); every array follows as its own raw frame, sent without a copy and received as a
read-only view on the frame. No pickle: only plain numeric dtypes cross.

Examples
--------
>>> import numpy as np
>>> frames = pack({"image": np.arange(6, dtype=np.uint8).reshape(2, 3), "train": 7})
>>> len(frames)
2
>>> message = unpack([bytes(f) for f in frames])
>>> message["train"], message["image"].tolist()
(7, [[0, 1, 2], [3, 4, 5]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

__all__ = ["pack", "unpack"]

_ARRAY = "__array__"
_KINDS = "biuf"  # bool, signed, unsigned, float: the only dtypes that cross


def pack(message: Any) -> list[Any]:
    """``message`` as frames: the msgpack tree, then each array's buffer (not copied)."""
    buffers: list[Any] = []

    def default(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _KINDS:
                raise TypeError(f"cannot send an array of dtype {value.dtype}")
            array = np.ascontiguousarray(value)
            buffers.append(memoryview(array).cast("B") if array.size else b"")
            return {_ARRAY: len(buffers), "dtype": array.dtype.str, "shape": list(array.shape)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return list(value)
        raise TypeError(f"cannot send a {type(value).__name__}")

    head = msgpack.packb(message, default=default, use_bin_type=True, strict_types=True)
    return [head, *buffers]


def unpack(frames: Sequence[Any]) -> Any:
    """The message of ``frames`` (``bytes`` or :class:`zmq.Frame`); arrays are read-only views."""
    buffers = [getattr(frame, "buffer", frame) for frame in frames]

    def hook(value: dict[str, Any]) -> Any:
        index = value.get(_ARRAY)
        if index is None:
            return value
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in _KINDS or not 1 <= index < len(buffers):
            raise ValueError(f"bad array in a dashboard message: {value!r:.80}")
        array = np.frombuffer(buffers[index], dtype=dtype)
        return array.reshape(value["shape"])

    return msgpack.unpackb(buffers[0], object_hook=hook, raw=False, strict_map_key=False)
