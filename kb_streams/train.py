"""The :class:`Train` record: one train's data from every source, with its ID and timestamp.

A Train wraps the ``(data, meta)`` pair a bridge client returns (or a
:class:`kb_streams.protocol.Message`) without copying anything. It reads the train ID and
timestamp from the metadata, gives EXtra-data-style access (``train[source]``,
``train[source, key]``, :meth:`Train.select`) and labelled xarray views through
:mod:`kb_streams.labels`.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import xarray as xr

from .errors import PropertyNameError, SourceNameError
from .keydata import keydata_xarray
from .labels import LayoutArg, RoiArg, is_metadata_key, label_source
from .protocol import find_train_id, source_meta
from .stacking import stack_modules

__all__ = ["Train", "SourceData", "KeyData", "SourceNameError", "PropertyNameError",
           "train_id_of"]

logger = logging.getLogger(__name__)

NAT = np.datetime64("NaT", "ns")
_warned_conflicts: set[str] = set()
_WARNED_MAX = 256


def _close(name: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    close += [c for c in candidates if name and name.lower() in c.lower() and c not in close]
    if close:
        return "; did you mean " + ", ".join(repr(c) for c in close[:5]) + "?"
    shown = ", ".join(repr(c) for c in sorted(candidates)[:10])
    return f"; available: {shown}" + (" ..." if len(candidates) > 10 else "") if candidates \
        else "; there are none"


def _timestamp(meta: Mapping[str, Any]) -> np.datetime64:
    """``datetime64[ns]`` from ``timestamp.sec`` + ``timestamp.frac`` (attoseconds), else float."""
    sec, frac = meta.get("timestamp.sec"), meta.get("timestamp.frac")
    if sec is not None:
        try:
            frac_s = str(frac if frac is not None else "0").strip()
            # 18 digits of attoseconds; a shorter string is fraction digits padded on the right
            atto = int(frac_s.ljust(18, "0")[:18]) if frac_s.isdigit() else 0
            return np.datetime64(int(str(sec).strip()) * 10**9 + atto // 10**9, "ns")
        except (ValueError, OverflowError):
            pass
    value = meta.get("timestamp")
    if value is not None and not isinstance(value, bool):
        try:
            ns = int(Decimal(repr(float(value))) * 10**9)
            return np.datetime64(ns, "ns")
        except (ValueError, TypeError, OverflowError, InvalidOperation):
            pass
    return NAT


class KeyData:
    """One key of one source in a train: ``train[source, key]``.

    ``key`` is spelled as in EXtra-data: a control key is found without its ``.value`` suffix
    (``'beamPosition.ixPos'`` reads ``'beamPosition.ixPos.value'``).

    Examples
    --------
    >>> import numpy as np
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
            + _close(key, self.keys()))

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


