"""Faults injected on request, for testing clients.

Given as a dict, a ``'name=value,name=value'`` string, or a list of such strings (the CLI's
repeated ``--fault``). Train counts are train-ID offsets from the first train ID, so
``skip_every=10`` leaves out train IDs ``first+9, first+19, ...``.

=====================  =======================================================================
fault                  effect
=====================  =======================================================================
``skip_every=N``       every Nth train ID (N >= 2) is never sent (a gap in train IDs)
``missing_module=M``   module number(s) ``M`` (``3`` or ``3+7``; AGIPD/LPD count from 0,
                       JUNGFRAU from 1) whose source is left out; combined sources send the
                       module filled with NaN (0 when raw) and ``modulesPresent`` False
``missing_every=N``    with ``missing_module`` and per-module sources: leave the module(s) out
                       of every Nth train only (default: every train)
``shuffle_every=N``    every Nth train is an encoded protocol 2.2 message with its
                       (header, payload) pairs in shuffled order; it still decodes to the same
                       train with a decoder that accepts any part order
``corrupt_every=N``    every Nth train is an encoded message that cannot be decoded; the kinds
                       cycle through :data:`CORRUPTIONS`
=====================  =======================================================================

A train hit by several faults: skipping wins over corruption, corruption over shuffling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

__all__ = ["CORRUPTIONS", "FAULTS", "Faults", "corrupt", "shuffle"]

#: Fault names and what they do (for help texts).
FAULTS: dict[str, str] = {
    "skip_every": "leave out every Nth train ID",
    "missing_module": "leave out module number(s), e.g. 3 or 3+7",
    "missing_every": "with missing_module: only every Nth train",
    "shuffle_every": "send every Nth train with its message parts shuffled (2.2)",
    "corrupt_every": "send every Nth train as an undecodable message",
}

#: Kinds of corruption, used in turn by ``corrupt_every``.
CORRUPTIONS = ("truncated-array", "garbage-header", "odd-parts", "unknown-content")


def _positive(name: str, value: Any) -> int:
    low = 2 if name == "skip_every" else 1  # skipping every train would never send one
    try:
        number = int(value)
        whole = number == float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {name} needs a whole number, not {value!r}") from None
    if number < low or not whole:
        raise ValueError(f"fault {name} needs a whole number >= {low}, not {value!r}")
    return number


def _modules(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace("+", " ").replace(";", " ").split() if p]
    elif isinstance(value, Iterable):
        parts = list(value)
    else:
        parts = [value]
    try:
        modules = tuple(sorted({int(p) for p in parts}))
    except (TypeError, ValueError):
        raise ValueError(f"fault missing_module needs module numbers, not {value!r}") from None
    if not modules or min(modules) < 0:
        raise ValueError(f"fault missing_module needs module numbers >= 0, not {value!r}")
    return modules


@dataclass(frozen=True)
class Faults:
    """The faults of one simulator (all off by default).

    Examples
    --------
    >>> faults = Faults.parse('skip_every=10,missing_module=3+5')
    >>> faults.skip_every, faults.missing_module, faults.skipped(9), faults.missing(0)
    (10, (3, 5), True, frozenset({3, 5}))
    >>> Faults.parse({'corrupt_every': 13}).wire_fault(12)
    'corrupt'
    """

    skip_every: int | None = None
    missing_module: tuple[int, ...] = ()
    missing_every: int = 1
    shuffle_every: int | None = None
    corrupt_every: int | None = None

    @classmethod
    def parse(cls, spec: Faults | Mapping[str, Any] | str | Sequence[str] | None) -> Faults:
        """Read faults from a dict, ``'name=value,...'`` string(s), or None (no faults)."""
        if spec is None:
            return cls()
        if isinstance(spec, Faults):
            return spec
        items: dict[str, Any] = {}
        if isinstance(spec, Mapping):
            items = dict(spec)
        else:
            texts = [spec] if isinstance(spec, str) else list(spec)
            for text in texts:
                for part in str(text).split(","):
                    if not part.strip():
                        continue
                    name, sep, value = part.partition("=")
                    if not sep:
                        raise ValueError(f"fault {part.strip()!r} is not name=value; "
                                         f"known faults: {', '.join(FAULTS)}")
                    items[name.strip().replace("-", "_")] = value.strip()
        unknown = sorted(set(items) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(FAULTS)}")
        kwargs: dict[str, Any] = {}
        for name, value in items.items():
            if value is None:
                continue
            kwargs[name] = _modules(value) if name == "missing_module" else _positive(name, value)
        if "missing_every" in kwargs and not kwargs.get("missing_module"):
            raise ValueError("fault missing_every needs missing_module")
        return cls(**kwargs)

    @property
    def active(self) -> bool:
        return self != Faults()

    def __str__(self) -> str:
        parts = []
        for name in FAULTS:
            value = getattr(self, name)
            if value in (None, ()) or (name == "missing_every" and value == 1):
                continue
            text = "+".join(map(str, value)) if isinstance(value, tuple) else str(value)
            parts.append(f"{name}={text}")
        return ",".join(parts)

    def skipped(self, offset: int) -> bool:
        """Whether the train ``offset`` trains after the first is left out."""
        return bool(self.skip_every) and (offset + 1) % self.skip_every == 0  # type: ignore[operator]

    def missing(self, offset: int) -> frozenset[int]:
        """Module numbers left out of the train at ``offset``."""
        if self.missing_module and (offset + 1) % self.missing_every == 0:
            return frozenset(self.missing_module)
        return frozenset()

    def wire_fault(self, offset: int) -> str | None:
        """``'corrupt'``, ``'shuffle'`` or None for the train at ``offset``."""
        if self.corrupt_every and (offset + 1) % self.corrupt_every == 0:
            return "corrupt"
        if self.shuffle_every and (offset + 1) % self.shuffle_every == 0:
            return "shuffle"
        return None


def shuffle(frames: list[Any], rng: np.random.Generator) -> list[Any]:
    """The (header, payload) pairs of a 2.2 message in a different order (same frames)."""
    pairs = [frames[i:i + 2] for i in range(0, len(frames) - 1, 2)]
    if len(pairs) < 2:
        return list(frames)
    order = list(range(len(pairs)))
    while order == sorted(order):
        order = [int(i) for i in rng.permutation(len(pairs))]
    return [frame for i in order for frame in pairs[i]]


def _nbytes(frame: Any) -> int:
    return memoryview(frame).nbytes


def corrupt(frames: list[Any], kind: str) -> list[Any]:
    """A copy of the message list ``frames`` broken in the way ``kind`` names.

    The frames themselves are never modified (they may be views on pool arrays): broken parts
    are replaced by new objects or shorter views.
    """
    out = list(frames)
    if len(out) == 1:  # protocol 1.0: one msgpack part; cut it short
        view = memoryview(out[0]).cast("B")
        out[0] = view[: max(1, len(view) // 2)]
        return out
    if kind == "truncated-array":
        arrays = [i for i in range(0, len(out) - 1, 2)
                  if _header(out[i]).get("content") == "array"]
        if arrays:
            i = max(arrays, key=lambda j: _nbytes(out[j + 1])) + 1
            view = memoryview(out[i]).cast("B")
            out[i] = view[: len(view) // 2]
            return out
        kind = "garbage-header"
    if kind == "garbage-header":
        out[0] = b"\xc1 not msgpack"
    elif kind == "odd-parts":
        out.pop()
    elif kind == "unknown-content":
        header = _header(out[0])
        header["content"] = "pickle.HIGHEST_PROTOCOL"
        out[0] = msgpack.packb(header, use_bin_type=True)
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}")
    return out


def _header(frame: Any) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(memoryview(frame), raw=False)
    except Exception:
        return {}
    return header if isinstance(header, dict) else {}
