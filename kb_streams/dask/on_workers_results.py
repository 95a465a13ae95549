"""What the worker-side source does with a task's result: count it, order it, emit it.

:class:`ResultsInOrder` is mixed into
:class:`~kb_streams.dask.on_workers.from_karabo_bridge_on_workers`. A result is counted (and
warned about once when it is large); a failure becomes an error record; a train comes out of the
re-order buffer (:mod:`kb_streams.dask.order`) when no earlier one can still come, its shards'
parts merged; a train that comes after a later one was emitted is counted late and dropped; the
trains passed over that a worker which left may have held become records on ``errors``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from dask.utils import funcname

from ..records import ErrorRecord, detach
from ..stats import WorkerReceiveStats
from .base import nbytes_of
from .order import Incomplete, LostTrains, ReorderBuffer
from .placement import Shard
from .receiver import TaskResult
from .tasks import Slot

__all__ = ["ResultsInOrder"]

logger = logging.getLogger(__name__)


class ResultsInOrder:
    """The results side of the worker-side source (a :class:`~kb_streams.dask.base.DaskNode`).

    The source sets the attributes annotated here; delivery and error records go through the
    node interface (``_deliver``, ``_report_async``).
    """

    stats: WorkerReceiveStats
    shards: list[Shard] | None
    merge: Callable[[list[Any]], Any] | None
    timeout: float
    wait: float
    _func_name: str
    _slots: list[Slot]
    _buffer: ReorderBuffer
    _losses: LostTrains
    _warned_size: bool

    async def _handle(self, slot: Slot, result: TaskResult, submitted: float) -> None:
        stats = self.stats
        if result.kind == "idle":
            stats.idle += 1
            slot.busy = False
            if result.taken is not None:
                # it waited ``poll`` seconds, starting after the task was submitted
                slot.order.empty(result.epoch, result.taken,
                                 min(submitted + slot.spec.poll, time.monotonic()))
            return
        if result.kind in ("closed", "abandoned"):
            return
        if result.kind == "failed":
            slot.order.failed()
        else:
            slot.order.returned(result.epoch, result.seq, result.train_id)
        if result.seq is not None:
            slot.busy = True
        if result.kind in ("error", "failed"):
            if result.train_id is None:  # receiving or the task failed: do not hammer
                slot.not_before = time.monotonic() + min(self.timeout, 1.0)
            else:
                self._buffer.fail(result.train_id)
            text, exc = result.error
            await self._fail(ErrorRecord(result.train_id, self._func_name, exc, text,
                                         receiver=slot.spec.name, endpoint=slot.spec.endpoint,
                                         worker=result.worker or slot.worker))
            return
        stats.received += 1
        stats.bytes_received += result.nbytes
        nbytes = nbytes_of(result.value)
        stats.bytes_results += nbytes
        if nbytes > max(1e6, 0.05 * result.nbytes) and not self._warned_size:
            self._warned_size = True
            logger.warning("%s returns %.1f MB per train (the train is %.1f MB): reduce more on "
                           "the workers", self._func_name, nbytes / 1e6, result.nbytes / 1e6)
        tid = result.train_id
        if tid is None:  # cannot be ordered: pass it on as it comes
            await self._pass_on(None, result.value)
            return
        part = slot.spec.name if self.shards is not None else ""
        if not self._buffer.add(tid, part, result.value, time.monotonic()):
            stats.late += 1
            logger.debug("train %s from %s came after train %s: dropped", tid, slot.spec.name,
                         self._buffer.last_emitted)
            return
        stats.buffered = len(self._buffer)
        stats.max_buffered = max(stats.max_buffered, stats.buffered)

    async def _emit_ready(self, flush: bool) -> None:
        while (out := self._buffer.pop(time.monotonic(), flush)) is not None:
            if isinstance(out, Incomplete):
                self.stats.incomplete += 1
                logger.info("train %s: no result from %s within %s s, skipped", out.train_id,
                            out.missing, self.wait)
                continue
            tid = out.train_id
            self.stats.skipped += len(out.skipped)
            await self._report_lost(out.skipped)
            if self.shards is None:
                value = out.parts[""]
            else:
                parts = [out.parts[s.name] for s in self.shards]
                try:
                    value = self.merge(parts) if self.merge else dict(
                        zip([s.name for s in self.shards], parts, strict=True))
                except Exception as exc:
                    text, exc = detach(exc)
                    await self._fail(ErrorRecord(tid, funcname(self.merge), exc, text))
                    continue
            del out
            await self._pass_on(tid, value)
        self.stats.buffered = len(self._buffer)

    async def _report_lost(self, skipped: range) -> None:
        """A record per train passed over that a worker which left may have held."""
        for tid, (worker, receiver) in self._losses.passed_over(skipped, self.stats.emitted):
            self.stats.lost += 1
            await self._fail(ErrorRecord(tid, self._func_name, None,
                                         reason="lost with its Dask worker", receiver=receiver,
                                         worker=worker, endpoint=self._endpoint_of(receiver)))

    def _endpoint_of(self, receiver: str) -> str:
        return next(s.spec.endpoint for s in self._slots if s.spec.name == receiver)

    async def _pass_on(self, tid: int | None, value: Any) -> None:
        self.stats.emitted += 1
        await self._deliver(value, train_id=tid, what="the worker-side source")

    async def _fail(self, record: ErrorRecord) -> None:
        self.stats.errors += 1
        if record.train_id is not None:
            self._losses.reported(record.train_id)
        await self._report_async(record)
