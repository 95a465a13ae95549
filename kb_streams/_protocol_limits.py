"""How much work one bridge message may ask of the decoder: :class:`Limits`.

Private to the codec; :class:`Limits` is public as ``kb_streams.Limits``. Every cap is checked
before the work it bounds (the part count before any part is looked at, a header's size before it
is unpacked, a dtype's field count before any field is built), so a hostile message costs
microseconds to refuse however large its claims.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "DEFAULT_LIMITS"]


@dataclass(frozen=True)
class Limits:
    """Caps on what one message may contain, checked before decoding the parts they bound.

    The defaults are far above any train a Karabo bridge sends (a 1 Mpx AGIPD train is 192 parts
    of which no header exceeds 300 bytes) and far below what stalls a stream. Raise one with
    ``dataclasses.replace(Limits(), max_parts=...)`` and pass it to :func:`kb_streams.decode`,
    :class:`kb_streams.Client`, :class:`kb_streams.AsyncClient` or ``from_karabo_bridge``.

    Attributes
    ----------
    max_parts
        ZeroMQ parts in one message (2.x: two per source plus two per array).
    max_header_bytes
        Size of one 2.x header part (the metadata lives there: a few hundred bytes in practice).
    max_dtype_fields
        Fields of one structured dtype, nested fields included.
    max_container_len
        Elements of one msgpack list or map in a header or payload (bulk data belongs in
        arrays); each container is also capped at its buffer's size in bytes.
    max_message_bytes
        Total size of one message's parts, or ``None`` (default) for no cap: a 1 GB train is
        legitimate. ZeroMQ's ``MAXMSGSIZE`` bounds each part before it is even received.

    Examples
    --------
    >>> from dataclasses import replace
    >>> Limits().max_parts
    20000
    >>> replace(Limits(), max_parts=100).max_parts
    100
    """

    max_parts: int = 20_000
    max_header_bytes: int = 1 << 20
    max_dtype_fields: int = 1_000
    max_container_len: int = 1 << 24
    max_message_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_parts", "max_header_bytes", "max_dtype_fields", "max_container_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, not {getattr(self, name)}")
        if self.max_message_bytes is not None and self.max_message_bytes < 1:
            raise ValueError("Limits.max_message_bytes must be at least 1 or None")


DEFAULT_LIMITS = Limits()
