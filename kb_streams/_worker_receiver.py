"""Old import path of :mod:`kb_streams.dask.receiver`: the same module object under this name."""

import sys

from .dask import receiver as _module

sys.modules[__name__] = _module
