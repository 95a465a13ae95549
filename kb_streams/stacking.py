"""Stacking one key of per-module sources into ``('module', 'pulse', 'slow_scan', 'fast_scan')``.

The one place detector data is copied, in four named steps: label each module (views,
:mod:`kb_streams.labels`), decide the module numbers, copy the modules into one array laid out
as they arrive, and build the coordinates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ._dataarray import new_dataarray
from .detector_families import DETECTORS, DetectorSpec, detector_for, full_module_count
from .labels import LayoutArg, RoiArg, _as_array, _context, _labelled

__all__ = ["stack_modules"]

logger = logging.getLogger(__name__)


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
    roi: RoiArg = (),
    detector: str | DetectorSpec | None = None,
    pattern: str | None = None,
    pulse_index: str = "pulseId",
    train_id: int | None = None,
    timestamp: Any = None,
    protocol: str | None = None,
) -> xr.DataArray:
    """Stack one key of per-module sources into ``('module', 'pulse', 'slow_scan', 'fast_scan')``.

    This is the one place detector data is copied, once, into a single new array. That array is
    laid out in memory as the modules arrive (online XTDF data: ``(module, fast_scan,
    slow_scan, pulse)``), so each module is one straight copy, and the result is a transposed
    view of it: labelled in EXtra-data's order, whatever the memory order. (``.values`` is
    then not C-contiguous: ``np.ascontiguousarray``, pickle and Dask make a second, transposing
    copy of it; reduce before sending it to another process.)

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
    roi
        Pixels to keep in every module, as extra-data's ``roi``: ``np.s_[ss0:ss1, fs0:fs1]``
        (slices of ``slow_scan``, then ``fast_scan``), or as ``isel`` takes it:
        ``{'slow_scan': slice(ss0, ss1), 'fast_scan': slice(fs0, fs1)}``. Only these pixels are
        copied, so stacking a small ROI of every module is cheap.
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
    ...             'image.data': np.full((128, 512, 3), m, np.float32),  # online: (fs, ss, pulse)
    ...             'image.pulseId': np.arange(3, dtype=np.uint64)}
    ...         for m in (0, 2)}
    >>> arr = stack_modules(data, 'image.data', modules=4, train_id=10000)
    >>> arr.dims, arr.shape
    (('module', 'pulse', 'slow_scan', 'fast_scan'), (4, 3, 512, 128))
    >>> arr.module_present.values.tolist(), float(arr[2, 0, 0, 0]), bool(np.isnan(arr[1]).all())
    ([True, False, True, False], 2.0, True)
    >>> stack_modules(data, 'image.data', roi=np.s_[198:230, 57:89]).shape
    (16, 3, 32, 32)
    """
    if not data:
        raise ValueError(f"no sources to stack for key {key!r}")
    first = next(iter(data))
    spec = detector_for(first, detector)
    regex, first_module = _module_pattern(spec, pattern, first)
    in_train = f" (train {train_id})" if train_id is not None else ""
    found = _label_modules(data, key, regex, spec, layout=layout, roi=roi,
                           pulse_index=pulse_index, protocol=protocol, in_train=in_train)
    expected = _expected_modules(modules, found, spec, first, first_module)
    out = _copy_modules(found, expected, dtype, fill_value)
    ref = next(iter(found.values()))
    coords = _stack_coords(found, expected, train_id)
    attrs: dict[str, Any] = {}
    prefix = first.partition("/")[0]
    _context(attrs, coords, source=prefix, key=key, train_id=train_id, timestamp=timestamp,
             protocol=protocol)
    attrs["layout"] = ref.layout
    attrs["sources"] = [found[m].source for m in expected if m in found]
    return new_dataarray(out, ("module",) + ref.dims, coords, attrs, f"{prefix}.{key}")


def _label_modules(data: Mapping[str, Mapping[str, Any]], key: str, regex: re.Pattern,
                   spec: DetectorSpec | None, *, layout: LayoutArg, roi: RoiArg,
                   pulse_index: str, protocol: str | None, in_train: str) -> dict[int, _Module]:
    """Step 1: each module's labelled view of ``key`` (no copy), ROI applied, by module number."""
    found: dict[int, _Module] = {}
    for source, source_data in data.items():
        match = regex.search(source)
        if match is None:
            raise ValueError(f"source {source!r} has no module number matching {regex.pattern!r}")
        modno = int(match.group(1))
        if key not in source_data:
            continue
        where = f"source {source!r} key {key!r}{in_train}"
        view, dims, labels, layout_name = _labelled(
            _as_array(source_data[key], where), source=source, key=key, source_data=source_data,
            layout=layout, spec=detector_for(source, spec), pulse_index=pulse_index, where=where,
            protocol=protocol)
        view, dims = _without_unit_gain_axis(view, list(dims))
        if "module" in dims:
            raise ValueError(f"source {source!r} key {key!r} already holds several modules "
                             f"(dims {tuple(dims)}); label it with label_array()")
        if modno in found:
            raise ValueError(f"two sources for module {modno}: {found[modno].source!r} "
                             f"and {source!r}")
        found[modno] = _Module(source, _select_pixels(view, dims, roi, where), tuple(dims),
                               {name: c for name, c in labels.items() if isinstance(c, tuple)},
                               layout_name or "custom")
    if not found:
        raise ValueError(f"none of the sources {sorted(data)} has key {key!r}")
    ref = next(iter(found.values()))
    for mod in found.values():
        if mod.dims != ref.dims or mod.view.shape != ref.view.shape:
            raise ValueError(
                f"modules differ in shape for key {key!r}: {ref.source!r} has "
                f"{ref.sizes}, {mod.source!r} has {mod.sizes}{in_train}")
    return found


