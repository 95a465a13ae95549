"""The views a train gives of its parts: ``train[source]`` and ``train[source, key]``.

:class:`SourceData` and :class:`KeyData` hold no data of their own: they read the
:class:`~kb_streams.train.Train` they came from, spelled as EXtra-data spells them (control keys
without ``.value``), with labelled xarray through :mod:`kb_streams.labels` and
:mod:`kb_streams.keydata`. A missing source or key raises with the close names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .errors import PropertyNameError
from .keydata import keydata_xarray
from .labels import LayoutArg, is_metadata_key, label_source

if TYPE_CHECKING:
    from .train import Train

__all__ = ["SourceData", "KeyData", "did_you_mean"]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Text to add to a look-up error: close names in ``candidates``, else what there is."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    close += [c for c in candidates if name and name.lower() in c.lower() and c not in close]
    if close:
        return "; did you mean " + ", ".join(repr(c) for c in close[:5]) + "?"
    shown = ", ".join(repr(c) for c in sorted(candidates)[:10])
    return f"; available: {shown}" + (" ..." if len(candidates) > 10 else "") if candidates \
        else "; there are none"


class KeyData:
    """One key of one source in a train: ``train[source, key]``.

    ``key`` is spelled as in EXtra-data: a control key is found without its ``.value`` suffix
    (``'beamPosition.ixPos'`` reads ``'beamPosition.ixPos.value'``).

    Examples
    --------
    >>> import numpy as np
    >>> from kb_streams.train import Train
    >>> train = Train({'SA1_XTD2_XGM/XGM/DOOCS:output': {'data.intensityTD': np.ones(5)}},
    ...               {'SA1_XTD2_XGM/XGM/DOOCS:output': {'timestamp.tid': 10000}})
    >>> kd = train['SA1_XTD2_XGM/XGM/DOOCS:output', 'data.intensityTD']
    >>> kd.name, kd.shape, kd.dtype
    ('SA1_XTD2_XGM/XGM/DOOCS:output.data.intensityTD', (5,), dtype('float64'))
    >>> kd.xarray().dims
    ('dim_0',)
    """

    def __init__(self, train: Train, source: str, key: str, stored_key: str | None = None
                 ) -> None:
        self.train = train
        self.source = source
        self.key = key
        self._stored_key = stored_key or key

    @property
    def value(self) -> Any:
        """The value as received (array, number, string, list, ...)."""
        return self.train.data[self.source][self._stored_key]

    @property
    def name(self) -> str:
        """``'<source>.<key>'``, as extra-data names arrays."""
        return f"{self.source}.{self.key}"

    def xarray(self, extra_dims: Sequence[str] | None = None, roi: Any = (),
               name: str | None = None, extra_coords: Any = None, *,
               layout: LayoutArg = None) -> xr.DataArray:
        """This key as EXtra-data's ``KeyData.xarray()`` gives it for this train.

        The same dims, coordinates, dtype and name as ``run[source, key].xarray(extra_dims,
        roi, name).sel(trainId=train_id)`` offline (see :mod:`kb_streams.keydata`). Detector
        labels (``module``, ``pulse``, ``slow_scan``, ...) come from the detector objects in
        :mod:`kb_streams.components`, or :meth:`Train.stack_modules`, as in EXtra-data.

        Parameters
        ----------
        extra_dims
            Names of the dims of one entry (default ``dim_0``, ``dim_1``, ...).
        roi
            Slices of one entry (all its axes, e.g. ``np.s_[0, 10:60, 100:200]`` for raw AGIPD).
        name
            Array name, default ``'<source>.<key>'``.
        extra_coords
            ``True`` for position coordinates on the entry's dims (the default with
            ``extra_dims``), or ``{dim: values}``, as EXtra-data.
        layout
            Only for detector data whose layout the message cannot tell (``'online'``,
            ``'file'`` or the dims, as for :func:`kb_streams.labels.label_array`).
        """
        return keydata_xarray(self.value, source=self.source, key=self.key,
                              source_data=self.train.data[self.source],
                              train_id=self.train.train_id,
                              protocol=self.train.protocol_version, extra_dims=extra_dims,
                              roi=roi, name=name, extra_coords=extra_coords, layout=layout)

    def ndarray(self, roi: Any = (), *, layout: LayoutArg = None) -> np.ndarray:
        """The values of :meth:`xarray` (no copy unless the value is not an array)."""
        return self.xarray(roi=roi, layout=layout).data

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the value as received."""
        return tuple(np.shape(self.value))

    @property
    def ndim(self) -> int:
        """Number of axes of the value as received."""
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the value (of :func:`numpy.asarray` of it for non-arrays)."""
        value = self.value
        return value.dtype if isinstance(value, np.ndarray) else np.asarray(value).dtype

    @property
    def nbytes(self) -> int:
        """Size of the array data in bytes."""
        value = self.value
        return int(value.nbytes if isinstance(value, np.ndarray) else np.asarray(value).nbytes)

    def __repr__(self) -> str:
        return (f"<KeyData {self.name} shape={self.shape} dtype={self.dtype} "
                f"train={self.train.train_id}>")


class SourceData:
    """One source of a train: ``train[source]``.

    Examples
    --------
    >>> from kb_streams.train import Train
    >>> train = Train({'MID_DET/MOTOR/X': {'actualPosition': 1.5, 'isMoving': False}},
    ...               {'MID_DET/MOTOR/X': {'timestamp.tid': 10000}})
    >>> src = train['MID_DET/MOTOR/X']
    >>> src.keys(), src['actualPosition'].ndarray()
    (['actualPosition', 'isMoving'], array(1.5))
    """

    def __init__(self, train: Train, source: str) -> None:
        self.train = train
        self.source = source

    @property
    def data(self) -> Mapping[str, Any]:
        """``{key: value}`` as received (metadata entries included)."""
        return self.train.data[self.source]

    @property
    def meta(self) -> dict[str, Any]:
        """This source's metadata (``timestamp.tid``, ...)."""
        return self.train.meta.get(self.source, {})

    def keys(self) -> list[str]:
        """Sorted data keys, without the metadata some protocol versions put in the data."""
        return sorted(k for k in self.data if not is_metadata_key(k))

    def __contains__(self, key: object) -> bool:
        return key in self.data or (isinstance(key, str) and f"{key}.value" in self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __getitem__(self, key: str) -> KeyData:
        if key in self.data:
            return KeyData(self.train, self.source, key)
        if f"{key}.value" in self.data:  # a control key, spelled as EXtra-data spells it
            return KeyData(self.train, self.source, key, f"{key}.value")
        raise PropertyNameError(
            f"train {self.train.train_id}: source {self.source!r} has no key {key!r}"
            + did_you_mean(key, self.keys()))

    def xarray(self, layout: Any = None, *, keys: Iterable[str] | None = None,
               detector: str | None = None, pulse_index: str = "pulseId") -> xr.Dataset:
        """The source's keys as an :class:`xarray.Dataset` with a ``trainId`` coordinate.

        See :func:`kb_streams.labels.label_source`.
        """
        if keys is not None:
            keys = list(keys)
            for key in keys:
                self[key]  # noqa: B018 - clear error for a missing key
        return label_source(self.data, source=self.source, train_id=self.train.train_id,
                            timestamp=self.train.timestamp,
                            protocol=self.train.protocol_version, keys=keys, layout=layout,
                            detector=detector, pulse_index=pulse_index)

    def __repr__(self) -> str:
        return f"<SourceData {self.source} ({len(self.keys())} keys) train={self.train.train_id}>"
