"""What every Dask node of ours shares: the client, the loop, errors, delivery, forgetting.

:class:`DaskNode` is mixed into :class:`~kb_streams.dask.offload.Offload` and
:class:`~kb_streams.dask.on_workers.from_karabo_bridge_on_workers`:

* the client: the one given, else the default client when the node is built (never a later one);
* the loop: the graph's, or the client's when the graph has none yet (a sync client runs its loop
  in its own thread), so a graph built after the client never hangs;
* the node interface (:class:`kb_streams.nodes.NodeInterface`): ``errors``, ``finished``,
  ``join()``; records are logged once, counted by the node and emitted on ``errors``;
* delivery downstream, where an exception in the graph is logged with the train ID and the
  stream goes on; the node forgets each item once passed on (``current_value``);
* the Dask calls made on the client's loop (:func:`on_client_loop`), and the warning that the
  cluster has no workers, at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np
from dask.sizeof import sizeof
from distributed import Client, default_client

from ..nodes import ForgetValues, NodeInterface

__all__ = ["DaskNode", "RPC_TIMEOUT", "WARN_EVERY", "cancel_quietly", "in_loop", "loop_for",
           "nbytes_of", "on_client_loop", "resolve_client"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two warnings that the cluster has no workers.
WARN_EVERY = 60.0
#: Most seconds to wait for the scheduler to answer a cancel or a worker count.
RPC_TIMEOUT = 10.0
#: Seconds between checks that the client's event loop still runs, while waiting on it.
LOOP_CHECK = 1.0


def nbytes_of(item: Any) -> int:
    """Bytes an item weighs: its ``nbytes`` if it says, the size of its ``data`` mapping (a
    ``Train``), else Dask's ``sizeof`` estimate.

    Examples
    --------
    >>> nbytes_of(np.zeros((4, 1000), np.float32))
    16000
    """
    nbytes = getattr(item, "nbytes", None)
    if isinstance(nbytes, (int, np.integer)) and not isinstance(nbytes, bool):
        return int(nbytes)
    data = getattr(item, "data", None)
    if isinstance(data, Mapping):
        return int(sizeof(data))
    return int(sizeof(item))


def resolve_client(client: Client | None, what: str) -> Client:
    """``client``, else the current default client; ``ValueError`` naming ``what`` if none.

    Examples
    --------
    >>> resolve_client(None, "offload")                       # doctest: +SKIP
    Traceback (most recent call last):
    ValueError: offload needs a Dask client: pass client=kb_streams.cluster.connect(...)
    """
    if client is not None:
        return client
    try:
        return default_client()
    except ValueError:
        raise ValueError(f"{what} needs a Dask client: pass "
                         "client=kb_streams.cluster.connect(...)") from None


def loop_for(client: Client, upstream_loop: Any, asynchronous: bool | None
             ) -> tuple[Any, bool | None]:
    """The ``(loop, asynchronous)`` a node runs on: the graph's loop if it has one, else the
    client's (``asynchronous=True`` for an asynchronous client, unless already decided)."""
    if upstream_loop is not None:
        return upstream_loop, asynchronous
    if asynchronous is None and getattr(client, "_asynchronous", False):
        asynchronous = True
    return client.loop, asynchronous


class DaskNode(ForgetValues, NodeInterface):
    """Mixin for our Dask streamz nodes; put it first in the bases.

    The node sets ``self.client`` and ``self.stats`` and calls :meth:`_init_interface` once its
    loop is known; it counts failures in ``stats`` itself (see :meth:`_fail`).
    """

    client: Client
    _warned_no_workers: float = -WARN_EVERY

    async def _deliver(self, value: Any, metadata: list | None = None,
                       train_id: int | None = None, what: str = "") -> None:
        """Emit ``value`` downstream; an exception there is logged, the stream goes on."""
        try:
            await asyncio.gather(*self._emit(value, metadata=metadata))
        except Exception:
            logger.exception("downstream of %s raised on %s", what or type(self).__name__,
                             f"train {train_id}" if train_id is not None else "an item")

    async def _on_client(self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return await on_client_loop(self.client, func, *args)

    def _warn_no_workers(self, message: str, *args: Any) -> None:
        """Log that the cluster has no workers, at most once every :data:`WARN_EVERY` s."""
        now = time.monotonic()
        if now - self._warned_no_workers >= WARN_EVERY:
            self._warned_no_workers = now
            logger.warning(message, *args)

    async def _watch(self, task: asyncio.Future, deadline: float | None, every: float) -> bool:
        """Wait for ``task`` until ``deadline``, checking every ``every`` seconds that the
        cluster has workers (:meth:`_no_workers`); whether it had none at the last check."""
        no_workers = False
        while not task.done():
            step = every if deadline is None else min(every, deadline - time.monotonic())
            if step <= 0:
                break
            await asyncio.wait({task}, timeout=step)
            if not task.done():
                no_workers = await self._no_workers()
        return no_workers

    async def _no_workers(self) -> bool:
        """Whether the cluster has no running workers (a node warns here what that means)."""
        return await self._count_workers() == 0

    async def _count_workers(self) -> int | None:
        """How many running workers the scheduler has; ``None`` if it does not answer.

        Call it on the client's loop.
        """
        try:
            return len(await asyncio.wait_for(self.client.scheduler.ncores_running(),
                                              RPC_TIMEOUT))
        except Exception:  # no answer: do not guess
            logger.debug("cannot count the Dask workers", exc_info=True)
            return None


async def on_client_loop(client: Client, func: Callable[..., Coroutine[Any, Any, T]],
                         *args: Any) -> T:
    """Await ``func(*args)`` on the client's event loop, from whichever loop the graph runs on.

    A distributed ``Future`` can only be awaited on its client's loop; a sync client runs its
    loop in another thread.
    """
    client_loop = client.loop.asyncio_loop
    if asyncio.get_running_loop() is client_loop:
        return await func(*args)
    if client.status in ("closing", "closed") or not client_loop.is_running():
        raise RuntimeError(f"the Dask client is {client.status}: its event loop does not run")
    done = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(func(*args), client_loop))
    try:
        # a loop that stops (its client closed) would leave this wait unanswered: look at it
        while not (await asyncio.wait({done}, timeout=LOOP_CHECK))[0]:
            if not client_loop.is_running():
                raise RuntimeError(f"the Dask client's event loop stopped (client {client.status})")
    except BaseException:
        if not done.done() and client_loop.is_running():
            done.cancel()
        raise
    return done.result()


async def cancel_quietly(client: Client, future: Any) -> None:
    """Cancel a Dask future, ignoring a client that is closing (its key goes with it anyway)."""
    try:
        await asyncio.wait_for(client.cancel([future], asynchronous=True), RPC_TIMEOUT)
    except Exception:
        logger.debug("could not cancel %s", future.key, exc_info=True)


def in_loop(loop: Any) -> bool:
    """Whether this thread is running ``loop`` (a tornado IOLoop)."""
    try:
        return asyncio.get_running_loop() is loop.asyncio_loop
    except RuntimeError:
        return False
