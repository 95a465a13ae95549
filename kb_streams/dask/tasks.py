"""The Dask calls of a worker-side source: pinned receive tasks, cancels, probes, stopping.

Every method is awaited from the graph's event loop and runs on the client's
(:func:`~kb_streams.dask.base.on_client_loop`). A :class:`Slot` is one receiver as the graph
sees it: what it receives, where it runs, what it may still deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distributed import Client
from distributed.client import FutureCancelledError

from ..records import detach
from .base import RPC_TIMEOUT, cancel_quietly, on_client_loop
from .order import ReceiveOrder
from .receiver import (
    STATE_PROBE,
    ReceiverSpec,
    TaskResult,
    close_receivers_async,
    receive_and_apply,
)

__all__ = ["ReceiverTasks", "Slot"]

logger = logging.getLogger(__name__)

#: Seconds, beyond ``timeout``, that stopping waits for running tasks before cancelling them.
STOP_GRACE = 10.0


@dataclass(eq=False)
class Slot:
    """One receiver of a worker-side source, as the graph sees it."""

    spec: ReceiverSpec
    worker: str | None = None
    tasks: int = 0
    not_before: float = 0.0
    order: ReceiveOrder = field(default_factory=ReceiveOrder)
    busy: bool = False  # its last report was a train, so another one is likely on its way
    probing: bool = False
    probed_at: float = -math.inf

    @property
    def name(self) -> str:
        return self.spec.name


class ReceiverTasks:
    """Receive-and-apply tasks pinned to workers, for one worker-side source.

    Parameters
    ----------
    client
        The Dask client.
    func, args, kwargs
        What each task applies to the train it takes.
    """

    def __init__(self, client: Client, func: Callable[..., Any], args: tuple,
                 kwargs: Mapping[str, Any]) -> None:
        self.client = client
        self.func = func
        self.args = args
        self.kwargs = kwargs
        # Dask futures in flight -> their worker, and the keys given up on (client's loop only)
        self._futures: dict[Any, str | None] = {}
        self._abandoned: set[str] = set()

    async def workers(self) -> list[str]:
        """The addresses of the running workers, sorted."""
        async def workers() -> list[str]:
            return sorted(await asyncio.wait_for(self.client.scheduler.ncores_running(),
                                                 RPC_TIMEOUT))

        return await on_client_loop(self.client, workers)

    async def run(self, spec: ReceiverSpec, worker: str) -> TaskResult:
        """One task on ``worker``: its result, ``'failed'`` or ``'abandoned'`` (never raises)."""
        return await on_client_loop(self.client, self._run, spec, worker)

    async def _run(self, spec: ReceiverSpec, worker: str) -> TaskResult:
        client = self.client
        future = None
        try:
            future = client.submit(
                receive_and_apply, spec, self.func, self.args, self.kwargs, pure=False,
                key=f"kb-receive-{spec.name}-{uuid.uuid4().hex}", workers=[worker])
            self._futures[future] = worker
            return await client.gather(future, direct=True)
        except (Exception, FutureCancelledError) as exc:
            if future is not None and future.key in self._abandoned:
                return TaskResult(spec.name, "abandoned")
            return TaskResult(spec.name, "failed", error=detach(exc), worker=worker)
        finally:
            if future is not None:
                self._futures.pop(future, None)
                self._abandoned.discard(future.key)
                if not future.done():
                    await cancel_quietly(client, future)

    async def abandon(self, workers: set[str] | None = None) -> None:
        """Cancel the tasks pinned to ``workers`` (all if None): those left would wait forever."""
        async def abandon() -> None:
            futures = [f for f, w in self._futures.items() if workers is None or w in workers]
            if futures:
                self._abandoned.update(f.key for f in futures)
                await asyncio.wait_for(self.client.cancel(futures, asynchronous=True),
                                       RPC_TIMEOUT)

        await on_client_loop(self.client, abandon)

    async def states(self, worker: str, session: str, names: Sequence[str]) -> dict:
        """``{worker: {name: state}}`` of the receivers on ``worker`` (``{}`` if no answer)."""
        async def states() -> dict:
            return await self.client.run(STATE_PROBE, session, names, workers=[worker],
                                         on_error="ignore")

        try:
            return await asyncio.wait_for(on_client_loop(self.client, states), RPC_TIMEOUT)
        except Exception as exc:
            logger.debug("cannot probe the receivers on %s: %s", worker, exc)
            return {}

    async def probe(self, worker: str, session: str, slots: Sequence[Slot]) -> None:
        """Ask ``worker`` what its receivers of ``slots`` still hold; tell their orders."""
        sent = time.monotonic()
        for slot in slots:
            slot.probing, slot.probed_at = True, sent
        try:
            answer = await self.states(worker, session, [slot.name for slot in slots])
        finally:
            for slot in slots:
                slot.probing = False
        for slot in slots:
            if worker not in answer or slot.worker != worker:
                continue
            state = answer[worker].get(slot.name)
            if state is None:
                slot.order.absent(sent)
                slot.busy = False
            elif state[2] == 0:  # nothing waiting for a task
                slot.order.empty(state[0], state[1], sent)

    async def stop(self, session: str, tasks: list[asyncio.Future], timeout: float) -> None:
        """Close the receivers, so their waiting tasks end at once; cancel only what then lasts.

        A cancelled Dask task runs on in its worker thread (here: until its receive times out),
        keeping the worker from the next source; a worker closed meanwhile logs a
        ``CancelledError`` warning for it.
        """
        await self.close_receivers(session, timeout + 10)
        if not tasks:
            return
        _, left = await asyncio.wait(tasks, timeout=timeout + STOP_GRACE)
        if left:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.abandon(), RPC_TIMEOUT)
            _, left = await asyncio.wait(left, timeout=STOP_GRACE)
            for task in left:
                task.cancel()

    async def close_receivers(self, session: str, timeout: float) -> None:
        """Close the bridge clients of ``session`` on every worker (their tasks end at once)."""
        async def close() -> Any:
            return await self.client.run(close_receivers_async, session, on_error="ignore")

        try:
            await asyncio.wait_for(on_client_loop(self.client, close), timeout)
        except Exception as exc:
            logger.debug("could not close the bridge clients on the workers: %s", exc)
