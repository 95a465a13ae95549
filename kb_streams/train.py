"""The :class:`Train` record: one train's data from every source, with its ID and timestamp.

A Train wraps the ``(data, meta)`` pair a bridge client returns (or a
:class:`kb_streams.protocol.Message`) without copying anything. It reads the train ID and
timestamp from the metadata, gives EXtra-data-style access (``train[source]``,
``train[source, key]``: the views of :mod:`kb_streams.train_views`), :meth:`Train.select` and
module stacking through :mod:`kb_streams.stacking`. :func:`train_id_of` (any item's train ID)
lives in :mod:`kb_streams.train_id` and is re-exported here.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import xarray as xr

from .errors import PropertyNameError, SourceNameError
from .labels import LayoutArg, RoiArg, is_metadata_key
from .protocol import source_meta
from .stacking import stack_modules
from .train_id import train_id_of
from .train_views import KeyData, SourceData, did_you_mean

__all__ = ["Train", "SourceData", "KeyData", "SourceNameError", "PropertyNameError",
           "train_id_of"]

logger = logging.getLogger(__name__)

NAT = np.datetime64("NaT", "ns")
_warned_conflicts: set[str] = set()
_WARNED_MAX = 256


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
                                  + did_you_mean(source, self.data))
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
                                  + did_you_mean(globs[0], self.data))
        if not any(key in self.data[src] for src in names):
            raise PropertyNameError(
                f"train {self.train_id}: no key {key!r} in the {len(names)} sources matching "
                f"{sources!r}" + did_you_mean(key, {k for s in names for k in self.data[s]}))
        return stack_modules({src: self.data[src] for src in names}, key, modules=modules,
                             fill_value=fill_value, dtype=dtype, layout=layout, roi=roi,
                             detector=detector, pattern=pattern, pulse_index=pulse_index,
                             train_id=self.train_id, timestamp=self.timestamp,
                             protocol=self.protocol_version)

    def __repr__(self) -> str:
        when = "" if np.isnat(self.timestamp) else f" at {self.timestamp}"
        return f"<Train {self.train_id}{when}, {len(self.data)} sources>"
