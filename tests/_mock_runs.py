"""Small recorded runs written with EXtra-data's own mock devices, with distinct values.

EXtra-data's ``make_examples`` writes runs of hundreds of trains with zeros in the pixel data;
here the same mock device classes (``extra_data.tests.mockdata``) and ``write_file`` write a
few trains per run, and then every pixel, pulse and cell ID gets a value that depends on its
train, frame, module and position, so a swapped axis or module cannot compare equal.
Frame counts vary per train (1 to 512) to cover the layouts a shape cannot tell apart: the
``counts_raw`` and ``counts_corr`` runs hold one module of every XTDF family (AGIPD, AGIPD500K,
LPD, DSSC), raw and corrected, at 1, 64, 128, 256, 352 and 512 frames.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.base import DeviceBase
from extra_data.tests.mockdata.basler_camera import BaslerCamera
from extra_data.tests.mockdata.detectors import AGIPDModule, DSSCModule, LPDModule
from extra_data.tests.mockdata.jungfrau import JUNGFRAUModule
from extra_data.tests.mockdata.xgm import XGM

FIRST_TRAIN = 10000

#: frames per train of each XTDF run (corrected data covers the shapes that are ambiguous:
#: AGIPD at 128 frames = its fast_scan size, LPD at 256, DSSC at 512)
#: every frame count a family must label as EXtra-data does (AGIPD has 352 memory cells, so its
#: 512 is a file no AGIPD writes: EXtra-data labels it all the same, and so must we)
COUNTS = [1, 64, 128, 256, 352, 512]
FRAMES = {
    "counts": COUNTS,
    "agipd_raw": [1, 64, 64],
    "agipd_corr": [1, 128],
    "agipd500k_raw": [64],
    "lpd_raw": [10, 352, 10],  # module 1 misses the second train
    "lpd_corr": [1, 256, 64],
    "dssc_raw": [1, 64],
    "dssc_corr": [1, 512],
}


class EPix100(DeviceBase):
    """An ePix100 receiver as EXtra-data reads one (EXtra-data's mock data has none)."""

    output_channels = ("daqOutput/data",)
    instrument_keys = [
        ("image/pixels", "i2", (708, 768)),
        ("image/binning", "u8", (2,)),
        ("backTemp", "f4", ()),
    ]


class EPix100Corrected(DeviceBase):
    """An ePix100's corrected output (float32 pixels)."""

    output_channels = ("output/data",)
    instrument_keys = [("image/pixels", "f4", (708, 768))]


def _pattern(shape: tuple[int, ...], weights: tuple[int, ...], offset: int,
             dtype: np.dtype) -> np.ndarray:
    """``offset + sum(index_i * weight_i)``, wrapped into ``dtype``: distinct along every axis.

    Computed in ``dtype`` itself (integers wrap; floats stay exact below 2**24), so that a
    512-frame AGIPD train takes a fraction of a second, not seconds in int64.
    """
    out = np.full(shape, offset, dtype)
    for axis, (size, weight) in enumerate(zip(shape, weights, strict=True)):
        index_shape = [1] * len(shape)
        index_shape[axis] = size
        out += (np.arange(size, dtype=np.int64) * weight).astype(dtype).reshape(index_shape)
    return out


def _fill_xtdf(path: Path, source: str, modno: int, frames: list[int]) -> None:
    with h5py.File(path, "r+") as f:
        grp = f[f"INSTRUMENT/{source}/image"]
        data = grp["data"]
        first = 0
        for i, n in enumerate(frames):
            shape = (n,) + data.shape[1:]
            weights = (1009, 7919, 3, 1) if len(shape) == 4 else (1009, 3, 1)
            data[first:first + n] = _pattern(shape, weights, 131 * i + 17 * modno, data.dtype)
            first += n
        pulse_ids = grp["pulseId"]
        cell_ids = grp["cellId"]
        first = 0
        for n in frames:
            ids = np.arange(n, dtype=np.uint64) * 2  # the same in every train, as in life
            pulse_ids[first:first + n] = ids.reshape((n,) + pulse_ids.shape[1:])
            cell_ids[first:first + n] = ((ids * 3 + 1) % 800).astype(np.uint16).reshape(
                (n,) + cell_ids.shape[1:])
            first += n
        if "mask" in grp:
            mask = grp["mask"]
            mask[:, 0, :32] = np.arange(32, dtype=np.uint32) % 4  # as make_examples masks


def _xtdf_run(directory: Path, cls: type, detector: str, modules: list[int],
              frames: list[int], *, raw: bool, prefix: str, drop: tuple[str, ...] = ("gain",)
              ) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for modno in modules:
        if raw:
            device, channel = f"{detector}/DET/{modno}CH0", "xtdf"
        else:
            device, channel = f"{detector}/CORR/{modno}CH0", "output"
        path = directory / f"{'RAW' if raw else 'CORR'}-R0001-{prefix}{modno:02}-S00000.h5"
        module_cls = cls if raw else _without_keys(cls, drop)
        write_file(str(path), [module_cls(device, frames_per_train=np.array(frames, np.uint64),
                                          raw=raw, channel_name=channel)],
                   ntrains=len(frames), chunksize=len(frames), format_version="1.0")
        _fill_xtdf(path, f"{device}:{channel}", modno, frames)


def _without_keys(cls: type, drop: tuple[str, ...]) -> type:
    """``cls`` writing no corrected ``image.<key>`` of ``drop``: keys the tests do not need,
    left out to keep the files and messages small (and gzip of the mask and gain away)."""
    keys = cls.image_keys

    class Module(cls):
        @property
        def image_keys(self) -> list:
            return [entry for entry in keys.fget(self) if entry[0] not in drop]

    return Module


def _fill_instrument(path: Path, prefix: str, weights: dict[str, tuple[int, ...]]) -> None:
    with h5py.File(path, "r+") as f:
        for key, w in weights.items():
            ds = f[f"INSTRUMENT/{prefix}/{key}"]
            ds[...] = _pattern(ds.shape, w, 11, ds.dtype)


class JUNGFRAUCorrected(DeviceBase):
    """A corrected JUNGFRAU module with ``cells`` memory cells (EXtra-data's mock has 16)."""

    output_channels = ("output/data",)

    def __init__(self, device_id: str, cells: int) -> None:
        super().__init__(device_id)
        self.instrument_keys = [("adc", "f4", (cells, 512, 1024)),
                                ("memoryCell", "u1", (cells,)),
                                ("frameNumber", "u8", (cells,))]


def _jungfrau_corr_file(directory: Path, modno: int, cells: int) -> None:
    device = f"SPB_IRDA_JF4M/CORR/JNGFR{modno:02}"
    path = directory / f"CORR-R0001-JNGFR{modno:02}-S00000.h5"
    write_file(str(path), [JUNGFRAUCorrected(device, cells)], ntrains=2, chunksize=1,
               format_version="1.0")
    prefix = f"{device}:output/data"
    _fill_instrument(path, prefix, {"adc": (4999, 7, 3, 1), "frameNumber": (16, 1)})
    with h5py.File(path, "r+") as f:
        f[f"INSTRUMENT/{prefix}/memoryCell"][:] = (np.arange(cells, dtype=np.uint8)[::-1]
                                                   + modno) % 16


def _drop_lpd_module_train(directory: Path, modno: int, missing: int) -> None:
    """Module ``modno`` misses train ``missing`` (as ``make_lpd_run_mini_missed_train``)."""
    path = next(directory.glob(f"*LPD{modno:02}*.h5"))
    with h5py.File(path, "r+") as f:
        for part in ("detector", "header", "image", "trailer"):
            count = f[f"INDEX/FXE_DET_LPD1M-1/DET/{modno}CH0:xtdf/{part}/count"]
            counts = count[:]
            counts[missing] = 0
            count[:] = counts
            first = f[f"INDEX/FXE_DET_LPD1M-1/DET/{modno}CH0:xtdf/{part}/first"]
            first[:] = np.concatenate([[0], np.cumsum(counts)[:-1]])


#: the one module of each family in the ``counts_*`` runs: (detector, module, class, file prefix)
COUNTS_MODULES = [
    ("SPB_DET_AGIPD1M-1", 3, AGIPDModule, "AGIPD"),
    ("HED_DET_AGIPD500K2G", 5, AGIPDModule, "AGIPD"),
    ("FXE_DET_LPD1M-1", 15, LPDModule, "LPD"),
    ("SCS_DET_DSSC1M-1", 9, DSSCModule, "DSSC"),
]


def _counts_run(directory: Path, *, raw: bool) -> None:
    """One module of every XTDF family at every count of :data:`COUNTS`, in one run."""
    for detector, modno, cls, prefix in COUNTS_MODULES:
        _xtdf_run(directory, cls, detector, [modno], FRAMES["counts"], raw=raw, prefix=prefix,
                  drop=("gain", "mask"))


def make_runs(root: Path) -> dict[str, Path]:
    """Write every mock run under ``root``; ``{name: run directory}``."""
    runs: dict[str, Path] = {}

    runs["spb_raw"] = d = root / "spb_raw"
    _xtdf_run(d, AGIPDModule, "SPB_DET_AGIPD1M-1", [0, 2], FRAMES["agipd_raw"], raw=True,
              prefix="AGIPD")
    n = len(FRAMES["agipd_raw"])
    write_file(str(d / "RAW-R0001-DA01-S00000.h5"), [
        XGM("SA1_XTD2_XGM/DOOCS/MAIN"),
        BaslerCamera("SPB_IRU_CAM/CAM/SIDEMIC", sensor_size=(60, 80)),
    ], ntrains=n, chunksize=n, format_version="1.0")
    with h5py.File(d / "RAW-R0001-DA01-S00000.h5", "r+") as f:
        for key in ("beamPosition/ixPos", "beamPosition/iyPos", "pulseEnergy/photonFlux"):
            ds = f[f"CONTROL/SA1_XTD2_XGM/DOOCS/MAIN/{key}/value"]
            ds[:] = np.arange(n, dtype=np.float32) * 1.5 + len(key)
    _fill_instrument(d / "RAW-R0001-DA01-S00000.h5", "SA1_XTD2_XGM/DOOCS/MAIN:output/data",
                     {"intensityTD": (1000, 1), "xTD": (999, 2)})
    _fill_instrument(d / "RAW-R0001-DA01-S00000.h5",
                     "SPB_IRU_CAM/CAM/SIDEMIC:daqOutput/data/image", {"pixels": (997, 81, 1)})

    runs["spb_corr"] = d = root / "spb_corr"
    _xtdf_run(d, AGIPDModule, "SPB_DET_AGIPD1M-1", [0, 1], FRAMES["agipd_corr"], raw=False,
              prefix="AGIPD")

    runs["hed_raw"] = d = root / "hed_raw"
    _xtdf_run(d, AGIPDModule, "HED_DET_AGIPD500K2G", [0, 7], FRAMES["agipd500k_raw"],
              raw=True, prefix="AGIPD")

    runs["fxe_raw"] = d = root / "fxe_raw"
    _xtdf_run(d, LPDModule, "FXE_DET_LPD1M-1", [0, 1], FRAMES["lpd_raw"], raw=True,
              prefix="LPD")
    _drop_lpd_module_train(d, 1, 1)

    runs["fxe_corr"] = d = root / "fxe_corr"
    _xtdf_run(d, LPDModule, "FXE_DET_LPD1M-1", [3], FRAMES["lpd_corr"], raw=False, prefix="LPD",
              drop=("gain", "mask"))

    runs["scs_raw"] = d = root / "scs_raw"
    _xtdf_run(d, DSSCModule, "SCS_DET_DSSC1M-1", [0, 5], FRAMES["dssc_raw"], raw=True,
              prefix="DSSC")

    runs["scs_corr"] = d = root / "scs_corr"
    _xtdf_run(d, DSSCModule, "SCS_DET_DSSC1M-1", [2], FRAMES["dssc_corr"], raw=False,
              prefix="DSSC", drop=("gain", "mask"))

    runs["counts_raw"] = d = root / "counts_raw"
    _counts_run(d, raw=True)
    runs["counts_corr"] = d = root / "counts_corr"
    _counts_run(d, raw=False)

    runs["jf"] = d = root / "jf"
    d.mkdir()
    for modno in (1, 2):
        path = d / f"RAW-R0001-JNGFR{modno:02}-S00000.h5"
        write_file(str(path), [JUNGFRAUModule(f"FXE_XAD_JF1M/DET/JNGFR{modno:02}", raw=True)],
                   ntrains=2, chunksize=1, format_version="1.0")
        prefix = f"FXE_XAD_JF1M/DET/JNGFR{modno:02}:daqOutput/data"
        _fill_instrument(path, prefix, {"adc": (4999, 7, 3, 1), "memoryCell": (0, 1),
                                        "frameNumber": (16, 1)})
        with h5py.File(path, "r+") as f:
            cells = f[f"INSTRUMENT/{prefix}/memoryCell"]
            cells[:] = (np.arange(16, dtype=np.uint8)[::-1] + modno) % 16
            del f[f"INSTRUMENT/{prefix}/gain"]

    runs["jf_corr"] = d = root / "jf_corr"  # corrected, and a module in single-cell mode
    d.mkdir()
    for modno, cells in ((1, 16), (3, 1)):
        _jungfrau_corr_file(d, modno, cells)

    runs["epix"] = d = root / "epix"
    d.mkdir()
    path = d / "RAW-R0001-EPIX01-S00000.h5"
    write_file(str(path), [EPix100("MID_EXP_EPIX-1/DET/RECEIVER")], ntrains=2, chunksize=2,
               format_version="1.0")
    _fill_instrument(path, "MID_EXP_EPIX-1/DET/RECEIVER:daqOutput/data/image",
                     {"pixels": (3001, 769, 1)})

    runs["epix_corr"] = d = root / "epix_corr"
    d.mkdir()
    path = d / "CORR-R0001-EPIX01-S00000.h5"
    write_file(str(path), [EPix100Corrected("MID_EXP_EPIX-1/CORR/RECEIVER")], ntrains=2,
               chunksize=2, format_version="1.0")
    _fill_instrument(path, "MID_EXP_EPIX-1/CORR/RECEIVER:output/data/image",
                     {"pixels": (3001, 769, 1)})
    return runs


if __name__ == "__main__":  # python tests/_mock_runs.py DIR: write the runs to look at them
    import sys
    import time

    t0 = time.perf_counter()
    print(make_runs(Path(sys.argv[1])), f"{time.perf_counter() - t0:.1f} s")