def _without_unit_gain_axis(view: np.ndarray, dims: list[str]
                            ) -> tuple[np.ndarray, list[str]]:
    """Raw LPD and DSSC files have a length-1 ``data_gain`` axis: dropped (a view), as
    EXtra-data's detector objects (and ours, :mod:`kb_streams.components`) drop it."""
    if "data_gain" not in dims or view.shape[dims.index("data_gain")] != 1:
        return view, dims
    axis = dims.index("data_gain")
    return view[(slice(None),) * axis + (0,)], dims[:axis] + dims[axis + 1:]


def _expected_modules(modules: int | Iterable[int] | None, found: Mapping[int, _Module],
                      spec: DetectorSpec | None, first: str, first_module: int) -> list[int]:
    """Step 2: the module numbers of the output (``modules=``, else the detector's full set)."""
    if modules is None:
        n = full_module_count(spec, first) if spec is not None else None
        expected = list(range(first_module, first_module + n)) if n else \
            list(range(min(first_module, min(found)), max(found) + 1))
    elif isinstance(modules, int | np.integer):
        expected = list(range(first_module, first_module + int(modules)))
    else:
        expected = [int(m) for m in modules]
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(f"modules {unexpected} found in the data are not among the expected "
                         f"modules {expected}")
    return expected


def _copy_modules(found: Mapping[int, _Module], expected: list[int], dtype: Any,
                  fill_value: float) -> np.ndarray:
    """Step 3: the one copy, each module a straight copy into its place; missing ones filled."""
    ref = next(iter(found.values()))
    out_dtype = np.dtype(dtype) if dtype is not None else \
        np.result_type(*[mod.view.dtype for mod in found.values()])
    fill = _fill_for(fill_value, out_dtype)
    out = _empty_stack(len(expected), ref.view, out_dtype)
    casting = "unsafe" if dtype is not None else "same_kind"
    for i, modno in enumerate(expected):
        if modno in found:
            np.copyto(out[i], found[modno].view, casting=casting)
        else:
            out[i] = fill
    return out


def _stack_coords(found: Mapping[int, _Module], expected: list[int],
                  train_id: int | None) -> dict[str, Any]:
    """Step 4: ``module``, ``module_present`` and the first module's pulse coordinates."""
    ref = next(iter(found.values()))
    coords: dict[str, Any] = {
        "module": ("module", np.asarray(expected)),
        "module_present": ("module", np.array([m in found for m in expected])),
    }
    for name, (dim, values) in ref.coords.items():
        for mod in found.values():
            if not np.array_equal(mod.coords[name][1], values):
                logger.warning("train %s: %s differs between modules %r and %r; using the first",
                               train_id, name, ref.source, mod.source)
                break
        coords[name] = (dim, values)
    return coords


class _Module(NamedTuple):
    """One module to stack: its labelled view (no copy yet) and its per-pulse coordinates."""

    source: str
    view: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, tuple[str, np.ndarray]]
    layout: str

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.dims, self.view.shape, strict=True))


def _select_pixels(view: np.ndarray, dims: list[str], roi: RoiArg, where: str) -> np.ndarray:
    """``view`` with ``roi`` (slices of slow_scan, fast_scan) applied: still a view."""
    if isinstance(roi, Mapping):
        unknown = set(roi) - {"slow_scan", "fast_scan"}
        if unknown:
            raise TypeError(f"roi selects slow_scan and fast_scan only, not {sorted(unknown)}")
        roi = (roi.get("slow_scan", slice(None)), roi.get("fast_scan", slice(None)))
    roi = (roi,) if isinstance(roi, slice) else roi
    if not roi:
        return view
    if not isinstance(roi, tuple) or len(roi) > 2 or \
            not all(isinstance(s, slice) for s in roi):
        raise TypeError(f"roi must be slices of (slow_scan, fast_scan), e.g. "
                        f"np.s_[10:60, 100:200], not {roi!r}")
    if dims[-2:] != ["slow_scan", "fast_scan"]:
        raise ValueError(f"roi selects pixels, but {where} has dims {tuple(dims)}")
    return view[(Ellipsis,) + roi + (slice(None),) * (2 - len(roi))]


def _empty_stack(n: int, like: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """An uninitialised ``(n,) + like.shape`` array, each ``[i]`` laid out in memory as ``like``.

    The allocation orders its axes as ``like``'s memory does (slowest first: online XTDF gives
    ``(module, fast_scan, slow_scan, pulse)``), and the transposed view in ``like``'s axis order
    is returned: copying a module in is then a straight memcpy, not a transposition.
    """
    order = sorted(range(like.ndim), key=lambda axis: -abs(like.strides[axis]))
    base = np.empty((n,) + tuple(like.shape[axis] for axis in order), dtype)
    return base.transpose((0,) + tuple(1 + order.index(axis) for axis in range(like.ndim)))


def _fill_for(fill_value: float, dtype: np.dtype) -> Any:
    if dtype.kind in "iub" and isinstance(fill_value, float) and np.isnan(fill_value):
        return dtype.type(0)
    with np.errstate(invalid="ignore", over="ignore"):
        fill = np.array(fill_value).astype(dtype)
    if not (fill == fill_value or (np.isnan(fill_value) if isinstance(fill_value, float)
                                   else False)):
        raise ValueError(f"fill_value {fill_value!r} cannot be stored as {dtype}")
    return fill
