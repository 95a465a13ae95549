"""Source names of the simulated devices, in one place.

Detector names follow the facility's patterns (protocol.md §3.2, §4, §5; EXtra-foam's configs),
so that name-based detection (module numbers, detector families) works on simulated data as on
real data. Device names are templates: ``{instrument}`` is filled in with the detector's
instrument (``SPB``, ``FXE``, ``MID``) and ``{xgm}`` with the XGM of its SASE beamline.
Any of the device names can be overridden per simulator with ``simulate(..., names={...})``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEVICE_NAMES", "INSTRUMENT", "XGM_BY_SASE", "device_names"]

#: Instrument and SASE beamline of each detector (fills the templates below).
INSTRUMENT: dict[str, tuple[str, str]] = {
    "AGIPD": ("SPB", "SA1"),
    "LPD": ("FXE", "SA1"),
    "JUNGFRAU": ("FXE", "SA1"),
    "EPIX": ("MID", "SA2"),
    "CAMERA": ("SPB", "SA1"),
}

#: XTDF detector domains (module sources are ``{domain}/DET/{m}CH0:xtdf``).
XTDF_DOMAIN = {"AGIPD": "SPB_DET_AGIPD1M-1", "LPD": "FXE_DET_LPD1M-1"}
#: JUNGFRAU domain (module sources are ``{domain}/DET/JNGFR{nn}:daqOutput``).
JUNGFRAU_DOMAIN = "FXE_XAD_JF1M"
#: ePix100 device (raw ``.../DET/RECEIVER:daqOutput``, corrected ``.../CORR/RECEIVER:output``).
EPIX_DOMAIN = "MID_EXP_EPIX-1"
#: Basler-style camera device (its output channel is ``:daqOutput``).
CAMERA_DEVICE = "SPB_IRU_SIDEMIC_CAM"

#: The XGM in front of each SASE beamline's instruments.
XGM_BY_SASE = {"SA1": "SA1_XTD2_XGM/XGM/DOOCS", "SA2": "SA2_XTD1_XGM/XGM/DOOCS",
               "SA3": "SA3_XTD10_XGM/XGM/DOOCS"}

#: The extra devices: XGM (a control source plus its ``:output`` pipeline channel), the
#: pump-probe optical delay line, and a sample motor.
DEVICE_NAMES: dict[str, str] = {
    "xgm": "{xgm}",
    "delay": "{instrument}_AUXT_LIC/DOOCS/PPODL",
    "motor": "{instrument}_SMS_USR/MOTOR/UM01",
}


def device_names(detector: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The device source names for ``detector``'s instrument, with ``overrides`` applied.

    Examples
    --------
    >>> device_names('AGIPD')['xgm']
    'SA1_XTD2_XGM/XGM/DOOCS'
    >>> device_names('EPIX')['delay']
    'MID_AUXT_LIC/DOOCS/PPODL'
    >>> device_names('LPD', {'motor': 'FXE_SMS_USR/MOTOR/UM13'})['motor']
    'FXE_SMS_USR/MOTOR/UM13'
    """
    instrument, sase = INSTRUMENT[detector]
    names = {kind: template.format(instrument=instrument, xgm=XGM_BY_SASE[sase])
             for kind, template in DEVICE_NAMES.items()}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEVICE_NAMES))
    if unknown:
        raise ValueError(f"unknown device name(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(map(repr, DEVICE_NAMES))}")
    names.update({kind: str(name) for kind, name in overrides.items()})
    return names
