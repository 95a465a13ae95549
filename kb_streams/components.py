"""EXtra-data's detector objects on a live train: ``AGIPD1M(train).get_array('image.data')``.

Built from a :class:`~kb_streams.train.Train` instead of a run, they find the module sources with
EXtra-data's source-name patterns (``<detector>/DET/<n>CH…`` raw, ``<detector>/CORR/<n>CH…``
corrected, JUNGFRAU ``…/DET/JNGFR<n>``) and return, for the one train, what EXtra-data's object
returns offline selected at that train: ``det.get_array(key, ...).sel(train=tid)``. The array is
a new one (modules are copied into it, once); :meth:`kb_streams.Train.stack_modules` is the
faster path when EXtra-data's exact labels are not needed. What the families share (finding
module sources, stacking a key, masks) is in :mod:`kb_streams._components_base`.

Examples
--------
>>> import numpy as np
>>> from kb_streams import Train
>>> data = {f'SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf': {
...     'image.data': np.full((128, 512, 4), m, np.float32),          # online: (fs, ss, pulse)
...     'image.pulseId': np.arange(4, dtype=np.uint64)} for m in (0, 3)}
>>> train = Train(data, {src: {'timestamp.tid': 10000} for src in data})
>>> det = AGIPD1M(train)
>>> arr = det.get_array('image.data', pulses=by_index[1:3])
>>> arr.dims, arr.shape, arr.module.values.tolist(), int(arr.train)
(('module', 'pulse', 'slow_scan', 'fast_scan'), (2, 2, 512, 128), [0, 3], 10000)
>>> det.frames_per_train, det.missing_modules
(4, [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from ._components_base import _MultimodDetector
from .keydata import entries
from .layouts import LayoutError
from .train import Train

__all__ = ["AGIPD1M", "AGIPD500K", "DSSC1M", "JUNGFRAU", "LPD1M", "by_id", "by_index",
           "ePix100"]


class _PulseSelection:
    """``by_id[...]`` / ``by_index[...]``, spelled as EXtra-data's (whose objects work too)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __class_getitem__(cls, value: Any) -> _PulseSelection:
        return cls(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{self.value!r}]"


class by_id(_PulseSelection):  # noqa: N801 - EXtra-data's spelling
    """Select pulses by pulse ID: ``by_id[0:100:2]``, ``by_id[[4, 8]]``."""


class by_index(_PulseSelection):  # noqa: N801 - EXtra-data's spelling
    """Select pulses by position within the train: ``by_index[:10]``."""


def _pulse_mask(pulses: Any, pulse_ids: np.ndarray) -> np.ndarray | slice:
    kind = type(pulses).__name__
    value = getattr(pulses, "value", pulses)
    if kind == "by_id":
        if isinstance(value, slice):
            wanted = np.arange(value.start or 0, value.stop, value.step or 1, dtype=np.uint64)
        else:
            wanted = np.asarray(value)
        return np.isin(pulse_ids, wanted)
    if kind not in ("by_index", "slice", "ndarray", "list", "int", "tuple"):
        raise TypeError(f"select pulses with by_id[...], by_index[...] or a slice, not {pulses!r}")
    if isinstance(value, slice):
        return value
    index = np.atleast_1d(np.asarray(value))
    return index[index < len(pulse_ids)]


