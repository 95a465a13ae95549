"""Old import path of :mod:`kb_streams.dask.offload`: the same module object under this name."""

import sys

from .dask import offload as _module

sys.modules[__name__] = _module
