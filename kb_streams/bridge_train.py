"""Any result as a bridge train: the ``(data, meta)`` that publishes an item over the bridge.

:func:`to_bridge_train` is what :class:`kb_streams.sinks.to_karabo_bridge` sends for each item:
``(data, meta)`` pairs, trains and messages as they are (train ID added where missing); xarray
objects, mappings, numbers and arrays as one source, their values made plain (numpy arrays and
scalars, builtins) so that any bridge reader understands them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .protocol import Message, SourceData, source_meta
from .train import Train

__all__ = ["DEFAULT_SOURCE", "to_bridge_train"]

DEFAULT_SOURCE = "kb_streams/results"


def to_bridge_train(item: Any, train_id: int, *,
                    source: str = DEFAULT_SOURCE) -> tuple[SourceData, SourceData]:
    """The bridge train ``(data, meta)`` that publishes *item*.

    Parameters
    ----------
    item
        * a ``(data, meta)`` pair, a :class:`kb_streams.Train` or a
          :class:`kb_streams.Message`: sent as it is, with ``timestamp.tid`` added to sources
          whose metadata lacks it;
        * an ``xarray.DataArray``: one source whose keys are its name (``'data'`` if unnamed) and
          its coordinates;
        * an ``xarray.Dataset``: one source whose keys are its data variables and coordinates;
        * ``{source: {key: value}}`` (every value a mapping): those sources;
        * ``{key: value}``: one source;
        * a number, numpy scalar or array: one source with the key ``'data'``.

        Values are converted on the way: xarray objects become numpy arrays, 0-d numeric arrays
        become scalars, arrays of Python objects (e.g. strings) become lists.
    train_id
        The train ID to put in the metadata of every source (pairs and trains: where missing).
    source
        Name of the one source that results other than pairs, trains and
        ``{source: {key: value}}`` mappings are published as.

    Returns
    -------
    data, meta
        ``{source: {key: value}}`` and ``{source: {'source': ..., 'timestamp.tid': ...}}``.

    Raises
    ------
    TypeError
        For items of any other type (strings, lists, ...).
    ValueError
        For an item without any data (an empty mapping).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> roi = xr.DataArray(np.array([1.5, 2.5]), dims='pulse', name='roi_sum',
    ...                    coords={'pulse': [0, 1], 'trainId': 10042})
    >>> data, meta = to_bridge_train(roi, 10042)
    >>> sorted(data['kb_streams/results']), meta['kb_streams/results']['timestamp.tid']
    (['pulse', 'roi_sum', 'trainId'], 10042)
    >>> to_bridge_train(3.5, 7, source='MID/RESULT/mean')[0]
    {'MID/RESULT/mean': {'data': 3.5}}
    """
    if isinstance(item, Train | Message):
        return item.data, _with_train_id(item.meta, item.data, train_id)
    if _is_data_meta_pair(item):
        data, meta = item
        return data, _with_train_id(meta, data, train_id)
    data = _as_sources(item, source)
    if not data:
        raise ValueError("no data to publish (an empty mapping)")
    return data, {name: {"source": name, "timestamp.tid": train_id} for name in data}


def _is_data_meta_pair(item: Any) -> bool:
    return (isinstance(item, tuple) and len(item) == 2
            and isinstance(item[0], Mapping) and isinstance(item[1], Mapping))


def _with_train_id(meta: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any],
                   train_id: int) -> SourceData:
    """*meta* for every source of *data*, ``timestamp.tid`` filled in where missing."""
    completed = {}
    for name in data:
        metadata = source_meta(name, data, meta)
        metadata.setdefault("source", name)
        metadata.setdefault("timestamp.tid", train_id)
        completed[name] = metadata
    return completed


def _as_sources(item: Any, source: str) -> SourceData:
    if isinstance(item, xr.DataArray):
        name = "data" if item.name is None else str(item.name)
        return {source: {name: _value(item), **_coordinates(item)}}
    if isinstance(item, xr.Dataset):
        variables = {str(name): _value(var) for name, var in item.data_vars.items()}
        return {source: {**variables, **_coordinates(item)}}
    if isinstance(item, Mapping):
        if item and all(isinstance(values, Mapping) for values in item.values()):
            return {str(name): _plain_values(values) for name, values in item.items()}
        return {source: _plain_values(item)} if item else {}
    if isinstance(item, np.ndarray | np.generic | numbers.Number):
        return {source: {"data": _value(item)}}
    raise TypeError(f"cannot publish a {type(item).__name__}: give (data, meta), a Train, an "
                    "xarray object, a mapping, a number or an array")


def _coordinates(obj: xr.DataArray | xr.Dataset) -> dict[str, Any]:
    return {str(name): _value(coord) for name, coord in obj.coords.items()}


def _plain_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key): _value(value) for key, value in values.items()}


def _value(value: Any) -> Any:
    """A value bridge readers understand: numpy arrays and scalars, builtins."""
    if isinstance(value, xr.DataArray | xr.Variable):
        value = value.values
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "O":
        return value.tolist()  # the protocol never pickles; str, numbers, lists travel as msgpack
    if value.ndim == 0 and value.dtype.kind in "biufc":
        return value[()]
    return value
