"""Old import path of :mod:`kb_streams.dask.cluster`: the same module object under this name."""

import sys

from .dask import cluster as _module

sys.modules[__name__] = _module
