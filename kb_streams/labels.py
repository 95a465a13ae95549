"""Labelled xarray views of bridge data, with EXtra-data's names.

Detector arrays become zero-copy views with dims ``('pulse', 'slow_scan', 'fast_scan')`` per
module (JUNGFRAU: ``'cell'``; raw AGIPD files: ``'data_gain'`` after ``'pulse'``), or
``('module', 'pulse', 'slow_scan', 'fast_scan')`` for a multi-module source. The axes are moved
with :func:`numpy.transpose`, which makes a view: labelling a 352-pulse train costs the same as a
1-pulse one. Only :func:`stack_modules` copies (into one new array).

Other data follows ``KeyData.xarray()`` in extra-data: scalars become 0-d arrays, vectors get
``dim_0``, ``dim_1``, ..., and the name is ``'<source>.<key>'``. Per-pulse vectors of a detector
source (``image.cellId``, JUNGFRAU ``data.frameNumber``, ...) get the pulse/cell dimension.

Every array carries a scalar ``trainId`` coordinate (``uint64``, as extra-data) when the train ID
is known, and attrs ``source``, ``key``, ``timestamp`` (``datetime64[ns]``, NaT when unknown) and
``protocol`` (the bridge protocol version, ``'unknown'`` when not given); detector arrays also
``layout`` (``'online'``, ``'file'``, ``'file-raw'``, ``'labelled'`` or ``'custom'``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .layouts import (
    DETECTORS,
    DetectorSpec,
    Layout,
    LayoutError,
    canonical_order,
    detector_for,
    full_module_count,
    parse_layout,
    pulse_count,
    resolve_layout,
)

__all__ = ["label_array", "label_source", "stack_modules", "is_metadata_key"]

logger = logging.getLogger(__name__)

LayoutArg = str | Sequence[str] | None
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
    arr = _as_array(value, where)
    source_data = {} if source_data is None else source_data
    attrs: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    _context(attrs, coords, source=source, key=key, train_id=train_id, timestamp=timestamp,
             protocol=protocol)

    spec = detector_for(source, detector)
    lay = None
    if spec is not None and key not in spec.pulse_keys and spec.holds_images(key) \
            and (arr.ndim >= 2 or layout is not None):
        n_pulses, from_file = pulse_count(spec, source_data)
        lay = resolve_layout(arr.shape, spec, n_pulses=n_pulses,
                             per_module=spec.module_number(source) is not None,
                             prefer_file=from_file, layout=layout, where=where)
    if lay is not None:
        view, dims, det_coords = _detector_view(arr, lay, spec, source, source_data, pulse_index)
        coords.update(det_coords)
        attrs["layout"] = lay.name
    else:
        view = arr
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
                pulse_dim, pulse_coords = _pulse_coords(spec, source_data, n_pulses, pulse_index)
                dims = [pulse_dim] + [f"dim_{i}" for i in range(arr.ndim - 1)]
                coords.update(pulse_coords)
    return xr.DataArray(view, dims=dims, coords=coords, attrs=attrs,
                        name=name if name is not None else f"{source}.{key}")


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
                         pulse_index=pulse_index, name=key)
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


def _module_pattern(spec: DetectorSpec | None, pattern: str | None, source: str
                    ) -> tuple[re.Pattern, int]:
    if pattern is not None:
        return re.compile(pattern), spec.first_module if spec else 0
    if spec is not None:
        return re.compile(spec.module_re), spec.first_module
    for family in ("AGIPD", "JUNGFRAU"):
        if re.search(DETECTORS[family].module_re, source):
            return re.compile(DETECTORS[family].module_re), DETECTORS[family].first_module
    raise ValueError(f"cannot find a module number in source {source!r}; pass pattern= (a regex "
                     "with one group) or detector=")


def stack_modules(
    data: Mapping[str, Mapping[str, Any]],
    key: str = "image.data",
    *,
    modules: int | Iterable[int] | None = None,
    fill_value: float = np.nan,
    dtype: Any = None,
    layout: LayoutArg = None,
    detector: str | DetectorSpec | None = None,
    pattern: str | None = None,
    pulse_index: str = "pulseId",
    train_id: int | None = None,
    timestamp: Any = None,
    protocol: str | None = None,
) -> xr.DataArray:
    """Stack one key of per-module sources into ``('module', 'pulse', 'slow_scan', 'fast_scan')``.

    This is the one place detector data is copied: into a single new array, each module
    transposed from its received layout on the way.

    Parameters
    ----------
    data
        ``{source: {key: value}}`` holding only the module sources to stack (one per module;
        :meth:`kb_streams.Train.stack_modules` selects them by glob). Sources without ``key``
        count as missing modules.
    key
        The key to stack, e.g. ``'image.data'``, JUNGFRAU ``'data.adc'``.
    modules
        The module numbers expected: a count (from the first module number of the family:
        0 for XTDF, 1 for JUNGFRAU), or the numbers themselves. Default: the detector's full set
        when the family fixes it (16; 8 for AGIPD500K), else the first number up to the highest
        module found.
    fill_value
        Value for missing modules. NaN (the default) fills float data with NaN and integer data
        with 0 (integers cannot hold NaN and are not promoted, to keep the one allocation
        small); the boolean ``module_present`` coordinate tells real modules from filled ones.
        Pass ``dtype=np.float32`` to get NaN for raw data.
    dtype
        dtype of the output (default: the modules' common dtype).
    layout, detector, pulse_index
        As for :func:`label_array`, applied to each module.
    pattern
        Regex with one group giving the module number in a source name. Default for the family:
        ``/(?:DET|CORR)/(\\d+)CH`` for XTDF, ``/(?:DET|CORR)/(?:JNGFR|MODULE_|RECEIVER-)(\\d+)``
        for JUNGFRAU.
    train_id, timestamp, protocol
        As for :func:`label_array`.

    Returns
    -------
    xarray.DataArray
        Coordinates ``module`` (the module numbers), ``module_present`` (bool, on ``module``),
        the pulse coordinates of the first module present, and ``trainId``.

    Examples
    --------
    >>> import numpy as np
    >>> data = {f'SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf': {
    ...             'image.data': np.full((3, 512, 128), m, np.float32),
    ...             'image.pulseId': np.arange(3, dtype=np.uint64)}
    ...         for m in (0, 2)}
    >>> arr = stack_modules(data, 'image.data', modules=4, train_id=10000)
    >>> arr.dims, arr.shape
    (('module', 'pulse', 'slow_scan', 'fast_scan'), (4, 3, 512, 128))
    >>> arr.module_present.values.tolist(), float(arr[2, 0, 0, 0]), bool(np.isnan(arr[1]).all())
    ([True, False, True, False], 2.0, True)
    """
    if not data:
        raise ValueError(f"no sources to stack for key {key!r}")
    first = next(iter(data))
    spec = detector_for(first, detector)
    regex, first_module = _module_pattern(spec, pattern, first)

    views: dict[int, xr.DataArray] = {}
    for source, source_data in data.items():
        match = regex.search(source)
        if match is None:
            raise ValueError(f"source {source!r} has no module number matching {regex.pattern!r}")
        modno = int(match.group(1))
        if key not in source_data:
            continue
        da = label_array(source_data[key], source=source, key=key, source_data=source_data,
                         train_id=train_id, layout=layout, detector=spec, pulse_index=pulse_index)
        if "module" in da.dims:
            raise ValueError(f"source {source!r} key {key!r} already holds several modules "
                             f"(dims {da.dims}); label it with Train[source, key].xarray()")
        if modno in views:
            raise ValueError(f"two sources for module {modno}: {views[modno].attrs['source']!r} "
                             f"and {source!r}")
        views[modno] = da
    if not views:
        raise ValueError(f"none of the sources {sorted(data)} has key {key!r}")

    ref = next(iter(views.values()))
    for da in views.values():
        if da.dims != ref.dims or da.shape != ref.shape:
            raise ValueError(
                f"modules differ in shape for key {key!r}: {ref.attrs['source']!r} has "
                f"{dict(ref.sizes)}, {da.attrs['source']!r} has {dict(da.sizes)}"
                + (f" (train {train_id})" if train_id is not None else ""))

    if modules is None:
        n = full_module_count(spec, first) if spec is not None else None
        expected = list(range(first_module, first_module + n)) if n else \
            list(range(min(first_module, min(views)), max(views) + 1))
    elif isinstance(modules, int | np.integer):
        expected = list(range(first_module, first_module + int(modules)))
    else:
        expected = [int(m) for m in modules]
    unexpected = sorted(set(views) - set(expected))
    if unexpected:
        raise ValueError(f"modules {unexpected} found in the data are not among the expected "
                         f"modules {expected}")

    out_dtype = np.dtype(dtype) if dtype is not None else \
        np.result_type(*[da.dtype for da in views.values()])
    fill = _fill_for(fill_value, out_dtype)
    out = np.empty((len(expected),) + ref.shape, dtype=out_dtype)
    casting = "unsafe" if dtype is not None else "same_kind"
    for i, modno in enumerate(expected):
        if modno in views:
            _copy_transposed(out[i], views[modno].data, casting)
        else:
            out[i] = fill

    coords: dict[str, Any] = {
        "module": ("module", np.asarray(expected)),
        "module_present": ("module", np.array([m in views for m in expected])),
    }
    for name, coord in ref.coords.items():
        if name in ("module", "trainId") or not coord.dims:
            continue
        for da in views.values():
            if not np.array_equal(da.coords[name].values, coord.values):
                logger.warning("train %s: %s differs between modules %r and %r; using the first",
                               train_id, name, ref.attrs["source"], da.attrs["source"])
                break
        coords[name] = (coord.dims, coord.values)
    attrs: dict[str, Any] = {}
    prefix = first.partition("/")[0]
    _context(attrs, coords, source=prefix, key=key, train_id=train_id, timestamp=timestamp,
             protocol=protocol)
    attrs["layout"] = ref.attrs.get("layout", "custom")
    attrs["sources"] = [views[m].attrs["source"] for m in expected if m in views]
    return xr.DataArray(out, dims=("module",) + ref.dims, coords=coords, attrs=attrs,
                        name=f"{prefix}.{key}")


_FAR = 4096  # bytes between neighbours on the last axis beyond which a plain copy thrashes
_BLOCK = 16


def _copy_transposed(dst: np.ndarray, src: np.ndarray, casting: str) -> None:
    """``dst[...] = src`` for a transposed view: in blocks along the last axis when the source's
    neighbours there are far apart in memory (online XTDF: one fast_scan step is a whole
    (slow_scan, pulse) plane), which keeps the reads cache-friendly (about 2x faster)."""
    if src.ndim < 2 or abs(src.strides[-1]) < _FAR:
        np.copyto(dst, src, casting=casting)
        return
    for start in range(0, src.shape[-1], _BLOCK):
        block = np.s_[..., start:start + _BLOCK]
        np.copyto(dst[block], src[block], casting=casting)


def _fill_for(fill_value: float, dtype: np.dtype) -> Any:
    if dtype.kind in "iub" and isinstance(fill_value, float) and np.isnan(fill_value):
        return dtype.type(0)
    with np.errstate(invalid="ignore", over="ignore"):
        fill = np.array(fill_value).astype(dtype)
    if not (fill == fill_value or (np.isnan(fill_value) if isinstance(fill_value, float)
                                   else False)):
        raise ValueError(f"fill_value {fill_value!r} cannot be stored as {dtype}")
    return fill
