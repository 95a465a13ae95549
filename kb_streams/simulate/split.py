"""Sources split over several bridges, each with its own delay, jitter, drops and reordering.

At a beamline the detector, the XGM and the motors often come from different bridges that
deliver a train's parts at different times. :class:`SplitServer` reproduces that: it splits each
simulated train by source into parts (:class:`Part`), and serves each part on its own
:class:`~kb_streams.server.BridgeServer`, released after the part's delay plus jitter, with
trains dropped at random. A join (:mod:`kb_streams.join`) is then exercised end to end.

A part is written ``NAME=GLOB[+GLOB...][:key=value,...]`` on the command line, e.g.
``det=*DET*`` and ``slow=*XGM*+*PPODL*+*MOTOR*:delay=0.3,jitter=0.2,drop=0.05``. Options:
``delay`` (s), ``jitter`` (s, uniform in ``[0, jitter]``), ``drop`` (fraction of trains never
sent) and ``shuffle`` (1: jitter may reorder this part's trains; 0, the default: each bridge
keeps its order, as real ones do). Sources no glob matches go to the first part.
"""

from __future__ import annotations

import fnmatch
import heapq
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..server import BridgeServer

__all__ = ["Part", "SplitServer", "parse_part", "split_train"]

_OPTIONS = {"delay": float, "jitter": float, "drop": float, "shuffle": int}


@dataclass(frozen=True)
class Part:
    """Sources served together on one endpoint, and how late and lossy they arrive."""

    name: str
    patterns: tuple[str, ...]
    delay: float = 0.0
    jitter: float = 0.0
    drop: float = 0.0
    shuffle: int = 0

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0 or not 0 <= self.drop < 1:
            raise ValueError(f"part {self.name}: need delay, jitter >= 0 and 0 <= drop < 1")

    def matches(self, source: str) -> bool:
        return any(fnmatch.fnmatchcase(source, p) for p in self.patterns)


def parse_part(text: str) -> Part:
    """A :class:`Part` from ``NAME=GLOB[+GLOB...][:key=value,...]``.

    Examples
    --------
    >>> parse_part("slow=*XGM*+*PPODL*:delay=0.3,drop=0.05")
    Part(name='slow', patterns=('*XGM*', '*PPODL*'), delay=0.3, jitter=0.0, drop=0.05, shuffle=0)
    """
    head, _, options = text.partition(":")
    name, eq, globs = head.partition("=")
    if not eq or not name or not globs:
        raise ValueError(f"a split part is NAME=GLOB[+GLOB...][:key=value,...], not {text!r}")
    kwargs: dict[str, Any] = {}
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key not in _OPTIONS:
            raise ValueError(f"unknown split option {key!r}; use {', '.join(_OPTIONS)}")
        kwargs[key] = _OPTIONS[key](value)
    return Part(name, tuple(globs.split("+")), **kwargs)


def split_train(data: dict, meta: dict, parts: Sequence[Part]) -> list[tuple[dict, dict]]:
    """``(data, meta)`` of each part (unmatched sources in the first), sharing the arrays."""
    out: list[tuple[dict, dict]] = [({}, {}) for _ in parts]
    for source, source_data in data.items():
        index = next((i for i, part in enumerate(parts) if part.matches(source)), 0)
        out[index][0][source] = source_data
        if source in meta:
            out[index][1][source] = meta[source]
    return out


@dataclass
class _Lane:
    """One part's server and its release schedule (a heap of ``(when, seq, train)``)."""

    part: Part
    server: BridgeServer
    rng: random.Random
    heap: list = field(default_factory=list)
    last: float = 0.0
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    unsent: int = 0


