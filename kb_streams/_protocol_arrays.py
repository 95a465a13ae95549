"""Array pieces of the bridge codec: dtype and shape checks, arrays on buffers, msgpack-numpy.

Private to :mod:`kb_streams.protocol`. Functions here raise :class:`Invalid` with a reason; the
decoder turns it into a :class:`~kb_streams.errors.ProtocolError` that also names the part, source,
key and train. Nothing here unpickles or evaluates anything taken from the wire.
"""

from __future__ import annotations

import ast
import functools
import math
from typing import Any

import numpy as np

from ._protocol_limits import DEFAULT_LIMITS
from .errors import Invalid, shorten

#: numpy's own limit on the number of dimensions.
MAX_NDIM = 64
#: Longest dtype spelling accepted (structured descrs included).
MAX_DTYPE_CHARS = 4096
#: Deepest nesting of structured dtypes accepted.
MAX_DTYPE_DEPTH = 8
_MAX_DIM = 2**63 - 1


def parse_dtype(spec: Any, max_fields: int = DEFAULT_LIMITS.max_dtype_fields) -> np.dtype:
    """The numpy dtype for a header ``dtype`` / msgpack-numpy ``type`` field.

    Accepts both spellings of plain dtypes (``'uint16'`` and ``'<u2'``), a structured ``descr``
    list, and the reference serializer's ``str(structured_dtype)`` (``"[('a', '<i4')]"``, read
    with :func:`ast.literal_eval`, which evaluates literals only). Object dtypes, zero-size
    dtypes and sub-array dtypes are refused, and so are structured dtypes of more than
    *max_fields* fields (nested ones included), counted before any is built.
    """
    if isinstance(spec, str):
        if len(spec) > MAX_DTYPE_CHARS:
            raise Invalid(f"dtype string of {len(spec)} characters is too long")
        dtype = _parse_dtype_string(spec)
        if dtype.names is not None:
            _count_fields(dtype.descr, max_fields)
        return dtype
    if isinstance(spec, (list, tuple)):
        _count_fields(spec, max_fields)
        return check_dtype(_descr_to_dtype(spec, 0))
    raise Invalid(f"dtype must be a string or a structured descr list, not {type(spec).__name__}")


@functools.lru_cache(maxsize=256)  # the same few spellings arrive with every train
def _parse_dtype_string(spec: str) -> np.dtype:
    if spec.lstrip().startswith("["):
        try:
            descr = ast.literal_eval(spec)
        except Exception:
            raise Invalid(f"unreadable structured dtype {spec[:80]!r}") from None
        return check_dtype(_descr_to_dtype(descr, 0))
    try:
        dtype = np.dtype(spec)
    except Exception:
        raise Invalid(f"unknown dtype {spec[:80]!r}") from None
    return check_dtype(dtype)


def _count_fields(descr: list | tuple, limit: int) -> None:
    """Refuse a structured descr with more than *limit* fields, without looking past the limit."""
    budget = limit
    stack: list[list | tuple] = [descr]
    while stack:
        fields = stack.pop()
        budget -= len(fields)
        if budget < 0:
            raise Invalid(f"structured dtype has more than {limit} fields "
                          "(Limits.max_dtype_fields)")
        stack.extend(entry[1] for entry in fields
                     if isinstance(entry, (list, tuple)) and len(entry) > 1
                     and isinstance(entry[1], (list, tuple)))


def check_dtype(dtype: np.dtype) -> np.dtype:
    """Refuse dtypes the bridge cannot carry as raw bytes; return ``dtype`` otherwise."""
    if dtype.hasobject:
        raise Invalid(f"object dtype {str(dtype)[:80]!r} is refused (it would need pickle)")
    if dtype.subdtype is not None:
        raise Invalid(f"sub-array dtype {str(dtype)[:80]!r} is not allowed; use 'shape'")
    if dtype.itemsize == 0:
        raise Invalid(f"zero-size dtype {_text(dtype)!r} is not allowed")
    return dtype


def _descr_to_dtype(descr: Any, depth: int) -> np.dtype:
    if depth > MAX_DTYPE_DEPTH:
        raise Invalid("structured dtype nested too deeply")
    if not isinstance(descr, (list, tuple)) or not descr:
        raise Invalid("structured dtype must be a non-empty list of fields")
    fields = []
    for entry in descr:
        if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3):
            raise Invalid(f"structured dtype field {shorten(entry, 80)} is not "
                          "[name, type(, shape)]")
        name, ftype = entry[0], entry[1]
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if not isinstance(name, str):
            raise Invalid(f"structured dtype field name {shorten(name, 80)} is not a string")
        if isinstance(ftype, str):
            try:
                ftype = np.dtype(ftype)
            except Exception:
                raise Invalid(f"unknown dtype {ftype[:80]!r} in field "
                              f"{shorten(name, 80)}") from None
        elif isinstance(ftype, (list, tuple)):
            ftype = _descr_to_dtype(ftype, depth + 1)
        else:
            raise Invalid(f"type of structured dtype field {shorten(name, 80)} is not a string")
        field: tuple[Any, ...] = (name, ftype)
        if len(entry) == 3:
            field += (check_shape(entry[2] if isinstance(entry[2], (list, tuple)) else [entry[2]]),)
        fields.append(field)
    try:
        dtype = np.dtype(fields)
    except Exception as err:
        raise Invalid(f"invalid structured dtype: {shorten(str(err))}") from None
    if dtype.hasobject:
        raise Invalid("structured dtype with object fields is refused (it would need pickle)")
    return dtype


