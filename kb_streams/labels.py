"""Labelled xarray views of bridge data, with EXtra-data's names.

Detector arrays become zero-copy views with dims ``('pulse', 'slow_scan', 'fast_scan')`` per
module (JUNGFRAU: ``'cell'``; raw AGIPD files: ``'data_gain'`` after ``'pulse'``), or
``('module', 'pulse', 'slow_scan', 'fast_scan')`` for a multi-module source. The axes are moved
with :func:`numpy.transpose`, which makes a view: labelling a 352-pulse train costs the same as a
1-pulse one. Only :func:`kb_streams.stacking.stack_modules` copies (into one new array).

Other data follows ``KeyData.xarray()`` in extra-data: scalars become 0-d arrays, vectors get
``dim_0``, ``dim_1``, ..., and the name is ``'<source>.<key>'``. Per-pulse vectors of a detector
source (``image.cellId``, JUNGFRAU ``data.frameNumber``, ...) get the pulse/cell dimension.

Every array carries a scalar ``trainId`` coordinate (``uint64``, as extra-data) when the train ID
is known, and attrs ``source``, ``key``, ``timestamp`` (``datetime64[ns]``, NaT when unknown) and
``protocol`` (the bridge protocol version, ``'unknown'`` when not given); detector arrays also
``layout`` (``'online'``, ``'file'``, ``'file-raw'``, ``'labelled'`` or ``'custom'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._dataarray import new_dataarray
from .layouts import (
    DetectorSpec,
    Layout,
    LayoutError,
    canonical_order,
    detector_for,
    from_file_streamer,
    parse_layout,
    pulse_count,
    resolve_layout,
)

__all__ = ["label_array", "label_source", "is_metadata_key"]

LayoutArg = str | Sequence[str] | None
RoiArg = slice | tuple[slice, ...] | Mapping[str, slice]
NAT = np.datetime64("NaT", "ns")


def is_metadata_key(key: str) -> bool:
    """Keys that carry bridge metadata inside the data (1.0, 2.0/2.1, extra-data's streamer)."""
    return key == "metadata" or key.startswith("metadata.")


def _as_array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping) or value is None:
        raise TypeError(f"{where} holds a {type(value).__name__}, which cannot be labelled as an "
                        "array")
    return np.asarray(value)


def _context(attrs: dict, coords: dict, *, source: str, key: str, train_id: int | None,
             timestamp: Any, protocol: str | None) -> None:
    attrs.update(source=source, key=key,
                 timestamp=NAT if timestamp is None else np.datetime64(timestamp, "ns"),
                 protocol=protocol or "unknown")
    if train_id is not None:
        coords["trainId"] = np.uint64(train_id)


def _pulse_coords(spec: DetectorSpec, source_data: Mapping[str, Any], n: int,
                  pulse_index: str) -> tuple[str, dict[str, tuple[str, np.ndarray]]]:
    """Dimension name for the pulse axis, and its coordinates from the source's ID keys."""
    ids: dict[str, np.ndarray] = {}
    for key in spec.pulse_keys:
        value = source_data.get(key)
        if isinstance(value, np.ndarray) and value.size == n:
            ids[key.rpartition(".")[2]] = value.reshape(n)
    if spec.pulse_dim == "cell":  # JUNGFRAU: memory cells
        coords = {"cell": ("cell", ids["memoryCell"])} if "memoryCell" in ids else {}
        return "cell", coords
    if pulse_index not in ("pulseId", "cellId"):
        raise ValueError(f"pulse_index must be 'pulseId' or 'cellId', not {pulse_index!r}")
    dim, other = ("pulse", "cellId") if pulse_index == "pulseId" else ("cell", "pulseId")
    coords = {}
    if pulse_index in ids:
        coords[dim] = (dim, ids[pulse_index])
    if other in ids:
        coords[other] = (dim, ids[other])
    return dim, coords


