"""Allocator tuning for processes that receive large trains (glibc only).

libzmq allocates one buffer per received message part. glibc serves a part over its mmap
threshold (at most 32 MiB) with fresh ``mmap`` pages and unmaps them on free, so every train
page-faults its whole size in again, and the kernel zeroes every page first: a 268 MB AGIPD
train cost 65,000 page faults and ~250 ms of system CPU per train on the 2-core test machine.
:func:`tune_malloc` makes glibc keep and reuse that memory instead; the clients call it once per
process (set ``KB_STREAMS_TUNE_MALLOC=0`` to leave the allocator alone).

Reuse is safe by construction: glibc only hands a buffer out again after libzmq freed it, which
pyzmq does only once no array (no ``memoryview``) still views the message.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable

__all__ = ["LARGE_MESSAGE_ENV", "keep_for_trains_of", "tune_malloc", "tune_malloc_once"]

log = logging.getLogger(__name__)
_tuned = False
_kept: int | None = None  # the trim threshold set, once this process was tuned

_M_TRIM_THRESHOLD = -1  # glibc mallopt() parameters
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems
_KEEP = 1 << 30
#: Trains a receiving process holds at once: the one being worked on, the newest waiting (or a
#: prefetched reply) and the one arriving.
_TRAINS_HELD = 3

#: The same tuning as environment variables, for processes started afresh (``dask worker``,
#: batch jobs): unlike :func:`tune_malloc` it also holds for threads that already exist.
LARGE_MESSAGE_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                     "MALLOC_TRIM_THRESHOLD_": str(_KEEP)}


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt()`` in the C library the interpreter is linked with, if it has one."""
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


def tune_malloc(keep: int = _KEEP) -> bool:
    """Let glibc reuse the buffers of received trains instead of mapping fresh pages each time.

    * ``M_ARENA_MAX=1``: threads created from now on (libzmq's I/O thread among them) allocate
      from the main heap. Other arenas grow in 64 MiB heaps and fall back to ``mmap`` for
      anything larger, whatever the settings below.
    * ``M_MMAP_MAX=0``: no allocation is served by its own ``mmap``; a freed train buffer stays
      in the heap and the next train of the same size reuses its pages (no page faults, no
      zeroing).
    * ``M_TRIM_THRESHOLD=keep``: the process gives freed memory at the top of the heap back to
      the kernel only beyond *keep* bytes (it holds on to up to *keep* bytes it freed).
    * ``M_MMAP_THRESHOLD`` at its maximum, for arenas that still map large buffers.

    Measured on the 2-core test machine, 268 MB trains (``kb-streams bench client``): page
    faults per train 65,000 -> 0 (REQ), system CPU per train 250 -> 60 ms, 2-2.7x the trains/s.

    It applies to every allocation made afterwards, in every thread of the process; threads
    that already allocated keep their arena (start such processes with
    :data:`LARGE_MESSAGE_ENV` instead). Returns False (and changes nothing) where glibc's
    ``mallopt`` is not available.

    Examples
    --------
    >>> tune_malloc()   # doctest: +SKIP
    True
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, int(keep)),
                (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
    ok = all([bool(mallopt(param, value)) for param, value in settings])
    log.debug("malloc tuned for large messages: %s", ok)
    return ok


def tune_malloc_once() -> None:
    """:func:`tune_malloc` the first time it is called in a process, unless disabled by
    ``KB_STREAMS_TUNE_MALLOC=0``."""
    global _tuned, _kept
    if _tuned:
        return
    _tuned = True
    if os.environ.get("KB_STREAMS_TUNE_MALLOC", "1") != "0" and tune_malloc():
        _kept = _KEEP


def keep_for_trains_of(nbytes: int) -> None:
    """Keep freed memory for the trains of *nbytes* a receiving process holds at once.

    With 1 GB trains and keep-newest, a consumer holds one train, the slot the newest and libzmq
    receives a third: beyond the 1 GiB trim threshold glibc gave freed buffers back to the
    kernel, the next train page-faulted all its pages in again, and arrived later than the
    link allows (measured: 0.29 s transfers took up to 0.56 s, and the train handed out was up
    to 0.34 s older than one period plus its transfer). Raises the threshold (never lowers it)
    in a process :func:`tune_malloc_once` tuned; does nothing otherwise.
    """
    global _kept
    wanted = _TRAINS_HELD * nbytes
    if _kept is None or wanted <= _kept:
        return
    mallopt = _mallopt()
    if mallopt is None:
        return
    mallopt(_M_TRIM_THRESHOLD, int(wanted))
    _kept = wanted
    log.debug("malloc keeps up to %d bytes freed", wanted)
