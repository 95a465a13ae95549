"""kb_streams: Karabo bridge trains into streamz graphs, labelled with xarray, offloaded to Dask."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import KBStreamsError, ProtocolError
from .protocol import Message, deserialize, serialize

__all__ = [
    "KBStreamsError",
    "Message",
    "ProtocolError",
    "deserialize",
    "serialize",
]
