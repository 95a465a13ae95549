"""Old import path of :mod:`kb_streams.dask.on_workers`: the same module object under this name."""

import sys

from .dask import on_workers as _module

sys.modules[__name__] = _module
