"""EXtra-data's generic ``KeyData.xarray()`` / ``.ndarray()`` for one key of one train.

``train[source, key].xarray()`` returns what ``run[source, key].xarray().sel(trainId=tid)``
returns offline for the same train: no detector labels (those live in the detector objects of
:mod:`kb_streams.components`, as in EXtra-data), dims ``dim_0``, ``dim_1``, ... of one entry,
a scalar ``trainId`` coordinate, or a ``trainId`` dimension repeating the train ID when the key
holds several entries per train (the frames of XTDF ``image.*`` keys), and the name
``'<source>.<key>'``. ``roi`` selects within each entry (the whole entry: ``(data_gain,
slow_scan, fast_scan)`` for raw AGIPD) and ``extra_dims`` names the entry's dims.

Detector data that arrives in the calibration pipeline's layout (``(fast_scan, slow_scan,
pulse)``, JUNGFRAU ``(slow_scan, fast_scan, cell)``) is first viewed in the order files store it,
so the same call gives the same array live and offline. Where the layout cannot be told,
:class:`~kb_streams.layouts.LayoutError` asks for ``layout=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._dataarray import new_dataarray
from .layouts import (
    DetectorSpec,
    canonical_order,
    detector_for,
    from_file_streamer,
    pulse_count,
    resolve_layout,
)

__all__ = ["entries", "keydata_xarray"]

#: detector families whose images files store in one fixed order (the others: as received)
_REORDERED = ("AGIPD", "LPD", "DSSC", "JUNGFRAU")


def _as_array(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def entries(arr: np.ndarray, *, source: str, key: str, source_data: Mapping[str, Any],
            protocol: str | None = None, layout: str | Sequence[str] | None = None,
            spec: DetectorSpec | None = None) -> tuple[np.ndarray, bool]:
    """``(view, several)``: ``arr`` in the order files store it, and whether its first axis
    holds several entries of the train (frames), as EXtra-data's index counts them.

    Examples
    --------
    >>> online = np.zeros((128, 512, 10), np.float32)       # (fs, ss, pulse)
    >>> data = {'image.data': online, 'image.pulseId': np.arange(10, dtype=np.uint64)}
    >>> view, several = entries(online, source='SPB_DET_AGIPD1M-1/DET/0CH0:xtdf',
    ...                         key='image.data', source_data=data)
    >>> view.shape, several, np.shares_memory(view, online)
    ((10, 512, 128), True, True)
    """
    spec = spec if spec is not None else detector_for(source)
    if spec is None or spec.name not in _REORDERED or spec.module_number(source) is None:
        return arr, False
    n, from_file = pulse_count(spec, source_data)
    group = spec.pulse_keys[0].partition(".")[0] + "."
    per_frame = spec.pulse_dim == "pulse" and key.startswith(group)
    if spec.holds_images(key) and key not in spec.pulse_keys and arr.ndim >= 2 \
            and not (from_file and n == 1):
        lay = resolve_layout(arr.shape, spec, n_pulses=n, per_module=True,
                             prefer_file=from_file or from_file_streamer(source_data, protocol),
                             layout=layout, where=f"source {source!r} key {key!r}")
        if lay is not None and not lay.name.startswith("file"):
            arr = arr.transpose(canonical_order(lay.dims))
            if per_frame and n == 1:  # EXtra-data gives a 1-frame train's entry alone
                return arr[0], False
    return arr, bool(per_frame and n is not None and n > 1 and arr.ndim >= 1
                     and arr.shape[0] == n)


def _roi_tuple(roi: Any) -> tuple:
    return roi if isinstance(roi, tuple) else (roi,)


def keydata_xarray(value: Any, *, source: str, key: str, source_data: Mapping[str, Any],
                   train_id: int | None, protocol: str | None = None,
                   extra_dims: Sequence[str] | None = None, roi: Any = (),
                   name: str | None = None, extra_coords: bool | Mapping[str, Any] | None = None,
                   layout: str | Sequence[str] | None = None) -> xr.DataArray:
    """One key of one train as ``run[source, key].xarray(...).sel(trainId=train_id)`` gives it.

    Examples
    --------
    >>> da = keydata_xarray(np.arange(6.0).reshape(2, 3), source='CAM', key='data.image.pixels',
    ...                     source_data={}, train_id=10000, roi=np.s_[:, 1:])
    >>> da.dims, da.shape, int(da.trainId), da.name
    (('dim_0', 'dim_1'), (2, 2), 10000, 'CAM.data.image.pixels')
    >>> keydata_xarray(np.zeros((2, 3)), source='CAM', key='x', source_data={}, train_id=1,
    ...                extra_dims=['y', 'x'], roi=np.s_[1]).coords['y'].item()
    1
    """
    arr, several = entries(_as_array(value), source=source, key=key, source_data=source_data,
                           protocol=protocol, layout=layout)
    entry_shape = arr.shape[several:]
    roi = _roi_tuple(roi)
    if roi:
        arr = arr[((slice(None),) if several else ()) + roi]
    coords: dict[str, Any] = {}
    if several:
        coords["trainId"] = ("trainId", np.full(arr.shape[0], train_id or 0, np.uint64))
    elif train_id is not None:
        coords["trainId"] = np.uint64(train_id)
    names = list(extra_dims) if extra_dims is not None else \
        [f"dim_{i}" for i in range(len(entry_shape))]
    if isinstance(extra_coords, Mapping):
        dims = names if extra_dims is not None else \
            [f"dim_{i}" for i in range(arr.ndim - several)]
        coords.update({k: (k, np.asarray(v)) if np.ndim(v) == 1 else v
                       for k, v in extra_coords.items()})
    elif extra_coords or extra_dims is not None:  # EXtra-data: positions within the entry
        if len(names) != len(entry_shape):
            raise ValueError(f"extra_dims {tuple(names)} names {len(names)} dims, but "
                             f"{source!r} {key!r} has {len(entry_shape)} in each entry")
        dims = []
        items = roi + (slice(None),) * (len(entry_shape) - len(roi))
        for dim, size, item in zip(names, entry_shape, items, strict=True):
            coord = np.arange(size)[item]
            if np.ndim(coord) == 0:
                coords[dim] = int(coord)
            else:
                coords[dim] = (dim, coord)
                dims.append(dim)
    else:
        dims = [f"dim_{i}" for i in range(arr.ndim - several)]
    if several:
        dims.insert(0, "trainId")
    if name is None:  # EXtra-data names a control key without its '.value'
        name = f"{source}.{key[:-6] if key.endswith('.value') and ':' not in source else key}"
    return new_dataarray(arr, dims, coords, {}, name)
