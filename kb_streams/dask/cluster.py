"""One way to get a Dask client for kb_streams graphs.

:func:`connect` returns a :class:`distributed.Client` set up the way the offload paths need it:

* ``direct_to_workers=True``: scattered trains and gathered results go straight between this
  process and the workers instead of through the scheduler (halves the cost of a 100 MB transfer).
* With no address (or ``'local'``) it starts a :class:`distributed.LocalCluster` of worker
  *processes* (no shared GIL with the graph) bound to 127.0.0.1, dashboard off unless asked for,
  and owned by the client: ``client.close()`` also stops the cluster.
* Sync or async: ``connect()`` from a plain script gives a client running its own event-loop
  thread; ``await connect(asynchronous=True)`` (or ``async with``) inside ``asyncio.run(...)``
  gives a client on the running loop.

Start order: create the client first, then build the graph. kb_streams' Dask nodes
(:class:`kb_streams.offload.Offload` and
:class:`kb_streams.worker_receive.from_karabo_bridge_on_workers`) take the client explicitly and
hand their work to the client's loop themselves, so they neither hang when the graph runs on
another loop nor follow a later client that becomes the Dask default. Stock streamz Dask nodes
(``scatter``/``gather``) do follow ``default_client()``; keep ``set_as_default`` at its default
if you mix them in.

Worker processes are started with the ``spawn`` method: a script that calls ``connect()`` needs the
``if __name__ == "__main__":`` guard.

Memory allocator: Dask starts local worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``, which
turns off glibc's adaptive thresholds, so every large buffer is a fresh ``mmap`` whose pages fault
in again. For a worker receiving trains that doubles the cost of receiving: 230 instead of 110 ms
of (system) CPU per 335 MB train here. :func:`connect` leaves that variable out for the clusters it
starts (``trim_memory=True`` keeps Dask's default). For ``dask worker`` processes you start
yourself, use ``--no-nanny`` or set the Dask config
``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_`` to ``None``.

Profiler: Dask samples the stack of every worker's task threads each 10 ms and keeps 1000
one-second profiles (and as many per task prefix), for the dashboard. A worker streaming trains
grows by about 0.1-0.2 MB per busy second for those 17 minutes (``kb-streams bench dask --soak``).
:func:`connect` starts local workers with it off (``profile=True`` turns it on); for workers you
start yourself, set ``distributed.worker.profile.enabled`` to ``False``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from distributed import Client, Nanny

__all__ = ["close_workers_first", "connect"]

logger = logging.getLogger(__name__)

_TRIM = "MALLOC_TRIM_THRESHOLD_"
_PROFILE = "distributed.worker.profile.enabled"


class _AdaptiveMallocNanny(Nanny):
    """A Nanny that starts its worker without Dask's ``MALLOC_TRIM_THRESHOLD_``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if os.environ.get(_TRIM) is None:  # not the user's own setting
            self.pre_spawn_env.pop(_TRIM, None)
            self.env.pop(_TRIM, None)


