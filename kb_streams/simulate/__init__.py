"""Realistic simulated trains: detectors and devices as the Karabo bridge delivers them.

``simulate(name, ...)`` returns an infinite iterator with one item per train: ``(data, meta)``
dicts keyed by source, exactly as a bridge client receives them, or (for wire-level faults) a
``list`` of already-encoded message frames. Nothing here opens a socket: the bridge server
(:mod:`kb_streams.server`) sends the items, encoding the tuples and sending lists as they are,
and limits the rate (:mod:`~kb_streams.simulate.embedded` serves the demo's scene with one).

Detectors (:data:`DETECTORS`; source names, keys, dtypes and shapes in the modules
:mod:`~kb_streams.simulate.xtdf`, :mod:`~kb_streams.simulate.jungfrau`,
:mod:`~kb_streams.simulate.epix`, :mod:`~kb_streams.simulate.camera`), plus the extra devices
of :mod:`~kb_streams.simulate.devices` (XGM, delay line, motor). ``Simulator.describe()`` prints
what a given configuration sends.

Ground truth (details in :mod:`kb_streams.simulate.scene`)
-----------------------------------------------------------
A pump-probe delay scan over ``pool_size`` steps from -1 to 4 ps (10 trains per step, back and
forth), seen as two diffraction rings. Corrected pixel values, per pulse ``p``::

    E_p / E0 * ((1 + 0.5 * S(delay) * pumped_p) * R1(r) + R2(r)) + noise(rms 1)
    S(delay) = 0 before 0 ps, else 1 - exp(-delay / 1 ps);  pumped_p = (p % 2 == 0)

``E_p`` is the XGM pulse energy (``data.intensityTD[p]``, ~1000 µJ), ``R1`` a ring of radius
250 px (peak 40), ``R2`` a static reference ring of radius 420 px (peak 25; ePix100: 200 and
330 px). So **per-pulse ROI intensity on ring 1 divided by the XGM energy, pumped over
unpumped, equals 1 + 0.5 * S(delay)**: 1.0 at -1 ps, rising to ~1.49 at 4 ps. ROIs
(``Simulator.roi``; module index, slow_scan, fast_scan):

* AGIPD: ring 1 on module 0, ss 198:230, fs 57:89; ring 2 on module 0, ss 375:407, fs 59:91.
* LPD: ring 1 on module 0, ss 141:173, fs 139:171; ring 2 on module 1, ss 120:152, fs 97:129.
* JUNGFRAU (2 modules): ring 1 on module number 1 (index 0), ss 326:358, fs 669:701; ring 2
  on module number 1, ss 206:238, fs 786:818.
* ePix100: ring 1 at ss 336:368, fs 165:197; ring 2 at ss 336:368, fs 34:66.
* CAMERA (a beam spot, no rings): ``sim.roi['spot']`` covers +-3 rms around the centre; the
  spot's peak is 2000 counts x the train's mean pulse energy / E0 (see
  :mod:`~kb_streams.simulate.camera`).

``sim.truth(train_id)`` gives each train's step, nominal delay, ``S`` and expected ratio.

Raw data add a constant ADC offset (AGIPD 5000, LPD 1000, JUNGFRAU 1500, ePix100 1000 ADU)
and are rounded to integers.

The pool
--------
Each delay step is one pre-generated train (images, and the XGM energies that go with them),
built once on the first train (or by ``sim.prepare()``; about 0.5 s per step for
AGIPD-modules at 64 pulses). The pool holds ``pool_size`` x the images of a train
(``sim.pool_estimate()``; AGIPD-modules, 64 pulses: 268 MB per step); gain, mask and ID arrays
are shared by all steps. Per train only small arrays are new (train IDs, frame numbers): the
images are read-only pool entries, sent again whenever the scan comes back to their step, so
nothing in flight is ever modified, and a train costs ~0.05 ms to assemble.

Faults
------
See :mod:`kb_streams.simulate.faults`: ``skip_every``, ``missing_module``, ``missing_every``,
``shuffle_every``, ``corrupt_every``.

Examples
--------
>>> from kb_streams.simulate import simulate
>>> sim = simulate('AGIPD-modules', pulses=2, pool_size=2, extras=('xgm',))
>>> data, meta = next(sim)
>>> data['SPB_DET_AGIPD1M-1/DET/0CH0:xtdf']['image.data'].shape
(128, 512, 2)
>>> meta['SA1_XTD2_XGM/XGM/DOOCS']['timestamp.tid']
10000000000
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import camera as _camera
from .base import Component, DetectorSetup
from .camera import Camera
from .devices import XGM_SAMPLES, DelayLine, Motor, Xgm
from .epix import Epix100
from .faults import CORRUPTIONS, FAULTS, Faults
from .geometry import Roi
from .jungfrau import MAX_CELLS, MAX_MODULES, Jungfrau
from .names import device_names
from .scene import Scene
from .simulator import Simulator, TrainTruth, make_meta
from .xtdf import MAX_PULSES, N_MODULES, XtdfDetector

__all__ = [
    "CORRUPTIONS",
    "DETECTORS",
    "EXTRAS",
    "FAULTS",
    "Faults",
    "Scene",
    "Simulator",
    "TrainTruth",
    "describe",
    "make_meta",
    "simulate",
]

class _Names(dict):
    """A dict whose lookups ignore case, ``-`` and ``_`` (``DETECTORS['agipd_modules']``)."""

    def _key(self, name: object) -> object:
        wanted = _canonical(str(name))
        return next((key for key in self if _canonical(key) == wanted), name)

    def __getitem__(self, name: object) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._key(name))

    def get(self, name: object, default: Any = None) -> Any:
        return super().get(self._key(name), default)


def _canonical(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


#: Simulated detectors: name -> short description (lookups ignore case, ``-`` and ``_``).
DETECTORS: dict[str, str] = _Names({
    "AGIPD-modules": "AGIPD 1M as 16 module sources SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf",
    "AGIPD": "AGIPD 1M as one combined source (SPB_DET_AGIPD1M-1/CAL/APPEND_*)",
    "LPD-modules": "LPD 1M as 16 module sources FXE_DET_LPD1M-1/DET/{m}CH0:xtdf",
    "LPD": "LPD 1M as one combined source (FXE_DET_LPD1M-1/CAL/APPEND_*)",
    "JUNGFRAU": "JUNGFRAU modules FXE_XAD_JF1M/{DET,CORR}/JNGFR{nn}, burst mode memory cells",
    "EPIX": "ePix100 (704 x 768), one frame per train, MID_EXP_EPIX-1",
    "CAMERA": "Basler-style beam camera, ImageData keys, SPB_IRU_SIDEMIC_CAM:daqOutput",
})

#: The extra devices ``simulate(extras=...)`` can add.
EXTRAS = ("xgm", "delay", "motor")
LAYOUTS = ("online", "file")
TIMESTAMPS = ("wall", "train")
PROTOCOLS = ("2.2", "1.0")
DEFAULT_PULSES = {"AGIPD": 64, "LPD": 64, "JUNGFRAU": 16, "EPIX": 1, "CAMERA": 1}
DEFAULT_JUNGFRAU_MODULES = 2


_BY_CANONICAL = {_canonical(name): name for name in DETECTORS}


def _detector_name(detector: str) -> str:
    try:
        return _BY_CANONICAL[_canonical(detector)]
    except KeyError:
        raise ValueError(f"unknown detector {detector!r}; choose from "
                         f"{', '.join(DETECTORS)}") from None


def _choice(what: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(map(repr, choices))}")
    return value


def _extras(extras: Iterable[str] | str | None) -> tuple[str, ...]:
    if extras is None:
        return ()
    if isinstance(extras, str):
        extras = [e for e in extras.replace(" ", ",").split(",") if e]
    names = tuple(dict.fromkeys(str(e).strip().lower() for e in extras))
    unknown = [e for e in names if e not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extra(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(map(repr, EXTRAS))}")
    return names


def _int(what: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{what} must be {bound}, not {value}")
    return int(value)


def simulate(
    detector: str = "AGIPD-modules",
    *,
    pulses: int | None = None,
    raw: bool = False,
    gain: bool = True,
    layout: str = "online",
    extras: Iterable[str] | str | None = EXTRAS,
    faults: Faults | Mapping[str, Any] | str | Sequence[str] | None = None,
    first_train_id: int = 10_000_000_000,
    seed: int = 0,
    pool_size: int = 4,
    modules: int | None = None,
    scene: Scene | None = None,
    names: Mapping[str, str] | None = None,
    protocol_version: str = "2.2",
    timestamps: str = "wall",
) -> Simulator:
    """Simulate a detector (plus XGM, delay line and motor) train by train.

    Parameters
    ----------
    detector
        One of :data:`DETECTORS` (case and ``-``/``_`` do not matter).
    pulses
        Pulses per train (JUNGFRAU: memory cells, at most 16). Default: 64 for AGIPD/LPD, 16
        for JUNGFRAU, 1 for EPIX and CAMERA (train-resolved; pulses only shape the XGM).
    raw
        Raw (uint16, with gain, ADC offset) instead of corrected (float32) data. Cameras are
        always raw.
    gain
        Corrected AGIPD/LPD/JUNGFRAU data also carry their gain (uint8) arrays, and, in the file
        layout or for JUNGFRAU, mask (uint32) arrays, all zeros. ``False`` leaves them out: a
        corrected AGIPD-modules train at 64 pulses is then 268 MB instead of 336 MB. Raw data
        always carry their gain.
    layout
        ``'online'``: axes as the online calibration pipeline sends them; ``'file'``: as in
        files and extra-data's streamer (which also repeats metadata inside the data and
        suffixes slow keys with ``.value``/``.timestamp``).
    extras
        Extra devices, any of ``'xgm'``, ``'delay'``, ``'motor'``; ``()`` for none.
    faults
        Faults to inject, see :mod:`kb_streams.simulate.faults`; e.g.
        ``{'skip_every': 10, 'missing_module': 3, 'shuffle_every': 7, 'corrupt_every': 13}``
        or ``'skip_every=10,missing_module=3'``.
    first_train_id
        Train ID of the first train; IDs go up by 1 per train.
    seed
        Seed of all random numbers (images, pulse energies, jitter).
    pool_size
        Number of pre-generated trains, which are the delay steps of the scan (memory:
        ``pool_size`` x the train size).
    modules
        JUNGFRAU only: number of modules (1 to 8, default 2).
    scene
        The ground truth parameters (:class:`Scene`); default ``Scene()``.
    names
        Override device source names: ``{'xgm': ..., 'delay': ..., 'motor': ...}``.
    protocol_version
        Protocol of the messages encoded here for wire-level faults (``'2.2'`` or ``'1.0'``;
        shuffling needs 2.2).
    timestamps
        ``'wall'``: the time each train is generated; ``'train'``: the simulator's start time
        plus 0.1 s per train ID (reproducible spacing).

    Returns
    -------
    Simulator
        Infinite iterator of trains, with ``sources``, ``describe()``, ``schema()``,
        ``truth(train_id)``, ``roi`` and ``prepare()``.

    Raises
    ------
    ValueError
        For an unknown detector, layout, extra, fault or out-of-range option; the message names
        the valid choices.

    Examples
    --------
    >>> sim = simulate('JUNGFRAU', pulses=2, modules=1, pool_size=1, extras=(),
    ...                first_train_id=100)
    >>> sim.sources
    ['FXE_XAD_JF1M/CORR/JNGFR01:output']
    >>> data, meta = next(sim)
    >>> data['FXE_XAD_JF1M/CORR/JNGFR01:output']['data.adc'].shape
    (512, 1024, 2)
    >>> meta[sim.sources[0]]['timestamp.tid'], next(sim)[1][sim.sources[0]]['timestamp.tid']
    (100, 101)
    """
    name = _detector_name(detector)
    family = name.split("-")[0]
    combined = name in ("AGIPD", "LPD")
    layout = _choice("layout", layout, LAYOUTS)
    timestamps = _choice("timestamps", timestamps, TIMESTAMPS)
    protocol_version = _choice("protocol_version", str(protocol_version), PROTOCOLS)
    extras = _extras(extras)
    if pulses is None:
        pulses = DEFAULT_PULSES[family]
    max_pulses = {"JUNGFRAU": MAX_CELLS, **MAX_PULSES}.get(family, XGM_SAMPLES)
    pulses = _int("pulses", pulses, 1, max_pulses)
    pool_size = _int("pool_size", pool_size, 1)
    first_train_id = _int("first_train_id", first_train_id, 0)
    seed = _int("seed", seed, 0)
    if modules is not None and family != "JUNGFRAU":
        raise ValueError(f"modules can only be chosen for JUNGFRAU, not for {name} "
                         f"(it has {N_MODULES if family in MAX_PULSES else 1})")
    n_modules = _int("modules", DEFAULT_JUNGFRAU_MODULES if modules is None else modules, 1,
                     MAX_MODULES)
    scene = scene if scene is not None else Scene()
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a kb_streams.simulate.Scene, not {type(scene).__name__}")
    faults = Faults.parse(faults)
    _check_faults(faults, name, family, combined, n_modules, protocol_version)
    devices = device_names(family, names)

    rng = np.random.default_rng([seed, 0])
    scan = scene.scan(pool_size, pulses, rng)
    filled = frozenset(faults.missing_module) if combined else frozenset()
    setup = DetectorSetup(raw=raw, layout=layout, pulses=pulses, scene=scene, scan=scan, rng=rng,
                          gain=bool(gain))
    component: Component
    roi: dict[str, Roi]
    if family in ("AGIPD", "LPD"):
        component = XtdfDetector(family, setup, combined=combined, filled_modules=filled)
        roi = component.roi()
    elif family == "JUNGFRAU":
        component = Jungfrau(setup, n_modules=n_modules)
        roi = component.roi()
    elif family == "EPIX":
        component = Epix100(raw=raw, layout=layout, scene=scene, scan=scan, rng=rng)
        roi = component.roi()
    else:
        component = Camera(layout=layout, scene=scene, scan=scan, rng=rng)
        roi = {"spot": _camera_roi()}
    components: list[Component] = [component]
    device_rng = np.random.default_rng([seed, 2])
    if "xgm" in extras:
        components.append(Xgm(devices["xgm"], layout=layout, pulses=pulses, scan=scan,
                              rng=device_rng, noise=scene.xgm_noise))
    if "delay" in extras:
        components.append(DelayLine(devices["delay"], layout=layout, scan=scan))
    if "motor" in extras:
        components.append(Motor(devices["motor"], layout=layout))
    return Simulator(name, components, scene=scene, scan=scan, faults=faults,
                     first_train_id=first_train_id, seed=seed, pulses=pulses,
                     raw=raw or family == "CAMERA", layout=layout,
                     protocol_version=protocol_version, timestamps=timestamps, roi=roi)


def _camera_roi() -> Roi:
    (cy, cx), (sy, sx) = [(n - 1) / 2 for n in _camera.SHAPE], _camera.SPOT_SIGMA
    return Roi(0, slice(int(cy - 3 * sy), int(cy + 3 * sy) + 1),
               slice(int(cx - 3 * sx), int(cx + 3 * sx) + 1))


def _check_faults(faults: Faults, name: str, family: str, combined: bool, n_modules: int,
                  protocol_version: str) -> None:
    if faults.shuffle_every and protocol_version != "2.2":
        raise ValueError("fault shuffle_every needs protocol_version '2.2' (1.0 has one part)")
    if not faults.missing_module:
        return
    if family in ("EPIX", "CAMERA"):
        raise ValueError(f"fault missing_module needs a multi-module detector, not {name}")
    valid = range(1, n_modules + 1) if family == "JUNGFRAU" else range(N_MODULES)
    bad = [m for m in faults.missing_module if m not in valid]
    if bad:
        raise ValueError(f"fault missing_module: {name} has modules {valid.start} to "
                         f"{valid.stop - 1}, not {', '.join(map(str, bad))}")
    if combined and faults.missing_every != 1:
        raise ValueError(f"fault missing_every needs per-module sources; {name} sends one "
                         f"combined source (use {name}-modules)")


def describe(detector: str = "AGIPD-modules", **options: Any) -> str:
    """What ``simulate(detector, **options)`` sends, as text (no data is generated).

    Examples
    --------
    >>> print(describe('CAMERA', extras=()).splitlines()[1])
      SPB_IRU_SIDEMIC_CAM:daqOutput
    """
    return simulate(detector, **options).describe()