class _XtdfDetector(_MultimodDetector):
    n_modules = 16
    _entry_per_frame = True
    _main_data_key = "image.data"
    _mask_data_key = "image.mask"

    @property
    def frames_per_train(self) -> int:
        """Frames (pulses) in this train."""
        return len(self._pulse_ids("pulseId"))

    def _pulse_ids(self, field: str) -> np.ndarray:
        for modno in self._present(self._main_data_key):
            value = self.train.data[self.modno_to_source[modno]].get(f"image.{field}")
            if value is not None:
                return np.asarray(value).reshape(-1).astype(np.uint64)
        raise KeyError(f"train {self.train_id}: no image.{field} in {self.detector_name}")

    def get_array(self, key: str, pulses: Any = np.s_[:], unstack_pulses: bool = True, *,
                  fill_value: Any = None, subtrain_index: str = "pulseId", roi: Any = (),
                  astype: Any = None, layout: Any = None) -> xr.DataArray:
        """``key`` of every module, labelled as EXtra-data's ``get_array(...).sel(train=tid)``.

        Parameters
        ----------
        key
            ``'image.data'``, ``'image.mask'``, ... (other keys: ``('module', 'dim_0', ...)``).
        pulses
            ``by_id[...]`` (pulse IDs), ``by_index[...]`` or a slice (positions in the train).
        fill_value
            For modules missing from the train: NaN for floats, 0 for integers by default.
        subtrain_index
            ``'pulseId'`` (dim ``pulse``) or ``'cellId'`` (dim ``cell``).
        roi
            Slices of one frame (all its axes: ``(data_gain, slow_scan, fast_scan)`` for raw
            AGIPD, ``(slow_scan, fast_scan)`` otherwise).
        astype
            dtype of the output (default: the data's).
        layout
            Only where the message cannot tell the layout (see :mod:`kb_streams.layouts`).
        """
        if not key.startswith("image."):
            return super().get_array(key, fill_value=fill_value, roi=roi, astype=astype,
                                     layout=layout)
        if subtrain_index not in ("pulseId", "cellId"):
            raise ValueError("subtrain_index must be 'pulseId' or 'cellId'")
        if not unstack_pulses:
            raise NotImplementedError("a live train is one train: pulses are always unstacked")
        roi = roi if isinstance(roi, tuple) else (roi,)
        inner = self._pulse_ids(subtrain_index)
        selection = _pulse_mask(pulses, self._pulse_ids("pulseId"))
        views = {}
        for modno, (view, several, _) in self._views(key, layout).items():
            if not several:  # a 1-frame train: EXtra-data's streamer sends the frame alone
                view = view[np.newaxis]
            if view.ndim == 4 and view.shape[1] == 1:  # raw LPD/DSSC: drop the length-1 axis
                view = view[:, 0]
            if view.shape[0] != len(inner):
                raise LayoutError(f"train {self.train_id}: {self.modno_to_source[modno]!r} "
                                  f"{key!r} has {view.shape[0]} frames but {len(inner)} "
                                  f"{subtrain_index}s")
            views[modno] = view[(selection,) + roi]
        out = self._stack(views, fill_value, astype)
        dims = ["module", subtrain_index[:-2]]
        inner_dims = out.ndim - 2
        dims += ["data_gain", "slow_scan", "fast_scan"] if inner_dims == 3 else \
            ["slow_scan", "fast_scan"] if inner_dims == 2 else \
            [f"dim_{i}" for i in range(inner_dims)]
        coords: dict[str, Any] = {"module": np.asarray(self.modules, np.int64),
                                  dims[1]: inner[selection]}
        if self.train_id is not None:
            coords["train"] = np.uint64(self.train_id)
        return xr.DataArray(out, dims=dims, coords=coords)


class AGIPD1M(_XtdfDetector):
    """AGIPD-1M modules in a train (``<name>/DET/<n>CH0:xtdf``, ``<name>/CORR/<n>CH0:output``).

    Parameters
    ----------
    train
        The :class:`~kb_streams.train.Train`.
    detector_name
        E.g. ``'SPB_DET_AGIPD1M-1'``; only needed when the train holds several AGIPDs.
    modules
        Module numbers to label; modules missing from the train are filled (``fill_value``).
    min_modules
        Fewer modules with data raise :class:`ValueError`.
    raw
        True for raw data, False for corrected; default: corrected where the train has both.
    """

    _det_name_pat = r"[^/]+_AGIPD1M[^/]*"
    module_shape = (512, 128)


class AGIPD500K(_XtdfDetector):
    """AGIPD-500K (8 modules, names like ``HED_DET_AGIPD500K2G``); as :class:`AGIPD1M`."""

    _det_name_pat = r"[^/]+AGIPD500K[^/]*"
    module_shape = (512, 128)
    n_modules = 8


class DSSC1M(_XtdfDetector):
    """DSSC-1M modules in a train; as :class:`AGIPD1M`."""

    _det_name_pat = r"[^/]+_DSSC1M[^/]*"
    module_shape = (128, 512)


class LPD1M(_XtdfDetector):
    """LPD-1M modules in a train; as :class:`AGIPD1M`. Raw data loses its length-1 gain axis."""

    _det_name_pat = r"[^/]+_LPD1M[^/]*"
    module_shape = (256, 256)


