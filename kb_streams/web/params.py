"""Values the browser sets and the running graph reads: an ROI, a pause switch, any parameter.

The graph reads ``parameter.value`` when it processes a train, so a change made in the browser
applies from the next train on. Every change is logged (``kb_streams.web.params``) and kept in
``parameter.changes``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Parameter", "Change", "ROI"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One change of a parameter: when (wall time), from what, to what, by whom."""

    time: float
    name: str
    old: Any
    new: Any
    by: str


class Parameter(Generic[T]):
    """A named value shared by the dashboard (which sets it) and the graph (which reads it).

    Parameters
    ----------
    name
        Shown on the page and in the log.
    default
        The value until someone changes it.

    Examples
    --------
    >>> threshold = Parameter("threshold", 5.0)
    >>> threshold.set(7.5, by="test")
    >>> threshold.value, threshold.version, threshold.changes[-1].old
    (7.5, 1, 5.0)
    """

    def __init__(self, name: str, default: T) -> None:
        self.name = name
        self.default = default
        self._value = default
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.version = 0
        self.changes: deque[Change] = deque(maxlen=100)

    @property
    def value(self) -> T:
        """The current value (read it per train, inside the function the graph maps)."""
        return self._value

    def validate(self, value: Any) -> T:
        """The value to store for ``value`` (raise ``ValueError`` to refuse it)."""
        return value

    def set(self, value: Any, *, by: str = "python") -> None:
        """Change the value (``by`` says who, for the log)."""
        value = self.validate(value)
        with self._lock:
            old, self._value = self._value, value
            if old == value:
                return
            self.version += 1
            self.changes.append(Change(time.time(), self.name, old, value, by))
            self._changed.notify_all()
        logger.info("parameter %r changed by %s: %r -> %r", self.name, by, old, value)

    def wait_changed(self, version: int, timeout: float) -> bool:
        """Wait until :attr:`version` is past ``version``; False on timeout."""
        with self._lock:
            return self._changed.wait_for(lambda: self.version > version, timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._value!r})"


Box = tuple[tuple[int, int], tuple[int, int]]


class ROI(Parameter[Box]):
    """A region of interest ``((ss_start, ss_stop), (fs_start, fs_stop))`` in detector pixels,
    drawn as a box on an image plot (``slow_scan`` is the image's rows, ``fast_scan`` its
    columns; stops are exclusive, as in a slice).

    Examples
    --------
    >>> roi = ROI("ROI", ((198, 230), (57, 89)), image="Module 0")
    >>> roi.set(((10.4, 20.6), (30, 40)))
    >>> roi.value, roi.slices
    (((10, 21), (30, 40)), (slice(10, 21, None), slice(30, 40, None)))
    """

    def __init__(self, name: str, default: Box, *, image: str | None = None) -> None:
        self.image = image
        super().__init__(name, self.validate(default))

    def validate(self, value: Any) -> Box:
        (ss0, ss1), (fs0, fs1) = value
        box = (round(ss0), round(ss1)), (round(fs0), round(fs1))
        if box[0][1] <= box[0][0] or box[1][1] <= box[1][0]:
            raise ValueError(f"empty ROI {value!r}")
        return box

    @property
    def slices(self) -> tuple[slice, slice]:
        """The ROI as ``(slow_scan, fast_scan)`` slices: ``image[roi.slices]``."""
        (ss0, ss1), (fs0, fs1) = self.value
        return slice(ss0, ss1), slice(fs0, fs1)
