"""Old import path of :mod:`kb_streams.dask.order`: the same module object under this name."""

import sys

from .dask import order as _module

sys.modules[__name__] = _module