class JUNGFRAU(_MultimodDetector):
    """JUNGFRAU modules in a train (``…/DET/JNGFR<n>``, ``MODULE_<n>``, ``RECEIVER-<n>``).

    ``get_array('data.adc')`` gives ``('module', 'cell', 'slow_scan', 'fast_scan')`` as EXtra-data.
    ``first_modno`` and ``n_modules`` as EXtra-data's.
    """

    _det_name_pat = r"[^/]+_(JNGFR|JF[14]M|JUNGF|JF|JF500K\d?)"
    _source_raw_pat = r"/DET/(MODULE_|RECEIVER-|JNGFR)(?P<modno>\d+)"
    _source_corr_pat = r"/CORR/(MODULE_|RECEIVER-|JNGFR)(?P<modno>\d+)"
    _main_data_key = "data.adc"
    _mask_data_key = "data.mask"
    _modnos_start_at = 1
    module_shape = (512, 1024)

    def __init__(self, train: Train, detector_name: str | None = None,
                 modules: Iterable[int] | None = None, *, min_modules: int = 1,
                 n_modules: int | None = None, first_modno: int = 1,
                 raw: bool | None = None) -> None:
        self._first_modno = first_modno
        super().__init__(train, detector_name, modules, min_modules=min_modules, raw=raw)
        self.n_modules = int(n_modules) if n_modules is not None else \
            max(self._identify_sources(train, self.detector_name, raw).values())

    def _identify_sources(self, train: Train, name: str, raw: bool | None) -> dict[str, int]:
        found = super()._identify_sources(train, name, raw)
        return {s: m - self._first_modno + 1 for s, m in found.items()}

    @property
    def frames_per_train(self) -> int:
        """Memory cells (frames) per train."""
        src = self.modno_to_source[self._present(self._main_data_key)[0]]
        view, _ = entries(np.asarray(self.train.data[src][self._main_data_key]), source=src,
                          key=self._main_data_key, source_data=self.train.data[src])
        return int(view.shape[0]) if view.ndim == 3 else 1

    def get_array(self, key: str, *, fill_value: Any = None, roi: Any = (),
                  astype: Any = None, layout: Any = None) -> xr.DataArray:
        """``key`` of every module: ``data.adc`` as ``('module', 'cell', 'slow_scan',
        'fast_scan')`` with a scalar ``train`` coordinate, as EXtra-data's
        ``get_array(key).sel(train=tid)``. ``roi`` slices ``(cell, slow_scan, fast_scan)``."""
        arr = super().get_array(key, fill_value=fill_value, roi=roi, astype=astype,
                                layout=layout)
        if "trainId" in arr.coords:
            arr = arr.rename(trainId="train")
        names = {4: ("cell", "slow_scan", "fast_scan"), 2: ("cell",)}.get(arr.ndim, ())
        return arr.rename({f"dim_{i}": n for i, n in enumerate(names)})


class ePix100(_MultimodDetector):  # noqa: N801 - the detector's spelling
    """An ePix100 in a train (``<name>/DET/RECEIVER:daqOutput``, key ``data.image.pixels``).

    EXtra-data has no ePix100 object; ``get_array`` labels one frame ``('slow_scan',
    'fast_scan')`` (as extra_geom's ePix100 geometry takes it) with a scalar ``train``.
    """

    _det_name_pat = r"[^/]+_EPIX(?:100)?[^/]*"
    _source_raw_pat = r"/DET/RECEIVER(?P<modno>)"
    _source_corr_pat = r"/CORR/RECEIVER(?P<modno>)"
    _main_data_key = "data.image.pixels"
    _mask_data_key = "data.image.mask"
    n_modules = 1

    def _identify_sources(self, train: Train, name: str, raw: bool | None) -> dict[str, int]:
        return {src: 0 for src in super()._identify_sources(train, name, raw)}

    @property
    def frames_per_train(self) -> int:
        """One frame per train."""
        return 1

    def get_array(self, key: str = "data.image.pixels", *, fill_value: Any = None,
                  roi: Any = (), astype: Any = None, layout: Any = None) -> xr.DataArray:
        """The frame: ``('slow_scan', 'fast_scan')`` with a scalar ``train`` coordinate."""
        arr = super().get_array(key, fill_value=fill_value, roi=roi, astype=astype,
                                layout=layout).isel(module=0, drop=True)
        if "trainId" in arr.coords:
            arr = arr.rename(trainId="train")
        if arr.ndim == 2:
            arr = arr.rename(dim_0="slow_scan", dim_1="fast_scan")
        return arr
