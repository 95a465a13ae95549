"""Old import path of :mod:`kb_streams.dask.receiver`: every name forwards there."""

from ._moved import moved_to

moved_to(__name__, "kb_streams.dask.receiver")
