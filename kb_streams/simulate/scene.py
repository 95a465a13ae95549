"""The simulated experiment: a pump-probe delay scan seen as diffraction rings.

Ground truth (all simulators share it; :class:`Scene` holds the numbers):

* **Delay scan.** The pool holds ``n = pool_size`` delay steps at
  ``delay_k = delay_start + k (delay_stop - delay_start) / (n - 1)`` ps (``n = 1``: only
  ``delay_start``). The scan goes back and forth over the steps (0, 1, ..., n-1, n-2, ..., 1, 0,
  1, ...), ``trains_per_step`` trains at each, counted from the first train ID:
  ``step = triangle((train_id - first_train_id) // trains_per_step)``. The delay line reports
  ``delay_k`` plus ``delay_jitter`` ps rms of read-back noise.
* **Pump-probe response** ``S(delay) = 0`` before ``time_zero``, else
  ``1 - exp(-(delay - time_zero) / rise_time)``.
* **Pulses.** Pulse ``p`` of a train is pumped when ``p % pump_every == 0`` (the even pulses by
  default). Its energy ``E_p`` (µJ) is drawn once per pool entry around ``pulse_energy`` with
  ``pulse_energy_spread`` relative rms. The XGM reports it (``data.intensityTD[p]``) exactly,
  or, with ``xgm_noise``, with that relative rms of measurement noise drawn afresh every train:
  then each train's ratio below scatters around its true value.
* **Image** (corrected detectors, per pulse, in calibrated units)::

      pixel(p) = E_p / E0 * ((1 + contrast * S * pumped_p) * R1(r) + R2(r)) + noise

  with ``E0 = pulse_energy``, ``Ri(r) = ring_peak_i * exp(-(r - ring_radius_i)**2 / (2 w_i**2))``
  of the pixel's distance ``r`` (pixels) from the beam, and Gaussian ``noise`` of rms
  ``noise``. Ring 1 responds to the pump, ring 2 is a static reference. Raw data adds the
  detector's ADC offset (see :data:`kb_streams.simulate.geometry.RAW_OFFSET`) and rounds to
  integers. Train-resolved detectors (ePix100) see the pulse average of the factors above.

So the per-pulse ROI intensity on ring 1 divided by ``E_p``, pumped over unpumped pulses, is
``1 + contrast * S(delay_k)``; on ring 2 it is flat. With the defaults (``contrast=0.5``,
``rise_time=1 ps``, delays from -1 to 4 ps) the pumped/unpumped ratio rises from 1.0 to ~1.49.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scan", "Scene"]


@dataclass(frozen=True)
class Scene:
    """Parameters of the simulated pump-probe experiment (the ground truth).

    Examples
    --------
    >>> scene = Scene()
    >>> float(scene.signal(-1.0)), round(float(scene.signal(1.0)), 3)
    (0.0, 0.632)
    >>> scene.delays(3).tolist()
    [-1.0, 1.5, 4.0]
    >>> [scene.step(i, 3) for i in range(0, 60, 10)]
    [0, 1, 2, 1, 0, 1]
    """

    time_zero: float = 0.0
    rise_time: float = 1.0
    contrast: float = 0.5
    delay_start: float = -1.0
    delay_stop: float = 4.0
    trains_per_step: int = 10
    delay_jitter: float = 0.002
    pulse_energy: float = 1000.0
    pulse_energy_spread: float = 0.15
    pump_every: int = 2
    ring_peak: tuple[float, float] = (40.0, 25.0)
    ring_width: tuple[float, float] = (6.0, 8.0)
    noise: float = 1.0
    xgm_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.trains_per_step < 1:
            raise ValueError(f"trains_per_step must be >= 1, not {self.trains_per_step}")
        if self.pump_every < 1:
            raise ValueError(f"pump_every must be >= 1, not {self.pump_every}")
        if self.xgm_noise < 0:
            raise ValueError(f"xgm_noise must be >= 0, not {self.xgm_noise}")
        if self.rise_time <= 0:
            raise ValueError(f"rise_time must be > 0, not {self.rise_time}")

    def signal(self, delay: float | np.ndarray) -> np.ndarray:
        """The pump-probe response ``S(delay)``, between 0 and 1."""
        delay = np.asarray(delay, dtype=np.float64)
        rise = 1.0 - np.exp(-(delay - self.time_zero) / self.rise_time)
        return np.where(delay < self.time_zero, 0.0, rise)

    def delays(self, n_steps: int) -> np.ndarray:
        """The ``n_steps`` delays of the scan (ps), one per pool entry."""
        if n_steps == 1:
            return np.array([self.delay_start])
        return np.linspace(self.delay_start, self.delay_stop, n_steps)

    def step(self, train_offset: int, n_steps: int) -> int:
        """Delay step of the train ``train_offset`` trains after the first one."""
        if n_steps == 1:
            return 0
        period = 2 * (n_steps - 1)
        phase = (train_offset // self.trains_per_step) % period
        return phase if phase < n_steps else period - phase

    def pumped(self, pulses: int) -> np.ndarray:
        """Which pulses of a train the pump laser hits (bool, ``(pulses,)``)."""
        return np.arange(pulses) % self.pump_every == 0

    def rings(self, radius: np.ndarray, ring_radius: tuple[float, float]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel responses ``(R1, R2)`` (float32) of the pump-sensitive and the reference ring."""
        out = []
        for peak, r0, width in zip(self.ring_peak, ring_radius, self.ring_width, strict=True):
            out.append((peak * np.exp(-0.5 * ((radius - r0) / width) ** 2)).astype(np.float32))
        return out[0], out[1]

    def scan(self, n_steps: int, pulses: int, rng: np.random.Generator) -> Scan:
        """Draw the per-step pulse energies and work out the image amplitudes of each step."""
        delays = self.delays(n_steps)
        signal = self.signal(delays)
        energies = self.pulse_energy * (
            1.0 + self.pulse_energy_spread * rng.standard_normal((n_steps, pulses)))
        energies = np.clip(energies, 0.2 * self.pulse_energy, None).astype(np.float32)
        pumped = self.pumped(pulses)
        relative = energies.astype(np.float64) / self.pulse_energy
        pumped_amp = relative * (1.0 + self.contrast * signal[:, None] * pumped[None, :])
        return Scan(delays=delays, signal=signal, energies=energies, pumped=pumped,
                    amp_ring1=pumped_amp.astype(np.float32),
                    amp_ring2=relative.astype(np.float32))


@dataclass(frozen=True)
class Scan:
    """What each pool entry (delay step) shows; arrays have one row per step.

    Attributes
    ----------
    delays
        Nominal delay of each step (ps), ``(steps,)``.
    signal
        ``S(delay)`` of each step, ``(steps,)``.
    energies
        Pulse energies ``E_p`` (µJ, float32), ``(steps, pulses)``.
    pumped
        Pumped pulses (bool), ``(pulses,)``.
    amp_ring1, amp_ring2
        Factors multiplying ``R1`` and ``R2`` in each pulse: ``E_p/E0 * (1 + C S pumped_p)``
        and ``E_p/E0`` (float32), ``(steps, pulses)``.
    """

    delays: np.ndarray
    signal: np.ndarray
    energies: np.ndarray
    pumped: np.ndarray
    amp_ring1: np.ndarray
    amp_ring2: np.ndarray

    @property
    def n_steps(self) -> int:
        return len(self.delays)
