"""Where the receivers of a worker-side source run, and what each takes of a train.

:class:`Shard` and :func:`module_shards` say what each receiver takes; :func:`place` pins every
receiver to a live worker, spread evenly, moving those of workers that left. Plain logic: no Dask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["SOCKS", "Shard", "module_shards", "place", "shards_of"]

logger = logging.getLogger(__name__)


SOCKS = ("REQ", "PULL", "SUB")


class _Placed(Protocol):
    name: str
    worker: str | None


@dataclass(frozen=True)
class Shard:
    """One receiver of a sharded worker-side source.

    Parameters
    ----------
    endpoint
        Bridge endpoint this receiver connects to.
    select
        What it keeps of each train: anything :meth:`kb_streams.train.Train.select` takes
        (a source glob, a list of globs, a dict); ``None`` keeps everything.
    name
        Label of the shard (default ``'shard<i>'``); keys of the default merged result.
    sock
        Socket type; default: the source's ``sock``.

    Examples
    --------
    One bridge per module group:

    >>> shards = [Shard("tcp://10.0.0.1:4501", name="Q1"), Shard("tcp://10.0.0.1:4502", name="Q2")]
    """

    endpoint: str
    select: Any = None
    name: str | None = None
    sock: str | None = None


def module_shards(endpoint: str, n: int, *, modules: int = 16,
                  source: str = "*/DET/{module}CH0:*", sock: str = "SUB") -> list[Shard]:
    """Split the modules of one bridge into ``n`` shards of consecutive modules.

    Every shard subscribes (SUB, on a PUB bridge) to the whole train and keeps its modules: this
    splits the CPU work, not the network traffic. For that, give each module group its own bridge.

    Examples
    --------
    >>> [s.name for s in module_shards("tcp://127.0.0.1:4545", 4)]
    ['modules 0-3', 'modules 4-7', 'modules 8-11', 'modules 12-15']
    >>> module_shards("tcp://127.0.0.1:4545", 2, modules=4)[1].select
    ['*/DET/2CH0:*', '*/DET/3CH0:*']
    """
    if not 1 <= n <= modules:
        raise ValueError(f"need 1 to {modules} shards, not {n}")
    groups = np.array_split(np.arange(modules), n)
    return [Shard(endpoint, select=[source.format(module=m) for m in group],
                  name=f"modules {group[0]}-{group[-1]}", sock=sock) for group in groups]


def shards_of(endpoint: str | Sequence[str | Shard], sock: str, n: int | None
              ) -> list[Shard] | None:
    """The named, checked shards of ``endpoint`` (``None`` for a single endpoint).

    Examples
    --------
    >>> [(s.name, s.sock) for s in shards_of(["tcp://a:1", Shard("tcp://b:2", sock="SUB")],
    ...                                      "PULL", None)]
    [('shard0', 'PULL'), ('shard1', 'SUB')]
    """
    if isinstance(endpoint, str):
        if sock not in SOCKS:
            raise ValueError(f"sock must be one of {SOCKS}, not {sock!r}")
        if sock == "SUB" and n not in (None, 1):
            raise ValueError("with SUB every receiver gets every train: use n=1, or shards")
        return None
    shards = [s if isinstance(s, Shard) else Shard(s) for s in endpoint]
    if not shards:
        raise ValueError("no shards given")
    shards = [Shard(s.endpoint, s.select, s.name or f"shard{i}", (s.sock or sock).upper())
              for i, s in enumerate(shards)]
    names = [s.name for s in shards]
    if len(set(names)) != len(names):
        raise ValueError(f"shard names must differ: {names}")
    for s in shards:
        if s.sock not in SOCKS:
            raise ValueError(f"shard {s.name}: sock must be one of {SOCKS}, not {s.sock!r}")
    return shards


def place(receivers: Sequence[_Placed], workers: Sequence[str]) -> int:
    """Pin every receiver to one of ``workers``, evenly; how many moved off a worker that left.

    Receivers stay where they are while their worker is listed; those of workers that left (or
    placed nowhere yet) go to the least loaded ones, then receivers move from crowded workers
    to new ones until loads differ by at most one. With no worker, nothing is placed.

    Examples
    --------
    >>> from types import SimpleNamespace as Receiver
    >>> receivers = [Receiver(name=f"r{i}", worker=None) for i in range(3)]
    >>> place(receivers, ["w1", "w2"]), [r.worker for r in receivers]
    (0, ['w1', 'w2', 'w1'])
    >>> place(receivers, ["w2", "w3"]), [r.worker for r in receivers]
    (2, ['w3', 'w2', 'w2'])
    """
    if not workers:
        return 0
    moved = 0
    load = dict.fromkeys(workers, 0)
    for receiver in receivers:
        if receiver.worker in load:
            load[receiver.worker] += 1
    for receiver in receivers:
        if receiver.worker not in load:
            target = min(workers, key=load.__getitem__)
            if receiver.worker is not None:
                moved += 1
                logger.info("receiver %s: worker %s is gone, now on %s", receiver.name,
                            receiver.worker, target)
            receiver.worker = target
            load[target] += 1
    while True:  # move receivers from crowded workers to new ones
        busiest = max(workers, key=load.__getitem__)
        idlest = min(workers, key=load.__getitem__)
        if load[busiest] - load[idlest] <= 1:
            break
        receiver = next(r for r in receivers if r.worker == busiest)
        receiver.worker = idlest
        load[busiest] -= 1
        load[idlest] += 1
        moved += 1
    return moved
