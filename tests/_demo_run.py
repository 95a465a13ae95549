"""A recorded run of the demo's simulator: what ``kb-streams demo --run`` and the pipelines of
``examples/`` read offline.

EXtra-data's mock devices (``write_file``) lay out the files as the DAQ does, under the
simulator's source names; the simulator's own trains (``layout='file'``, corrected AGIPD
modules, XGM pulse energies, delay line positions) then fill them, so a graph fed this run
sees the simulated pump-probe scan: a ratio of 1.0 before time zero rising to ~1.49.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.base import DeviceBase
from extra_data.tests.mockdata.detectors import AGIPDModule
from extra_data.tests.mockdata.xgm import XGM

from kb_streams.simulate import Scene, simulate

DETECTOR = "SPB_DET_AGIPD1M-1"
XGM_DEVICE = "SA1_XTD2_XGM/XGM/DOOCS"
DELAY_DEVICE = "SPB_AUXT_LIC/DOOCS/PPODL"


class DelayLine(DeviceBase):
    """The pump-probe delay line (positions in ps), as the simulator names its keys."""

    control_keys = [("actualPosition", "f8", ()), ("targetPosition", "f8", ())]


def make_demo_run(directory: Path, *, trains: int = 10, pulses: int = 8,
                  modules: tuple[int, ...] = (0, 1), trains_per_step: int = 2) -> Path:
    """Write ``trains`` simulated trains as a run in ``directory``; the directory."""
    directory.mkdir(parents=True)
    det_files = {}
    for modno in modules:
        path = directory / f"CORR-R0001-AGIPD{modno:02}-S00000.h5"
        write_file(str(path), [AGIPDModule(f"{DETECTOR}/DET/{modno}CH0", frames_per_train=pulses,
                                           raw=False, channel_name="xtdf")],
                   ntrains=trains, chunksize=trains, format_version="1.0")
        det_files[modno] = path
    slow = directory / "RAW-R0001-DA01-S00000.h5"
    write_file(str(slow), [XGM(XGM_DEVICE), DelayLine(DELAY_DEVICE)], ntrains=trains,
               chunksize=trains, format_version="1.0")

    sim = simulate("AGIPD-modules", pulses=pulses, pool_size=5, layout="file", raw=False,
                   extras=("xgm", "delay"), scene=Scene(trains_per_step=trains_per_step))
    simulated = [next(sim)[0] for _ in range(trains)]
    for modno, path in det_files.items():
        source = f"{DETECTOR}/DET/{modno}CH0:xtdf"
        with h5py.File(path, "r+") as f:
            image = f[f"INSTRUMENT/{source}/image/data"]
            for i, data in enumerate(simulated):
                image[i * pulses:(i + 1) * pulses] = data[source]["image.data"]
    with h5py.File(slow, "r+") as f:
        energies = f[f"INSTRUMENT/{XGM_DEVICE}:output/data/intensityTD"]
        energies[:trains] = np.stack([d[f"{XGM_DEVICE}:output"]["data.intensityTD"]
                                      for d in simulated])
        for key in ("actualPosition", "targetPosition"):
            f[f"CONTROL/{DELAY_DEVICE}/{key}/value"][:] = [
                d[DELAY_DEVICE][f"{key}.value"] for d in simulated]
    return directory
