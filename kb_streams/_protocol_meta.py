"""Where a message keeps a source's metadata and the train ID: the one answer for every caller.

Private to the codec (re-exported by :mod:`kb_streams.protocol`). Protocol 2.2 sends metadata
beside the data (``meta[source]``); 1.0, 2.0 and EXtra-data's streamer nest it in the data under
``'metadata'``; 2.1 flattens it there as ``'metadata.*'`` keys. The decoder, :class:`Message`,
:class:`~kb_streams.train.Train`, :func:`~kb_streams.train.train_id_of`, the server and the
re-publishing sink all read it through these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["first_train_id", "metadata_in_data", "source_meta", "find_train_id"]

_FLAT = "metadata."


def metadata_in_data(values: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The metadata a source carries inside its data, and the protocol version that puts it there.

    ``(values['metadata'], '2.0')`` when nested (also 1.0 and EXtra-data's streamer; the value
    is returned unchecked), else ``({key: value}, '2.1')`` from ``'metadata.*'`` keys without the
    prefix, else ``({}, None)``.

    Examples
    --------
    >>> metadata_in_data({'x': 1, 'metadata.timestamp.tid': 7})
    ({'timestamp.tid': 7}, '2.1')
    >>> metadata_in_data({'x': 1})
    ({}, None)
    """
    if "metadata" in values:
        return values["metadata"], "2.0"
    flat = {key[len(_FLAT):]: value for key, value in values.items()
            if isinstance(key, str) and key.startswith(_FLAT)}
    return flat, ("2.1" if flat else None)


def source_meta(source: str, data: Mapping[str, Any], meta: Mapping[str, Any] | None) -> dict:
    """Metadata of one source wherever the protocol version put it (a new dict; ``{}`` if none).

    ``meta[source]`` when it is not empty, else what :func:`metadata_in_data` finds.

    Examples
    --------
    >>> source_meta('A', {'A': {'metadata.timestamp.tid': 5}}, {})
    {'timestamp.tid': 5}
    >>> source_meta('A', {'A': {'metadata': {'timestamp.tid': 5}}}, {'A': {'timestamp.tid': 6}})
    {'timestamp.tid': 6}
    """
    found = meta.get(source) if meta else None
    if isinstance(found, Mapping) and found:
        return dict(found)
    values = data.get(source) if isinstance(data, Mapping) else None
    if not isinstance(values, Mapping):
        return {}
    in_data, _ = metadata_in_data(values)
    return dict(in_data) if isinstance(in_data, Mapping) else {}


def first_train_id(metas: Iterable[Any]) -> int | None:
    """The first ``timestamp.tid`` among per-source metadata maps that can be read as an int.

    Examples
    --------
    >>> first_train_id([{'source': 'A'}, None, {'timestamp.tid': 'junk'}, {'timestamp.tid': 9}])
    9
    """
    for meta in metas:
        if not isinstance(meta, Mapping):
            continue
        tid = meta.get("timestamp.tid")
        if tid is None or isinstance(tid, bool):
            continue
        try:
            return int(tid)
        except (TypeError, ValueError, OverflowError):
            continue
    return None


def find_train_id(data: Any, meta: Mapping[str, Any] | None = None) -> int | None:
    """The train ID of a ``(data, meta)`` pair: the first source's whose metadata has one.

    Sources are looked at in *data*'s order, then those only in *meta*; each one's metadata as
    :func:`source_meta` finds it (so 1.0, 2.0, 2.1 and 2.2 messages all answer).

    Examples
    --------
    >>> find_train_id({'A': {'metadata.timestamp.tid': 10042}})
    10042
    >>> find_train_id({'A': {}}, {'A': {'timestamp.tid': 7}})
    7
    """
    data = data if isinstance(data, Mapping) else {}
    meta = meta if isinstance(meta, Mapping) else {}
    sources = list(data) + [source for source in meta if source not in data]
    return first_train_id(source_meta(source, data, meta) for source in sources)