def connect(
    address: str | Client | None = None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    asynchronous: bool = False,
    dashboard: bool = False,
    set_as_default: bool = True,
    timeout: float | None = 30,
    trim_memory: bool = False,
    profile: bool = False,
    **cluster_kwargs: Any,
) -> Client:
    """Connect to a Dask cluster, or start a local one, for offloading reductions.

    Parameters
    ----------
    address
        ``None`` or ``'local'``: start a :class:`distributed.LocalCluster` owned by the returned
        client (closed with it). A string such as ``'tcp://10.0.0.5:8786'``: connect to a running
        scheduler. A :class:`distributed.Client`: returned unchanged.
    n_workers, threads_per_worker, processes
        Shape of a local cluster (ignored otherwise). ``processes=False`` runs the workers as
        threads of this process: zero-copy but sharing the GIL with the graph; only for
        prototyping.
    asynchronous
        ``True`` inside a running event loop: the client is then awaitable, use
        ``client = await connect(..., asynchronous=True)`` or ``async with``.
    dashboard
        Serve the scheduler dashboard of a local cluster on a free port of 127.0.0.1
        (``client.dashboard_link`` tells where). Off by default.
    set_as_default
        Make the client the Dask default (what ``dask.compute`` and stock streamz Dask nodes use).
    timeout
        Seconds to wait for the scheduler to answer.
    trim_memory
        Start local worker processes with Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (returns freed
        memory to the system sooner, but about doubles the CPU cost of receiving large trains;
        see the module docstring). Off by default.
    profile
        Run Dask's statistical profiler on local worker processes (the dashboard's profile page);
        it costs each busy worker memory for its first 17 minutes (see the module docstring).
        Off by default.
    cluster_kwargs
        More keyword arguments for :class:`distributed.LocalCluster` (e.g. ``memory_limit``).

    Returns
    -------
    distributed.Client
        With ``direct_to_workers=True``.

    Examples
    --------
    From a script (guarded, since worker processes are spawned):

    >>> if __name__ == "__main__":                              # doctest: +SKIP
    ...     client = connect(n_workers=2)
    ...     ...  # build and run the graph
    ...     client.close()                                      # stops the local cluster too

    In an asyncio program:

    >>> async def main():                                       # doctest: +SKIP
    ...     async with connect("tcp://10.0.0.5:8786", asynchronous=True) as client:
    ...         ...  # build the graph here, inside the running loop
    """
    if isinstance(address, Client):
        return address
    common: dict[str, Any] = {
        "asynchronous": asynchronous,
        "direct_to_workers": True,
        "set_as_default": set_as_default,
        "timeout": timeout,
    }
    if address is None or address == "local":
        if cluster_kwargs.get("host") is None and processes:
            # processes=False uses the inproc transport; a host there prevents the start
            cluster_kwargs["host"] = "127.0.0.1"
        # the scheduler always serves HTTP (health, metrics): keep it on a free loopback port
        cluster_kwargs.setdefault("dashboard_address", "127.0.0.1:0")
        scheduler_kwargs = dict(cluster_kwargs.pop("scheduler_kwargs", None) or {})
        scheduler_kwargs.setdefault("dashboard", dashboard)
        cluster_kwargs["scheduler_kwargs"] = scheduler_kwargs
        if processes and not trim_memory:
            cluster_kwargs.setdefault("worker_class", _AdaptiveMallocNanny)
        worker_class = cluster_kwargs.get("worker_class", Nanny)
        if processes and isinstance(worker_class, type) and issubclass(worker_class, Nanny):
            # a Nanny hands its config to the worker process it starts
            cluster_kwargs["config"] = {_PROFILE: profile, **(cluster_kwargs.get("config") or {})}
        logger.info("starting a local Dask cluster: %d worker %s x %d thread(s)", n_workers,
                    "processes" if processes else "threads", threads_per_worker)
        return Client(n_workers=n_workers, threads_per_worker=threads_per_worker,
                      processes=processes, **common, **cluster_kwargs)
    if cluster_kwargs:
        raise TypeError(f"cluster options {sorted(cluster_kwargs)} only apply to a local cluster")
    if not isinstance(address, str):
        raise TypeError(f"address must be None, 'local', a scheduler address or a Client, "
                        f"not {type(address).__name__}")
    return Client(address, **common)


def close_workers_first(client: Client, timeout: float = 20.0) -> None:
    """Stop the workers of the local cluster *client* owns, before the client closes it.

    ``client.close()`` closes the scheduler while the workers may still send heartbeats: a
    worker whose heartbeat finds the scheduler gone prints a traceback on the way out, after a
    run that went well. Waits at most *timeout* seconds; closing goes on as before if it fails.
    """
    try:
        client.cluster.scale(0)
        deadline = time.monotonic() + timeout
        while client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
    except Exception as exc:
        logger.debug("closing the local workers first failed: %r", exc)
