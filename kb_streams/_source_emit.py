"""How the bridge source hands a train to its graph, and waits for the graph to let it go.

An :class:`InFlightTicket` per train counts it in flight (and holds a place under
``max_in_flight``) until its last reference has left the graph. :class:`EmitsTrains`, mixed into
:class:`~kb_streams.sources.from_karabo_bridge`, emits a train to each branch so that a failing
branch stops neither the others nor the source (the failures are returned, to be reported once),
and after a stop waits, bounded, for the trains still in the graph.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamz.core import RefCounter

from .graph_errors import reported_by_caller
from .train import Train

__all__ = ["EmitsTrains", "InFlightTicket"]


class InFlightTicket:
    """One train's ticket: released once, when the train has left the graph or failed."""

    __slots__ = ("_source", "_semaphore", "_released")

    def __init__(self, source: EmitsTrains, semaphore: asyncio.Semaphore | None) -> None:
        self._source = source
        self._semaphore = semaphore
        self._released = False
        source._in_flight += 1

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._source._in_flight -= 1
        if self._semaphore is not None:
            self._semaphore.release()


class EmitsTrains:
    """The graph side of the bridge source (a streamz ``Source``); counts ``_in_flight``."""

    _in_flight: int
    downstreams: Any
    loop: Any

    def _emit_train(self, train: Train, ticket: InFlightTicket) -> tuple[list, list[BaseException]]:
        """Like ``Stream._emit``, but one failing branch neither stops the others nor the source."""
        downstreams = list(self.downstreams)
        if not downstreams:
            ticket.release()
            return [], []
        metadata = [{"ref": RefCounter(cb=ticket.release, loop=self.loop),
                     "train_id": train.train_id}]
        self._retain_refs(metadata, len(downstreams))
        awaitables: list = []
        failures: list[BaseException] = []
        for downstream in downstreams:
            try:
                with reported_by_caller():  # by _downstream_error, once
                    result = downstream.update(train, who=self, metadata=metadata)
            except Exception as exc:
                failures.append(exc)
            else:
                if type(result) is list:
                    awaitables.extend(r for r in result if r is not None)
                elif result is not None:
                    awaitables.append(result)
            finally:
                self._release_refs(metadata)
        return awaitables, failures

    async def _drain(self, timeout: float = 5.0, quiet: float = 0.5) -> None:
        """After stop: wait for the trains still in the graph (bounded).

        Gives up once none has left for ``quiet`` seconds: windows and partitions keep the
        references of the trains they hold until they emit, which may be never.
        """
        deadline = time.monotonic() + timeout
        last, since = self._in_flight, time.monotonic()
        while self._in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if self._in_flight != last:
                last, since = self._in_flight, time.monotonic()
            elif time.monotonic() - since > quiet:
                break