class SplitServer:
    """Serve the parts of each train on their own bridges, late and lossy as configured.

    Parameters
    ----------
    parts
        The parts (each gets one server).
    endpoints
        Where each part binds (default: free ports on 127.0.0.1).
    sock
        Socket type of every server.
    seed
        Seed of the delays and drops.

    Examples
    --------
    >>> from kb_streams.simulate import simulate
    >>> parts = [parse_part("det=*DET*"), parse_part("slow=*:delay=0.2,drop=0.05")]
    >>> with SplitServer(parts, sock="PUSH") as split:              # doctest: +SKIP
    ...     print(split.endpoints)
    ...     split.serve(simulate("AGIPD-modules", pulses=4), limit=100, rate=10)
    """

    def __init__(self, parts: Sequence[Part], endpoints: Sequence[str | None] | None = None,
                 *, sock: str = "PUSH", seed: int = 0, **server_kwargs: Any) -> None:
        if not parts:
            raise ValueError("a split needs at least one part")
        endpoints = list(endpoints or [None] * len(parts))
        self.parts = list(parts)
        self._lanes: list[_Lane] = []
        try:
            for i, (part, endpoint) in enumerate(zip(parts, endpoints, strict=True)):
                server = BridgeServer(endpoint, sock=sock, **server_kwargs)
                self._lanes.append(_Lane(part, server, random.Random(seed * 1000 + i)))
        except BaseException:
            self.close()
            raise
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._abandon = self._draining = False
        self._threads: list[threading.Thread] = []

    @property
    def endpoints(self) -> list[str]:
        return [lane.server.endpoint for lane in self._lanes]

    def stats(self) -> dict[str, dict[str, int]]:
        """``{part: {'sent', 'dropped', 'unsent'}}`` (unsent: no reader took it in time)."""
        return {lane.part.name: {"sent": lane.sent, "dropped": lane.dropped,
                                 "unsent": lane.unsent} for lane in self._lanes}

    def serve(self, trains: Iterable[Any], *, limit: int | None = None,
              rate: float | None = 10.0) -> int:
        """Split and serve ``trains`` at ``rate`` Hz (``None``: at once) until exhausted,
        ``limit`` trains, or :meth:`stop`; then let the delayed parts out. Returns the count."""
        self._start_lanes()
        count = 0
        period = 1 / rate if rate else 0.0
        start = time.monotonic()
        for item in _limited(trains, limit):
            if self._stop.is_set():
                break
            if not isinstance(item, tuple):
                raise TypeError("split serving needs (data, meta) trains, not encoded messages "
                                "(faults that corrupt or shuffle messages cannot be split)")
            now = time.monotonic()
            for lane, piece in zip(self._lanes, split_train(*item, self.parts), strict=True):
                self._schedule(lane, piece, now)
            count += 1
            if period and self._stop.wait(max(start + count * period - time.monotonic(), 0)):
                break
        self._drain()
        return count

    def _schedule(self, lane: _Lane, piece: tuple[dict, dict], now: float) -> None:
        part = lane.part
        if lane.rng.random() < part.drop:
            lane.dropped += 1
            return
        when = now + part.delay + lane.rng.uniform(0, part.jitter)
        if not part.shuffle:
            when = max(when, lane.last)  # a bridge keeps its own order
        lane.last = when
        with self._wake:
            lane.queued += 1  # ties keep the order they were made in
            heapq.heappush(lane.heap, (when, lane.queued, piece))
            self._wake.notify_all()

    def _start_lanes(self) -> None:
        if self._threads:
            return
        for lane in self._lanes:
            thread = threading.Thread(target=self._release, args=(lane,), daemon=True,
                                      name=f"split {lane.part.name}")
            thread.start()
            self._threads.append(thread)

    def _release(self, lane: _Lane) -> None:
        while True:
            with self._wake:
                while not lane.heap or lane.heap[0][0] > time.monotonic():
                    if self._abandon or (self._draining and not lane.heap):
                        return
                    wait = lane.heap[0][0] - time.monotonic() if lane.heap else 0.05
                    self._wake.wait(min(max(wait, 0.001), 0.05))
                _, _, (data, meta) = heapq.heappop(lane.heap)
            try:
                lane.server.feed(data, meta, timeout=1.0)
                lane.sent += 1
            except queue.Full:
                lane.unsent += 1
            except RuntimeError:  # the server was closed under us
                return

    def _drain(self) -> None:
        """Let every scheduled part out, then end the release threads."""
        self._draining = True
        for thread in self._threads:
            thread.join(max(p.delay + p.jitter for p in self.parts) + 5)

    def stop(self) -> None:
        """Stop serving now (parts still scheduled are not sent)."""
        with self._wake:
            self._abandon = True
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    def close(self) -> None:
        self.stop()
        for thread in self._threads:
            thread.join(2)
        for lane in self._lanes:
            lane.server.close(linger=0.5)

    def __enter__(self) -> SplitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _limited(items: Iterable[Any], limit: int | None) -> Iterator[Any]:
    for count, item in enumerate(items):
        if limit is not None and count >= limit:
            return
        yield item