class Train:
    """One train from a Karabo bridge: data of every source, train ID, timestamp.

    Parameters
    ----------
    data
        ``{source: {key: value}}`` as returned by a bridge client; kept as is (no copy).
    meta
        ``{source: {'timestamp.tid': ..., 'timestamp.sec': ..., ...}}``. Where it is empty (protocol
        2.0/2.1, data from files), the metadata is read from the data (``'metadata'`` or
        ``'metadata.*'`` keys).
    protocol_version
        The bridge protocol version the train arrived with, if known.

    Attributes
    ----------
    data, meta, protocol_version
        As given (``meta`` completed from the data where it was empty).
    train_id : int or None
        ``timestamp.tid`` of the first source that has one. Sources that disagree are listed in
        ``train_id_conflicts`` (``{source: their train ID}``) and logged, not raised.
    timestamp : numpy.datetime64
        ``datetime64[ns]`` from ``timestamp.sec`` and ``timestamp.frac`` (exact integers), else
        from the float ``timestamp``; NaT when no source has one.

    Examples
    --------
    >>> import numpy as np
    >>> data = {'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf': {
    ...     'image.data': np.zeros((128, 512, 4), np.uint16),      # online: (fs, ss, pulse)
    ...     'image.pulseId': np.arange(4, dtype=np.uint64)}}
    >>> meta = {'SPB_DET_AGIPD1M-1/DET/0CH0:xtdf': {
    ...     'timestamp.tid': 10000, 'timestamp.sec': '1795612356',
    ...     'timestamp.frac': '759750800000000000'}}
    >>> train = Train(data, meta, protocol_version='2.2')
    >>> train.train_id, train.timestamp
    (10000, np.datetime64('2026-11-25T13:12:36.759750800'))
    >>> train['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf', 'image.data'].xarray().dims   # as EXtra-data
    ('trainId', 'dim_0', 'dim_1')
    """

    def __init__(self, data: Mapping[str, Mapping[str, Any]],
                 meta: Mapping[str, Mapping[str, Any]] | None = None, *,
                 protocol_version: str | None = None) -> None:
        self.data = data
        meta = {} if meta is None else meta
        self.meta: dict[str, dict[str, Any]] = {
            src: source_meta(src, data, meta) for src in list(data) + [
                s for s in meta if s not in data]}
        self.protocol_version = protocol_version
        self.train_id_conflicts: dict[str, int] = {}
        self.train_id: int | None = None
        for src in self.meta:
            tid = self.meta[src].get("timestamp.tid")
            if tid is None:
                continue
            if self.train_id is None:
                self.train_id = int(tid)
            elif int(tid) != self.train_id:
                self.train_id_conflicts[src] = int(tid)
        if self.train_id_conflicts:
            self._log_conflicts()
        self.timestamp = NAT
        for src_meta in self.meta.values():
            ts = _timestamp(src_meta)
            if not np.isnat(ts):
                self.timestamp = ts
                break

    def _log_conflicts(self) -> None:
        key = ",".join(sorted(self.train_id_conflicts))
        level = logging.DEBUG if key in _warned_conflicts else logging.WARNING
        if level == logging.WARNING and len(_warned_conflicts) < _WARNED_MAX:
            _warned_conflicts.add(key)
        logger.log(level, "train %s: sources disagree on the train ID, keeping %s: %s",
                   self.train_id, self.train_id, self.train_id_conflicts)

    @classmethod
    def from_message(cls, msg: Any) -> Train:
        """Wrap a decoded message (anything with ``.data``, ``.meta``, ``.protocol_version``).

        Examples
        --------
        >>> from kb_streams.protocol import Message
        >>> msg = Message({'A/B/C': {'x': 1}}, {'A/B/C': {'timestamp.tid': 7}}, '2.2', 0)
        >>> Train.from_message(msg).train_id
        7
        """
        return cls(msg.data, msg.meta, protocol_version=getattr(msg, "protocol_version", None))

    @property
    def sources(self) -> list[str]:
        """Sorted source names."""
        return sorted(self.data)

    @property
    def age(self) -> float | None:
        """Seconds since the train's timestamp (None without a timestamp)."""
        if np.isnat(self.timestamp):
            return None
        return (time.time_ns() - int(self.timestamp.astype("int64"))) / 1e9

    def __contains__(self, source: object) -> bool:
        return source in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __getitem__(self, item: str | tuple[str, str]) -> SourceData | KeyData:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise TypeError(f"use train[source] or train[source, key], not {item!r}")
            source, key = item
            return self._source(source)[key]
        return self._source(item)

    def _source(self, source: str) -> SourceData:
        if source not in self.data:
            raise SourceNameError(f"train {self.train_id} has no source {source!r}"
                                  + _close(source, self.data))
        return SourceData(self, source)

    def select(self, selection: str | Iterable[Any] | Mapping[str, Any] = "*",
               key_glob: str = "*") -> Train:
        """A Train with only some sources and keys, like extra-data's ``select``.

        Parameters
        ----------
        selection
            A source glob (with ``key_glob``); an iterable of source globs or of
            ``(source_glob, key_glob)`` pairs; or a dict ``{source: keys or None}`` (exact
            names, ``None`` for all keys).
        key_glob
            Key glob used with a source glob.

        Returns
        -------
        Train
            Sharing the arrays (no copy), with the same train ID and timestamp. Sources left
            with no matching keys are dropped (unless the key pattern is ``'*'``).

        Examples
        --------
        >>> train = Train({'A/DET/0CH0:xtdf': {'image.data': 1, 'image.cellId': 2},
        ...                'B/XGM/DOOCS': {'data.x': 3}}, {'A/DET/0CH0:xtdf': {'timestamp.tid': 5}})
        >>> sel = train.select('*/DET/*', 'image.d*')
        >>> sel.sources, sel['A/DET/0CH0:xtdf'].keys(), sel.train_id
        (['A/DET/0CH0:xtdf'], ['image.data'], 5)
        """
        if isinstance(selection, str):
            patterns: list[tuple[str, Any]] = [(selection, key_glob)]
        elif isinstance(selection, Mapping):
            patterns = [(src, None if keys is None else set(keys))
                        for src, keys in selection.items()]
            for src, _ in patterns:
                self._source(src)
        else:
            patterns = [(p, key_glob) if isinstance(p, str) else tuple(p) for p in selection]
        exact = isinstance(selection, Mapping)
        data: dict[str, dict[str, Any]] = {}
        for src, source_data in self.data.items():
            for src_pat, key_pat in patterns:
                if not (src == src_pat if exact else fnmatch.fnmatchcase(src, src_pat)):
                    continue
                if key_pat is None or key_pat == "*":
                    data.setdefault(src, {}).update(source_data)
                    continue
                matched = {k: v for k, v in source_data.items() if not is_metadata_key(k)
                           and (k in key_pat if isinstance(key_pat, set)
                                else fnmatch.fnmatchcase(k, key_pat))}
                if matched:
                    kept = data.setdefault(src, {})
                    kept.update((k, v) for k, v in source_data.items() if is_metadata_key(k))
                    kept.update(matched)
        return self._derived(data)

    def _derived(self, data: dict[str, dict[str, Any]]) -> Train:
        new = object.__new__(Train)
        new.data = data
        new.meta = {src: self.meta[src] for src in data if src in self.meta}
        new.protocol_version = self.protocol_version
        new.train_id = self.train_id
        new.train_id_conflicts = {s: t for s, t in self.train_id_conflicts.items() if s in data}
        new.timestamp = self.timestamp
        return new

    def stack_modules(self, key: str = "image.data",
                      sources: str | Sequence[str] = "*/DET/*CH0:xtdf", *,
                      fill_value: float = np.nan, layout: LayoutArg = None,
                      modules: int | Iterable[int] | None = None, dtype: Any = None,
                      roi: RoiArg = (), detector: str | None = None,
                      pattern: str | None = None, pulse_index: str = "pulseId") -> xr.DataArray:
        """Stack a key of per-module sources: ``('module', 'pulse', 'slow_scan', 'fast_scan')``.

        Copies the data once, into one new array laid out as the modules arrive (a straight
        copy per module), labelled through a transposed view. See
        :func:`kb_streams.labels.stack_modules` for ``modules``, ``fill_value`` (NaN for
        floats, 0 for integers, with a ``module_present`` coordinate), ``dtype``, ``roi``
        (``np.s_[ss0:ss1, fs0:fs1]`` or ``{'slow_scan': ..., 'fast_scan': ...}``: copy only
        these pixels of each module), ``pattern``.

        Parameters
        ----------
        key
            ``'image.data'`` for AGIPD/LPD/DSSC, ``'data.adc'`` for JUNGFRAU, ...
        sources
            A glob (default: raw XTDF module sources, ``'*/DET/*CH0:xtdf'``; corrected ones are
            ``'*/CORR/*CH0:output'``, JUNGFRAU ``'*/DET/JNGFR*'``) or a list of globs/names.

        Examples
        --------
        >>> import numpy as np
        >>> data = {f'FXE_XAD_JF1M/DET/JNGFR0{m}:daqOutput': {
        ...     'data.adc': np.zeros((512, 1024, 16), np.float32),     # online: (ss, fs, cell)
        ...     'data.memoryCell': np.arange(16)} for m in (1, 2)}
        >>> train = Train(data, {s: {'timestamp.tid': 1} for s in data})
        >>> arr = train.stack_modules('data.adc', '*/DET/JNGFR*')
        >>> arr.dims, arr.module.values.tolist()
        (('module', 'cell', 'slow_scan', 'fast_scan'), [1, 2])
        """
        globs = [sources] if isinstance(sources, str) else list(sources)
        names = [src for src in self.sources
                 if any(fnmatch.fnmatchcase(src, g) for g in globs)]
        if not names:
            raise SourceNameError(f"train {self.train_id}: no source matches {sources!r}"
                                  + _close(globs[0], self.data))
        if not any(key in self.data[src] for src in names):
            raise PropertyNameError(
                f"train {self.train_id}: no key {key!r} in the {len(names)} sources matching "
                f"{sources!r}" + _close(key, {k for s in names for k in self.data[s]}))
        return stack_modules({src: self.data[src] for src in names}, key, modules=modules,
                             fill_value=fill_value, dtype=dtype, layout=layout, roi=roi,
                             detector=detector, pattern=pattern, pulse_index=pulse_index,
                             train_id=self.train_id, timestamp=self.timestamp,
                             protocol=self.protocol_version)

    def __repr__(self) -> str:
        when = "" if np.isnat(self.timestamp) else f" at {self.timestamp}"
        return f"<Train {self.train_id}{when}, {len(self.data)} sources>"


def train_id_of(item: Any) -> int | None:
    """The train ID an item carries, or ``None``: what the stream nodes order and report by.

    Looks, in this order, at a ``train_id`` attribute (:class:`Train`, ``Message``), a scalar
    ``trainId`` coordinate or attribute (xarray; for the result of a reduction over trains, its
    ``last_train_id`` attribute), a ``(data, meta)`` pair from a bridge client
    (``meta[source]['timestamp.tid']``), a ``'trainId'`` key of a mapping, and else at the
    parts of a tuple, e.g. ``(delay, labelled_array)``.

    Examples
    --------
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
