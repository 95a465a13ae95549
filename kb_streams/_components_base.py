"""What EXtra-data's detector objects share on a live train: module sources and one key stacked.

:class:`_MultimodDetector` finds a detector's module sources in a
:class:`~kb_streams.train.Train` with EXtra-data's source-name patterns (corrected preferred to
raw), stacks one key of every module into a new array (missing modules filled), and gives
``masked_data`` (:class:`_MaskedData`). The detector families on top of it are in
:mod:`kb_streams.components`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from .errors import SourceNameError
from .keydata import entries
from .train import Train

__all__: list[str] = []


class _MultimodDetector:
    """What the detector families share: finding module sources and stacking one key."""

    _det_name_pat = r"([^/]+)"
    _source_raw_pat = r"/DET/(?P<modno>\d+)CH"
    _source_corr_pat = r"/CORR/(?P<modno>\d+)CH"
    _main_data_key = ""
    _mask_data_key = ""
    _modnos_start_at = 0
    _entry_per_frame = False  # XTDF sources: one entry per frame, else one per train
    module_shape: tuple[int, int] = (0, 0)
    n_modules = 0

    def __init__(self, train: Train, detector_name: str | None = None,
                 modules: Iterable[int] | None = None, *, min_modules: int = 1,
                 raw: bool | None = None) -> None:
        if min_modules <= 0:
            raise ValueError(f"min_modules must be a positive integer, not {min_modules!r}")
        self.train = train
        self.detector_name = detector_name or self._find_detector_name(train)
        self.source_to_modno = self._identify_sources(train, self.detector_name, raw)
        self.expected_modules = sorted(modules) if modules is not None else \
            sorted(self.source_to_modno.values())
        self.source_to_modno = {s: m for s, m in self.source_to_modno.items()
                                if m in self.expected_modules}
        self.modno_to_source = {m: s for s, m in self.source_to_modno.items()}
        present = [m for m in self.modno_to_source
                   if self._main_data_key in train.data[self.modno_to_source[m]]]
        if len(present) < min_modules:
            raise ValueError(f"train {train.train_id}: {len(present)} modules of "
                             f"{self.detector_name} have data, fewer than {min_modules}")

    @classmethod
    def _find_detector_name(cls, train: Train) -> str:
        names = set()
        for pat in (cls._source_raw_pat, cls._source_corr_pat):
            regex = re.compile(f"(?P<detname>{cls._det_name_pat}){pat}")
            names.update(m["detname"] for src in train.sources if (m := regex.match(src)))
        if not names:
            raise SourceNameError(f"train {train.train_id} has no {cls.__name__} source "
                                  f"({cls._det_name_pat}{cls._source_raw_pat} or "
                                  f"{cls._source_corr_pat})")
        if len(names) > 1:
            raise ValueError(f"Multiple detectors found in the train: {sorted(names)}. Pass "
                             f"detector_name to {cls.__name__}() to pick one.")
        return names.pop()

    def _identify_sources(self, train: Train, name: str, raw: bool | None) -> dict[str, int]:
        def matching(pat: str) -> dict[str, int]:
            regex = re.compile(re.escape(name) + pat)
            return {src: int(m["modno"] or 0) for src in train.sources
                    if (m := regex.match(src))}

        found = {} if raw else matching(self._source_corr_pat)  # prefer corrected, as EXtra-data
        if not found and raw is not False:
            found = matching(self._source_raw_pat)
        if not found:
            raise SourceNameError(f"train {train.train_id} has no {name} module sources")
        return found

    @property
    def train_id(self) -> int | None:
        """The train these data belong to."""
        return self.train.train_id

    @property
    def modules(self) -> list[int]:
        """Module numbers labelled (those found, or ``modules=`` when given)."""
        return self.expected_modules

    @property
    def missing_modules(self) -> list[int]:
        """Modules of the whole detector with no data in this train."""
        have = set(self._present(self._main_data_key))
        first = self._modnos_start_at
        return [m for m in range(first, first + self.n_modules) if m not in have]

    def _present(self, key: str) -> list[int]:
        return [m for m, s in sorted(self.modno_to_source.items()) if key in self.train.data[s]]

    def data_availability(self, module_gaps: bool = False) -> np.ndarray:
        """Boolean ``(modules, entries)``: which modules have data in this train (as
        EXtra-data's; XTDF detectors have one entry per frame)."""
        modules = list(range(self._modnos_start_at, self._modnos_start_at + self.n_modules)) \
            if module_gaps else self.modules
        have = set(self._present(self._main_data_key))
        n_entries = self.frames_per_train if self._entry_per_frame else 1
        return np.array([[m in have] * n_entries for m in modules], dtype=bool)

    def __contains__(self, key: str) -> bool:
        return all(key in self.train.data[s] for s in self.source_to_modno)

    def _views(self, key: str, layout: Any) -> dict[int, tuple[np.ndarray, bool, dict]]:
        """``{modno: (view in file order, several entries, source data)}`` of present modules."""
        out = {}
        for modno in self._present(key):
            src = self.modno_to_source[modno]
            source_data = self.train.data[src]
            value = source_data[key]
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            view, several = entries(arr, source=src, key=key, source_data=source_data,
                                    protocol=self.train.protocol_version, layout=layout)
            out[modno] = (view, several, source_data)
        if not out:
            raise KeyError(f"train {self.train_id}: no module of {self.detector_name} has "
                           f"key {key!r}")
        return out

    def _stack(self, per_module: Mapping[int, np.ndarray], fill_value: Any,
               astype: Any) -> np.ndarray:
        ref = next(iter(per_module.values()))
        for modno, view in per_module.items():
            if view.shape != ref.shape:
                raise ValueError(f"train {self.train_id}: module {modno} has shape "
                                 f"{view.shape}, others {ref.shape}")
        dtype = np.dtype(astype) if astype is not None else ref.dtype
        fill = (np.nan if dtype.kind == "f" else 0) if fill_value is None else fill_value
        out = np.empty((len(self.modules),) + ref.shape, dtype)
        for i, modno in enumerate(self.modules):
            if modno in per_module:
                np.copyto(out[i], per_module[modno], casting="unsafe")
            else:
                out[i] = dtype.type(fill)
        return out

    def get_array(self, key: str, *, fill_value: Any = None, roi: Any = (),
                  astype: Any = None, layout: Any = None) -> xr.DataArray:
        """``key`` of every module: ``('module', 'dim_0', ...)``, as EXtra-data's
        ``det.get_array(key, ...).sel(trainId=tid)``."""
        roi = roi if isinstance(roi, tuple) else (roi,)
        views = {m: v[0][roi] for m, v in self._views(key, layout).items()}
        out = self._stack(views, fill_value, astype)
        dims = ["module"] + [f"dim_{i}" for i in range(out.ndim - 1)]
        coords = {"module": np.asarray(self.modules, np.int64)}
        if self.train_id is not None:
            coords["trainId"] = np.uint64(self.train_id)
        return xr.DataArray(out, dims=dims, coords=coords)

    def masked_data(self, key: str | None = None, *, mask_bits: int | Iterable[int] | None = None,
                    masked_value: float = np.nan) -> _MaskedData:
        """``key`` (default the main data key) with pixels flagged in the mask replaced by
        ``masked_value``; ``.xarray()`` / ``.ndarray()`` take ``get_array``'s arguments."""
        key = key or self._main_data_key
        if self._mask_data_key not in self:
            raise RuntimeError(f"This data doesn't include a mask ({self._mask_data_key}). "
                               "You might be using raw instead of corrected data.")
        if isinstance(mask_bits, Iterable):
            bits = 0
            for bit in mask_bits:
                bits |= bit
            mask_bits = bits
        return _MaskedData(self, key, mask_bits, masked_value)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__}: {self.detector_name!r} train {self.train_id}, "
                f"{len(self._present(self._main_data_key))} of {len(self.modules)} modules>")


class _MaskedData:
    """A detector key with the correction pipeline's mask applied (``masked_data()``)."""

    def __init__(self, det: _MultimodDetector, key: str, mask_bits: int | None,
                 masked_value: float) -> None:
        self.det, self.key, self.mask_bits, self.masked_value = det, key, mask_bits, masked_value

    def xarray(self, **kwargs: Any) -> xr.DataArray:
        """As ``det.get_array(key, **kwargs)``, masked."""
        data = self.det.get_array(self.key, **kwargs)
        kwargs.pop("astype", None)
        mask = self.det.get_array(self.det._mask_data_key, **kwargs).values
        bad = mask != 0 if self.mask_bits is None else (mask & self.mask_bits) != 0
        data.values[bad] = self.masked_value
        return data

    def ndarray(self, **kwargs: Any) -> np.ndarray:
        """The values of :meth:`xarray`."""
        return self.xarray(**kwargs).values
