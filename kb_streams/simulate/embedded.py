"""The embedded simulator: a simulated bridge served for a run of ``kb-streams demo`` or ``run``.

AGIPD modules, the XGM and the delay line of the pump-probe scan (:mod:`kb_streams.simulate`),
served by a :class:`~kb_streams.server.BridgeServer` on ``tcp://127.0.0.1:<free port>`` while the
run lasts: the one module of this package that opens a socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import simulate
from .scene import Scene

if TYPE_CHECKING:
    from ..server import BridgeServer

__all__ = ["embedded_simulator"]


@contextlib.contextmanager
def embedded_simulator(
    *,
    pulses: int = 16,
    rate: float = 10.0,
    sock: str = "REP",
    pool_size: int = 5,
    trains_per_step: int = 4,
    xgm_noise: float = 0.01,
    detector: str = "AGIPD-modules",
    **options: Any,
) -> Iterator[BridgeServer]:
    """A simulated bridge (AGIPD modules, XGM, delay line) on ``tcp://127.0.0.1:<free port>``.

    Serves from a background thread (sending is done by ZeroMQ's own threads, so it hardly
    competes with the analysis for Python's lock). The scan steps through ``pool_size`` delays,
    ``trains_per_step`` trains each. The XGM reads the pulse energies with ``xgm_noise`` relative
    rms of noise, new every train, so that each train's ratio scatters around the true curve as
    measured ones do (the images are pre-generated, one per delay step).

    Examples
    --------
    >>> with embedded_simulator(pulses=2, pool_size=1) as server:
    ...     print(server.sock, server.endpoint.startswith("tcp://127.0.0.1:"))
    REP True
    """
    from ..server import BridgeServer

    scene = Scene(trains_per_step=trains_per_step, xgm_noise=xgm_noise)
    sim = simulate(detector, pulses=pulses, pool_size=pool_size, scene=scene,
                   extras=("xgm", "delay"), **options).prepare()
    server = BridgeServer("tcp://127.0.0.1:0", sock=sock)
    try:
        server.start(sim, rate=rate or None)
        yield server
    finally:
        server.stop()
