"""The one way the stream nodes find an item's train ID, whatever the item is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xarray as xr

from .protocol import find_train_id

__all__ = ["train_id_of"]


def train_id_of(item: Any) -> int | None:
    """The train ID an item carries, or ``None``: what the stream nodes order and report by.

    Looks, in this order, at a ``train_id`` attribute (:class:`Train`, ``Message``), a scalar
    ``trainId`` coordinate or attribute (xarray; for the result of a reduction over trains, its
    ``last_train_id`` attribute), a ``(data, meta)`` pair from a bridge client
    (``meta[source]['timestamp.tid']``), a ``'trainId'`` key of a mapping, and else at the
    parts of a tuple, e.g. ``(delay, labelled_array)``.

    Examples
    --------
    >>> import xarray as xr
    >>> train_id_of(xr.DataArray([1.0, 2.0], dims='pulse', coords={'trainId': 10042}))
    10042
    >>> train_id_of(({'det': {}}, {'det': {'timestamp.tid': 7}}))
    7
    >>> train_id_of((0.5, xr.DataArray(1.0, coords={'trainId': 8}))), train_id_of(3.0)
    (8, None)
    """
    try:
        tid = getattr(item, "train_id", None)
        if tid is not None and not callable(tid):
            return int(tid)
        if isinstance(item, xr.DataArray | xr.Dataset):
            coord = item.coords.get("trainId")
            if coord is not None:
                return int(coord.values) if coord.size == 1 else None
            for attr in ("trainId", "last_train_id"):
                if item.attrs.get(attr) is not None:
                    return int(item.attrs[attr])
            return None
        if isinstance(item, Mapping):
            return int(item["trainId"]) if "trainId" in item else None
        if isinstance(item, tuple):
            if len(item) == 2 and isinstance(item[1], Mapping):
                found = find_train_id(item[0], item[1])
                if found is not None:
                    return found
            for part in item:
                found = train_id_of(part)
                if found is not None:
                    return found
    except (TypeError, ValueError):
        pass
    return None
