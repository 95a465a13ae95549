"""Allocator tuning for processes that receive large trains (glibc only).

libzmq allocates one buffer per received message part. Above glibc's mmap threshold each buffer is
fresh ``mmap`` memory, returned to the kernel on free, so every train page-faults its whole size in
again. :func:`tune_malloc` makes glibc recycle that memory instead; the clients call it once per
process (set ``KB_STREAMS_TUNE_MALLOC=0`` to leave the allocator alone).
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["tune_malloc", "tune_malloc_once"]

log = logging.getLogger(__name__)
_tuned = False

_M_TRIM_THRESHOLD = -1  # glibc mallopt() parameters
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems


def tune_malloc(keep: int = 1 << 30) -> bool:
    """Let glibc reuse the buffers of received trains instead of mapping fresh pages each time.

    libzmq allocates a buffer per received message part. glibc serves parts over its mmap
    threshold with fresh ``mmap`` pages and returns them on free, so every train page-faults its
    whole size in again: for 16.8 MB AGIPD module parts this halved the trains/s a receiver
    could take on the 2-core test machine. Raising the mmap threshold to its maximum (32 MiB)
    and the trim threshold to *keep* bytes makes glibc recycle heap memory (the process then
    holds on to up to *keep* bytes it freed). Parts over 32 MiB are not helped.

    It applies to every allocation made afterwards, in every thread of the process.
    Returns False (and changes nothing) where glibc's ``mallopt`` is not available.

    Examples
    --------
    >>> tune_malloc()   # doctest: +SKIP
    True
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, int(keep))) and ok
    log.debug("malloc tuned for large messages: %s", ok)
    return ok


def tune_malloc_once() -> None:
    """:func:`tune_malloc` the first time it is called in a process, unless disabled by
    ``KB_STREAMS_TUNE_MALLOC=0``."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    if os.environ.get("KB_STREAMS_TUNE_MALLOC", "1") != "0":
        tune_malloc()
