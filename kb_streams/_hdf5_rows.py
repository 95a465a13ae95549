"""Rows of results keyed by train ID, and their HDF5 layout (written with SWMR, read back).

A *row* is one train's results: ``{name: Column}``. :func:`row_of` makes one from what a
pipeline emits (a DataArray, a Dataset, a mapping, a tuple of DataArrays, a number or array);
:class:`RowFile` appends batches of rows to an HDF5 file a reader can follow while it grows;
:func:`open_results` reads the file back as one :class:`xarray.Dataset`.

The layout (one file per run, as DAMNIT keeps ``p{proposal}_r{run}.h5``; netCDF-4 compatible):

* ``/trainId``: ``uint64 (rows,)``, the row index, a netCDF dimension and coordinate.
* ``/{name}/data``: ``(rows, *shape)`` per result (DAMNIT's place for a variable's data), with
  dimension scales: ``trainId`` (the root's) and one per other dim, holding the DataArray's
  coordinate values where it had them (other 1-D coordinates beside ``data``, named in its
  ``coordinates`` attribute). The DataArray's attrs (from the first row) sit on ``data``; the
  group has ``_damnit_objtype = 'dataarray'`` for DataArrays.

The ``segment`` label of a reduction's result (:mod:`kb_streams.reduce.segments`), when a
number, is saved as a result of its own. A train that lacks a result has the fill value there
(NaN for floats, 0 else). SWMR allows no new objects once readers may follow, so the variables
are those of the first batch; a new name later is reported, not written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from .train_id import train_id_of

__all__ = ["Column", "RowFile", "open_results", "row_of"]

_DIM_ONLY = "This is a netCDF dimension but not a netCDF variable. {:10d}"
_ATTR_TYPES = (str, int, float, np.integer, np.floating, np.bool_)


@dataclass
class Column:
    """One result of one train: values and (for DataArrays) labels."""

    values: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    labelled: bool = False


def _column(value: Any) -> Column:
    if isinstance(value, xr.DataArray):
        coords = {str(k): (str(c.dims[0]), np.array(c.values))
                  for k, c in value.coords.items()
                  if c.ndim == 1 and str(c.dims[0]) in value.dims}
        attrs = {k: v for k, v in value.attrs.items() if isinstance(v, _ATTR_TYPES)}
        return Column(np.array(value.values), tuple(map(str, value.dims)), coords, attrs, True)
    values = np.array(value)
    if values.dtype == object:
        raise TypeError(f"cannot save a {type(value).__name__} as an array")
    return Column(values, tuple(f"dim_{i}" for i in range(values.ndim)))


def _name(name: Any) -> str:
    return str(name).replace("/", "_")


def row_of(item: Any) -> tuple[int, dict[str, Column]]:
    """``(train ID, {name: Column})`` of one emitted item (copies: the item may be reused).

    Examples
    --------
    >>> tid, row = row_of(xr.Dataset({'mean': ('pulse', [1.0, 2.0])}, coords={'trainId': 7}))
    >>> tid, list(row), row['mean'].dims
    (7, ['mean'], ('pulse',))
    """
    tid = train_id_of(item)
    if tid is None:
        raise ValueError(f"{type(item).__name__} item carries no train ID")
    if isinstance(item, xr.Dataset):
        values = {name: item[name] for name in item.data_vars}
    elif isinstance(item, xr.DataArray):
        values = {item.name if item.name is not None else "value": item}
    elif isinstance(item, Mapping):
        values = {k: v for k, v in item.items() if k != "trainId"}
    elif isinstance(item, tuple) and hasattr(item, "as_dict"):
        values = item.as_dict()
    elif isinstance(item, tuple):
        values = {getattr(v, "name", None) or f"value{i}": v for i, v in enumerate(item)}
    else:
        values = {"value": item}
    segment = getattr(item, "attrs", {}).get("segment")
    if isinstance(segment, int | float | np.number) and "segment" not in values:
        values["segment"] = segment  # the closed segment a final result belongs to
    return tid, {_name(k): _column(v.drop_vars("trainId", errors="ignore")
                                   if isinstance(v, xr.DataArray) else v)
                 for k, v in values.items()}


def _fill(dtype: np.dtype) -> Any:
    return np.nan if dtype.kind in "fc" else 0


class RowFile:
    """Append rows to an HDF5 file, readable (SWMR) while it grows.

    Parameters
    ----------
    path
        The file; created (``mode='w'``: replaced) at the first batch.
    compression
        h5py compression for the data (e.g. ``'gzip'``); none by default (speed).
    """

    def __init__(self, path: str, *, compression: str | None = None) -> None:
        self.path = str(path)
        self.compression = compression
        self.file: Any = None
        self.rows = 0
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def append(self, rows: list[tuple[int, dict[str, Column]]]) -> list[str]:
        """Write a batch of rows; returns complaints (new names, wrong shapes) about them."""
        import h5py

        if self.file is None:
            self.file = h5py.File(self.path, "w", libver="latest")
            self._create(rows)
            self.file.swmr_mode = True
        problems: list[str] = []
        start, n = self.rows, len(rows)
        for name, (shape, dtype) in self._shapes.items():
            block = np.full((n, *shape), _fill(dtype), dtype)
            for i, (tid, row) in enumerate(rows):
                column = row.get(name)
                if column is None:
                    continue
                if column.values.shape != shape:
                    problems.append(f"train {tid}: {name} has shape {column.values.shape}, "
                                    f"the file {shape}")
                    continue
                block[i] = column.values
            data = self.file[name]["data"]
            data.resize(start + n, axis=0)
            data[start:] = block
        for tid, row in rows:
            problems += [f"train {tid}: {name} is new since the file was created"
                         for name in row if name not in self._shapes]
        ids = self.file["trainId"]
        ids.resize(start + n, axis=0)  # last, so readers see whole rows
        ids[start:] = [tid for tid, _ in rows]
        self.file.flush()
        self.rows += n
        return problems

    def _create(self, rows: list[tuple[int, dict[str, Column]]]) -> None:
        f = self.file
        f.attrs["kb_streams_layout"] = "rows by trainId: /trainId, /{name}/data"
        ids = f.create_dataset("trainId", (0,), np.uint64, maxshape=(None,), chunks=(256,))
        ids.make_scale("trainId")
        for _, row in rows:
            for name, column in row.items():
                if name not in self._shapes:
                    self._create_column(name, column, ids)

    def _create_column(self, name: str, column: Column, ids: Any) -> None:
        values = column.values
        shape = values.shape
        dtype = values.dtype if values.dtype != bool else np.dtype(np.uint8)
        self._shapes[name] = (shape, dtype)
        group = self.file.create_group(name)
        if column.labelled:
            group.attrs["_damnit_objtype"] = "dataarray"
        chunk_rows = max(1, min(64, (1 << 20) // max(values.nbytes, 1)))
        data = group.create_dataset("data", (0, *shape), dtype, maxshape=(None, *shape),
                                    chunks=(chunk_rows, *shape), fillvalue=_fill(dtype),
                                    compression=self.compression)
        data.attrs.update(column.attrs)
        data.dims[0].attach_scale(ids)
        for axis, (dim, size) in enumerate(zip(column.dims, shape, strict=True), start=1):
            if dim in column.coords:
                scale = group.create_dataset(dim, data=column.coords[dim][1])
                scale.make_scale(dim)
            else:
                scale = group.create_dataset(dim, data=np.arange(size))
                scale.make_scale(_DIM_ONLY.format(size))
            data.dims[axis].attach_scale(scale)
        others = [k for k in column.coords if k not in column.dims]
        for coord in others:
            dim, coord_values = column.coords[coord]
            var = group.create_dataset(coord, data=coord_values)
            var.dims[0].attach_scale(group[dim])
        if others:
            data.attrs["coordinates"] = " ".join(others)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def open_results(path: str) -> xr.Dataset:
    """Read a file written by ``to_hdf5`` as a Dataset indexed by ``trainId`` (with h5py only).

    Safe while the file is still being written (SWMR): rows written so far.
    """
    import h5py

    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        ids = f["trainId"][:]
        n = len(ids)
        variables: dict[str, xr.DataArray] = {}
        for name, group in f.items():
            if not isinstance(group, h5py.Group):
                continue
            data = group["data"]
            dims = ["trainId"] + [_dim_name(data, axis) for axis in range(1, data.ndim)]
            coords = {dim: group[dim][:] for dim in dims[1:] if not _dim_only(group[dim])}
            extra = data.attrs.get("coordinates", "")
            for coord in extra.split() if extra else []:
                coords[coord] = (_dim_name(group[coord], 0), group[coord][:])
            attrs = {k: v for k, v in data.attrs.items()
                     if k not in ("coordinates", "DIMENSION_LIST")}
            variables[name] = xr.DataArray(data[:n], dims=dims, coords=coords, attrs=attrs)
    return xr.Dataset(variables, coords={"trainId": ids})


def _dim_only(dataset: Any) -> bool:
    name = dataset.attrs.get("NAME", b"")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return name.startswith(_DIM_ONLY[:30])


def _dim_name(dataset: Any, axis: int) -> str:
    scales = dataset.dims[axis]
    return scales[0].name.rsplit("/", 1)[-1] if len(scales) else f"dim_{axis}"
