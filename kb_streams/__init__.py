"""kb_streams: Karabo bridge trains into streamz graphs, labelled with xarray, offloaded to Dask.

The wire layer (codec, clients, server) is imported eagerly and needs only pyzmq, msgpack and numpy,
so ``from kb_streams import Client`` stays as light as ``karabo_bridge``. Names that need xarray,
streamz or Dask are imported on first use.

Examples
--------
>>> import kb_streams
>>> kb_streams.Client                                   # doctest: +ELLIPSIS
<class 'kb_streams.client.Client'>
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .client import AsyncClient, Client
from .endpoints import check_endpoint
from .errors import EndpointError, KBStreamsError, ProtocolError
from .protocol import Limits, Message, decode, deserialize, encode, serialize
from .server import BridgeServer
from .stats import StreamStats

# public name -> module that defines it, imported on first attribute access
_LAZY = {
    "Train": "train",
    "SourceNameError": "errors",
    "PropertyNameError": "errors",
    "LayoutError": "errors",
    "label_array": "labels",
    "stack_modules": "stacking",
    "Reduction": "reduce",
    "RunningStats": "reduce",
    "RollingMean": "reduce",
    "Histogram": "reduce",
    "BinnedStats": "reduce",
    "PumpProbe": "reduce",
    "merge_all": "reduce",
    "Segments": "reduce",
    "TrainJoiner": "join",
    "JoinStats": "join",
    "join_trains": "join_stream",
    "to_hdf5": "save",
    "open_results": "save",
    "SaveStats": "save",
    "from_karabo_bridge": "sources",
    "SourceStats": "stats",
    "from_run": "run_source",
    "forget_values": "nodes",
    "Finished": "nodes",
    "NodeStats": "stats",
    "OffloadStats": "stats",
    "WorkerReceiveStats": "stats",
    "to_karabo_bridge": "sinks",
    "to_bridge_train": "bridge_train",
    "SinkStats": "stats",
    "ErrorRecord": "records",
    "connect": "dask.cluster",
    "Offload": "dask.offload",
    "OffloadError": "dask.offload",
    "from_karabo_bridge_on_workers": "dask.on_workers",
    "module_shards": "dask.placement",
    "Shard": "dask.placement",
    "Dashboard": "web",
    "Parameter": "web",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kb_streams' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncClient",
    "BridgeServer",
    "Client",
    "EndpointError",
    "KBStreamsError",
    "Limits",
    "Message",
    "ProtocolError",
    "StreamStats",
    "check_endpoint",
    "decode",
    "deserialize",
    "encode",
    "serialize",
    *_LAZY,
]
