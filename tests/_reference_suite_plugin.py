"""pytest plugin: run the published ``karabo_bridge`` tests with our drop-ins in its place.

Loaded with ``-p _reference_suite_plugin``: its ``pytest_configure`` runs before the reference
test modules are imported, so their ``from karabo_bridge import Client, serialize, deserialize``
picks up ours. The reference servers (``ServerInThread``, ``SimServerInThread``) stay theirs.
"""

from __future__ import annotations

import karabo_bridge
import pytest

import kb_streams

DROP_INS = {"Client": kb_streams.Client, "serialize": kb_streams.serialize,
            "deserialize": kb_streams.deserialize}


def pytest_configure(config: pytest.Config) -> None:
    """Swap the names before any test module is imported (not at import: pytest's doctest
    collection imports this file in our own test run, which must keep the reference)."""
    for name, ours in DROP_INS.items():
        setattr(karabo_bridge, name, ours)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run a reference test that would still see a reference name."""
    for item in items:
        for name, ours in DROP_INS.items():
            theirs = getattr(item.module, name, ours)
            assert theirs is ours, f"{item.nodeid} uses the reference {name}"