def check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or :class:`Invalid`."""
    if not isinstance(shape, (list, tuple)):
        raise Invalid(f"shape must be a list of ints, not {type(shape).__name__}")
    if len(shape) > MAX_NDIM:
        raise Invalid(f"shape has {len(shape)} dimensions; numpy allows at most {MAX_NDIM}")
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= _MAX_DIM:
            raise Invalid(f"shape {shorten(list(shape))} must hold non-negative ints")
    return tuple(shape)


def array_on_buffer(buffer: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A zero-copy array over ``buffer``, after checking that its size is exactly what is claimed.

    The size is checked with Python ints before numpy sees it, so no header can make us allocate or
    overflow. The array is writeable exactly when ``buffer`` is.
    """
    needed = math.prod(shape) * dtype.itemsize
    if needed != buffer.nbytes:
        raise Invalid(
            f"payload has {buffer.nbytes} bytes but shape {list(shape)} of "
            f"{_text(dtype)} needs {needed}"
        )
    try:
        return np.ndarray(shape=shape, dtype=dtype, buffer=buffer)
    except Exception as err:
        raise Invalid(
            f"cannot build array of shape {list(shape)} and dtype {_text(dtype)}: "
            f"{shorten(str(err))}"
        ) from None


def _text(dtype: np.dtype) -> str:
    text = str(dtype)
    return text if len(text) <= 80 else shorten(text, 80)


def decode_numpy_map(obj: dict, max_fields: int = DEFAULT_LIMITS.max_dtype_fields) -> Any:
    """Decode a msgpack-numpy map (protocol 1.0): ``b'nd'``, ``b'type'``, ``b'kind'``, ``b'shape'``,
    ``b'data'`` for arrays and numpy scalars, ``b'complex'`` for Python complex numbers.

    Arrays are read-only views on the ``bytes`` msgpack produced; pickled object arrays
    (``kind`` ``b'O'``) are refused, never unpickled.
    """
    if b"nd" not in obj:
        return _decode_complex(obj)
    nd = obj[b"nd"]
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise Invalid("msgpack-numpy map lacks bytes under b'data'")
    if nd is True:
        kind = obj.get(b"kind", b"")
        if kind == b"O":
            raise Invalid("pickled object array (kind b'O') refused: nothing is unpickled")
        if kind not in (b"", b"V"):
            raise Invalid(f"msgpack-numpy map has unknown kind {kind!r:.40}")
        if b"type" not in obj or b"shape" not in obj:
            raise Invalid("msgpack-numpy array map lacks b'type' or b'shape'")
        dtype = parse_dtype(obj[b"type"], max_fields)
        return array_on_buffer(memoryview(data), dtype, check_shape(obj[b"shape"]))
    if nd is False:
        dtype = parse_dtype(obj.get(b"type"), max_fields)
        if len(data) != dtype.itemsize:
            raise Invalid(f"numpy scalar of {dtype} has {len(data)} bytes, not {dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype)[0]
    raise Invalid(f"msgpack-numpy map has b'nd' = {nd!r:.40}, not a bool")


def _decode_complex(obj: dict) -> complex:
    text = obj.get(b"data")
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if obj.get(b"complex") is not True or not isinstance(text, str) or len(text) > 100:
        raise Invalid("malformed msgpack-numpy complex map")
    try:
        return complex(text)
    except ValueError:
        raise Invalid(f"malformed complex number {text!r}") from None


def contiguous_bytes(array: np.ndarray) -> memoryview:
    """The array's C-order bytes as a flat ``'B'`` memoryview, copied only if not C-contiguous.

    A byte view works for every dtype, including those the buffer protocol refuses
    (``datetime64``, ``timedelta64``).
    """
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array.reshape(-1).view(np.uint8).data


def numpy_map(array: np.ndarray) -> dict[bytes, Any]:
    """The msgpack-numpy map of ``array`` for protocol 1.0 (structured dtypes as ``descr``)."""
    dtype = check_dtype(array.dtype)
    if dtype.fields is not None:
        dtype_field: Any = dtype.descr
        kind = b"V"
    else:
        dtype_field, kind = dtype.str, b""
    return {
        b"nd": True,
        b"type": dtype_field,
        b"kind": kind,
        b"shape": list(array.shape),
        b"data": contiguous_bytes(array),
    }


def numpy_scalar_map(value: np.generic) -> dict[bytes, Any]:
    """The msgpack-numpy map of a numpy scalar for protocol 1.0."""
    return {b"nd": False, b"type": check_dtype(value.dtype).str, b"data": value.tobytes()}
