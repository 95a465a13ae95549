"""Old import paths that keep working: a module whose names all live in another module.

``kb_streams.offload`` became :mod:`kb_streams.dask.offload`, and so on. The old module forwards
every name, read or set (so ``monkeypatch.setattr(kb_streams.offload, ...)`` changes the real
module), and keeps only its own ``__file__``, ``__name__`` and other dunder attributes.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["moved_to"]


class _Moved(types.ModuleType):
    _target: types.ModuleType

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__") or name == "_target":
            super().__setattr__(name, value)
        else:
            setattr(self._target, name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("__"):
            super().__delattr__(name)
        else:
            delattr(self._target, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._target)) | set(super().__dir__()))


def moved_to(name: str, target: str) -> None:
    """Make the module ``name`` (being imported) forward every name to module ``target``.

    Examples
    --------
    >>> import kb_streams.offload, kb_streams.dask.offload
    >>> kb_streams.offload.Offload is kb_streams.dask.offload.Offload
    True
    """
    module = sys.modules[name]
    module.__class__ = _Moved
    module._target = importlib.import_module(target)