def _detector_view(arr: np.ndarray, lay: Layout, spec: DetectorSpec, source: str,
                   source_data: Mapping[str, Any], pulse_index: str
                   ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    order = canonical_order(lay.dims)
    view = arr.transpose(order)
    dims = [lay.dims[i] for i in order]
    coords: dict[str, Any] = {}
    pulse_dim = spec.pulse_dim
    if pulse_dim in dims:
        axis = dims.index(pulse_dim)
        if spec.train_resolved and view.shape[axis] == 1:
            view = view[(slice(None),) * axis + (0,)]
            del dims[axis]
        else:
            new_dim, pulse_coords = _pulse_coords(spec, source_data, view.shape[axis], pulse_index)
            dims[axis] = new_dim
            coords.update(pulse_coords)
    if "module" in dims:
        n = view.shape[dims.index("module")]
        coords["module"] = ("module", np.arange(spec.first_module, spec.first_module + n))
    else:
        modno = spec.module_number(source)
        if modno is not None:
            coords["module"] = modno
    return view, dims, coords


def _labelled(arr: np.ndarray, *, source: str, key: str, source_data: Mapping[str, Any],
              layout: LayoutArg, spec: DetectorSpec | None, pulse_index: str, where: str,
              protocol: str | None = None
              ) -> tuple[np.ndarray, list[str], dict[str, Any], str | None]:
    """``(view, dims, coords, layout name or None)`` of one value: label_array without xarray."""
    lay = None
    if spec is not None and key not in spec.pulse_keys and spec.holds_images(key) \
            and (arr.ndim >= 2 or layout is not None):
        n_pulses, from_file = pulse_count(spec, source_data)
        lay = resolve_layout(arr.shape, spec, n_pulses=n_pulses,
                             per_module=spec.module_number(source) is not None,
                             prefer_file=from_file or from_file_streamer(source_data, protocol),
                             layout=layout, where=where)
    if lay is not None:
        view, dims, coords = _detector_view(arr, lay, spec, source, source_data, pulse_index)
        return view, dims, coords, lay.name
    coords = {}
    if layout is not None:
        dims = list(parse_layout(layout))
        if len(dims) != arr.ndim:
            raise LayoutError(f"layout {tuple(dims)} has {len(dims)} axes but {where} has "
                              f"shape {arr.shape}")
    else:
        dims = [f"dim_{i}" for i in range(arr.ndim)]
    if spec is not None and layout is None and arr.ndim >= 1 \
            and key.startswith(spec.group + "."):
        n_pulses, _ = pulse_count(spec, source_data)
        if n_pulses is not None and arr.shape[0] == n_pulses:
            pulse_dim, coords = _pulse_coords(spec, source_data, n_pulses, pulse_index)
            dims = [pulse_dim] + [f"dim_{i}" for i in range(arr.ndim - 1)]
    return arr, dims, coords, None


def label_array(
    value: Any,
    *,
    source: str,
    key: str,
    source_data: Mapping[str, Any] | None = None,
    train_id: int | None = None,
    timestamp: Any = None,
    protocol: str | None = None,
    layout: LayoutArg = None,
    detector: str | DetectorSpec | None = None,
    pulse_index: str = "pulseId",
    name: str | None = None,
) -> xr.DataArray:
    """Label one value of a train as an :class:`xarray.DataArray`, without copying arrays.

    Parameters
    ----------
    value
        The value as received: ndarray, number, string, list.
    source, key
        Where it comes from; they name the array ``'<source>.<key>'`` and pick the detector.
    source_data
        The whole source dict, to find the pulse count and IDs (``image.pulseId``,
        ``image.cellId``, ``data.memoryCell``).
    train_id, timestamp, protocol
        Train ID (scalar ``trainId`` coordinate), timestamp and protocol version (attrs).
    layout
        ``None`` to detect; a layout name (``'online'``, ``'file'``, ``'file-raw'``,
        ``'labelled'``); or the dims of the received array, e.g. ``'pulse,ss,fs'`` or
        ``('fast_scan', 'slow_scan', 'pulse')``. For non-detector data, just names the dims.
    detector
        Detector family (``'AGIPD'``, ``'LPD'``, ``'DSSC'``, ``'JUNGFRAU'``, ``'ePix100'``),
        when the source name does not tell.
    pulse_index
        XTDF detectors: label the pulse axis with ``'pulseId'`` (dim ``'pulse'``, the default) or
        ``'cellId'`` (dim ``'cell'``), as extra-data's ``subtrain_index``.
    name
        Array name; default ``'<source>.<key>'``.

    Returns
    -------
    xarray.DataArray
        For detector data, a view on ``value`` with canonical dims.

    Raises
    ------
    kb_streams.layouts.LayoutError
        When ``layout`` does not fit the array.
    TypeError
        For values that are not arrays (nested dicts, None).

    Examples
    --------
    >>> import numpy as np
    >>> src = 'FXE_DET_LPD1M-1/DET/2CH0:xtdf'
    >>> data = {'image.data': np.zeros((256, 256, 20), np.float32),   # online: (fs, ss, pulse)
    ...         'image.pulseId': np.arange(20, dtype=np.uint64)}
    >>> da = label_array(data['image.data'], source=src, key='image.data', source_data=data,
    ...                  train_id=10000)
    >>> da.dims, int(da.trainId), int(da.module)
    (('pulse', 'slow_scan', 'fast_scan'), 10000, 2)
    >>> np.shares_memory(da.values, data['image.data'])
    True
    """
    where = f"source {source!r} key {key!r}"
    if train_id is not None:
        where += f" (train {train_id})"
    view, dims, labels, layout_name = _labelled(
        _as_array(value, where), source=source, key=key,
        source_data={} if source_data is None else source_data, layout=layout,
        spec=detector_for(source, detector), pulse_index=pulse_index, where=where,
        protocol=protocol)
    attrs: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    _context(attrs, coords, source=source, key=key, train_id=train_id, timestamp=timestamp,
             protocol=protocol)
    coords.update(labels)
    if layout_name is not None:
        attrs["layout"] = layout_name
    return new_dataarray(view, dims, coords, attrs,
                         name if name is not None else f"{source}.{key}")


def _layout_for_key(layout: LayoutArg | Mapping[str, LayoutArg], key: str, arr: np.ndarray,
                    spec: DetectorSpec | None) -> LayoutArg:
    if isinstance(layout, Mapping):
        return layout.get(key)
    if layout is None or spec is None or arr.ndim < 2 or key in spec.pulse_keys:
        return None
    if isinstance(layout, str) and "," not in layout and layout.strip() in {
            lay.name for lay in spec.layouts}:
        ndims = {len(lay.dims) for lay in spec.layouts if lay.name == layout.strip()}
        return layout if arr.ndim in ndims else None
    return layout if arr.ndim == len(parse_layout(layout)) else None


def label_source(
    source_data: Mapping[str, Any],
    *,
    source: str,
    train_id: int | None = None,
    timestamp: Any = None,
    protocol: str | None = None,
    keys: Iterable[str] | None = None,
    layout: LayoutArg | Mapping[str, LayoutArg] = None,
    detector: str | DetectorSpec | None = None,
    pulse_index: str = "pulseId",
) -> xr.Dataset:
    """All the keys of one source as an :class:`xarray.Dataset` (variables named by key).

    Metadata entries and values that are not arrays (nested dicts, None) are left out.
    Unlabelled dims are named ``'<key>.dim_0'``, ... so that keys of different lengths can share
    the Dataset; detector dims (``pulse``, ``slow_scan``, ...) are shared between keys.

    Parameters
    ----------
    source_data
        ``{key: value}`` of one source.
    source, train_id, timestamp, protocol, detector, pulse_index
        As for :func:`label_array`.
    keys
        Only these keys (default: all).
    layout
        A layout (see :func:`label_array`) for the detector arrays it fits by number of axes,
        or ``{key: layout}``.

    Examples
    --------
    >>> import numpy as np
    >>> ds = label_source({'beam.x': 1.5, 'adc': np.arange(4)}, source='SA1_XTD2_XGM/XGM/DOOCS',
    ...                   train_id=10001)
    >>> sorted(ds.data_vars), ds['adc'].dims, int(ds.trainId)
    (['adc', 'beam.x'], ('adc.dim_0',), 10001)
    """
    spec = detector_for(source, detector)
    variables: dict[str, xr.DataArray] = {}
    sizes: dict[str, int] = {}
    wanted = list(source_data) if keys is None else list(keys)
    for key in wanted:
        value = source_data[key]
        if is_metadata_key(key) or value is None or isinstance(value, Mapping):
            continue
        try:
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        except ValueError:  # ragged lists
            continue
        if arr.dtype.kind == "O":
            continue
        da = label_array(arr, source=source, key=key, source_data=source_data,
                         layout=_layout_for_key(layout, key, arr, spec), detector=spec,
                         pulse_index=pulse_index, name=key, protocol=protocol)
        renames = {}
        for dim, size in da.sizes.items():
            if dim.startswith("dim_") or sizes.get(dim, size) != size:
                renames[dim] = f"{key}.{dim}"
        if renames:
            da = da.rename(renames)
        sizes.update(da.sizes)
        da = da.drop_vars("trainId", errors="ignore")
        da.attrs = {k: v for k, v in da.attrs.items() if k == "layout"}
        variables[key] = da
    attrs: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    _context(attrs, coords, source=source, key="", train_id=train_id, timestamp=timestamp,
             protocol=protocol)
    del attrs["key"]
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def __getattr__(name: str) -> Any:  # the old import path of stack_modules
    if name == "stack_modules":
        from .stacking import stack_modules
        return stack_modules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
