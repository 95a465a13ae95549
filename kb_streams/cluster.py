"""Old import path of :mod:`kb_streams.dask.cluster`: every name forwards there."""

from ._moved import moved_to

moved_to(__name__, "kb_streams.dask.cluster")
