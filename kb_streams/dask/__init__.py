"""Everything of kb_streams that touches Dask, in one package.

* :mod:`~kb_streams.dask.cluster`: :func:`connect`, a client set up for the paths below;
* :mod:`~kb_streams.dask.base`: what every Dask node shares (client, loop, errors, delivery);
* :mod:`~kb_streams.dask.offload`: ``stream.offload(f)``, one item on the cluster;
* :mod:`~kb_streams.dask.in_flight`: offload's bound on items in flight, and their order out;
* :mod:`~kb_streams.dask.on_workers`: ``Stream.from_karabo_bridge_on_workers``;
* :mod:`~kb_streams.dask.on_workers_results`: that source's results, counted and re-ordered;
* :mod:`~kb_streams.dask.order`: the re-order buffer of results, as plain logic;
* :mod:`~kb_streams.dask.placement`: shards, and which worker runs which receiver;
* :mod:`~kb_streams.dask.tasks`: the Dask calls of a worker-side source;
* :mod:`~kb_streams.dask.receiver`: the worker side, bridge clients inside Dask workers.

Names are imported on first use, so that a worker importing :mod:`kb_streams.dask.receiver`
loads no graph node. The old paths (``kb_streams.cluster``, ``kb_streams.offload``,
``kb_streams.worker_receive``) forward every name to these modules.

Which path to use
-----------------
``Stream.from_karabo_bridge(endpoint).map(f)``
    Everything in the graph's process. Fine while ``f`` keeps up with the train rate.
``Stream.from_karabo_bridge(endpoint).offload(f, client=client)`` (:mod:`kb_streams.dask.offload`)
    The graph's process receives each train and scatters it to a worker. Every train crosses one
    more process boundary (about 60-120 ms per 100 MB on loopback), so use it for trains up to a
    few tens of MB, for data already reduced or selected in the graph, or when the graph itself
    needs the whole train.
``Stream.from_karabo_bridge_on_workers(endpoint, f, client)`` (:mod:`kb_streams.dask.on_workers`)
    Each of ``n`` workers runs its own bridge client: REQ on a REP bridge or PULL on a PUSH bridge
    (the bridge hands different trains to different receivers). ``f(train)`` runs where the
    train landed and only its (small) result reaches the graph, re-ordered by train ID. For
    megapixel detectors (100 MB - 1.4 GB trains) at 10 Hz: the train is never copied again.
    Measured on a 2-core machine (``benchmarks/bench_dask.py``: AGIPD-1M, 64 pulses, 336 MB per
    train, 150 ms of CPU per train): 5.8-6.0 trains/s against 2.8-3.3 with ``offload``, with
    7 kB per train (0.002 %) between the graph and the workers instead of the whole train.
Sharding: ``endpoint=[Shard(...), ...]`` or :func:`module_shards`
    Each receiver takes a subset of the detector modules (its own bridge per module group, or SUB
    on one PUB bridge keeping only its modules); the partial results of a train are merged once
    every shard has delivered it. When one receiver cannot take a whole train in time.

"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it, imported on first attribute access
_LAZY = {
    "connect": "cluster",
    "Offload": "offload",
    "OffloadError": "offload",
    "from_karabo_bridge_on_workers": "on_workers",
    "Shard": "placement",
    "module_shards": "placement",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kb_streams.dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
