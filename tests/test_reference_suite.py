"""The published ``karabo_bridge`` test suite, run against our Client, serialize, deserialize.

The tests are imported from the installed ``karabo-bridge`` package (never copied), in a pytest
subprocess whose plugin (``_reference_suite_plugin``) swaps our names in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import karabo_bridge

MODULES = ("test_client.py", "test_server.py", "test_serialize.py")
HERE = Path(__file__).parent


def test_reference_suite_passes_with_our_drop_ins(tmp_path):
    suite = Path(karabo_bridge.__file__).parent / "tests"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not our pyproject's options
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path), "-p", "_reference_suite_plugin", "-p", "no:cacheprovider",
         "-q", "-rfE", *(str(suite / m) for m in MODULES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert summary.startswith("22 passed"), summary
