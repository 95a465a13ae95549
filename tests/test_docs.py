"""The documentation builds with warnings as errors, and every snippet in README and the guide runs.

The Python snippets of each page section (a ``## `` heading) run in order as one script, in a fresh
interpreter, against a simulator serving on a free port in place of the documented
``tcp://127.0.0.1:45000``, and a run recorded from the simulator (``_demo_run.py``) in place of
the documented run directory. A snippet that raises, or whose graph logs a traceback, fails the
test. A snippet that cannot run here (it needs a facility cluster) is marked in
the page with ``<!-- snippet: not run, REASON -->`` on the line before it; the reason is required.

Every ``kb-streams ...`` command line in the pages' shell snippets must parse with the CLI's own
argument parser, so a renamed option cannot stay in the docs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_tcp_port

from kb_streams import Client
from kb_streams.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "guide.md"]
DOCUMENTED_ENDPOINT = "tcp://127.0.0.1:45000"
DOCUMENTED_RUN = "/gpfs/exfel/exp/SPB/202401/p002345/raw/r0042"

_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.DOTALL)
_NOT_RUN = re.compile(r"<!-- snippet: not run, (?P<reason>\S.*?) -->")


def snippets(text: str, lang: str) -> list[str]:
    """The code of every ``lang`` block of ``text`` that is not marked as not run."""
    return [block["code"] for block in _BLOCK.finditer("\n" + text)
            if block["lang"] == lang and not _NOT_RUN.search(block["before"])]


def sessions() -> list[tuple[str, str]]:
    """``(id, code)`` of each page section (a ``## `` heading) with Python snippets."""
    found = []
    for page in PAGES:
        for number, section in enumerate(page.read_text().split("\n## ")):
            code = snippets(section, "python")
            if code:
                title = section.splitlines()[0] if number else "top"
                found.append((f"{page.name}: {title}", "\n\n".join(code)))
    return found


def test_docs_build_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "kb_streams.Client" in (tmp_path / "html" / "api.html").read_text()


@pytest.fixture(scope="module")
def simulator():
    """The default simulated bridge (AGIPD modules, XGM, delay, motor), small and fast."""
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "kb_streams.cli", "simulate", "--endpoint", endpoint,
         "--pulses", "8", "--rate", "20", "--interval", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with Client(endpoint, timeout=120) as client:  # serving (a slow machine takes a while)
        client.next()
    yield endpoint
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run recorded from the simulator, with its source names (only the sections naming one)."""
    from _demo_run import make_demo_run

    return make_demo_run(tmp_path_factory.mktemp("recorded") / "r0042")


@pytest.mark.parametrize("code", [code for _, code in sessions()],
                         ids=[name for name, _ in sessions()])
def test_every_python_snippet_runs(code, simulator, tmp_path, request):
    script = tmp_path / "snippets.py"
    code = code.replace(DOCUMENTED_ENDPOINT, simulator)
    if DOCUMENTED_RUN in code:
        code = code.replace(DOCUMENTED_RUN, str(request.getfixturevalue("recorded_run")))
    script.write_text(code + "\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "Traceback" not in result.stderr, result.stderr[-5000:]


def test_every_not_run_marker_gives_a_reason():
    for page in PAGES:
        text = page.read_text()
        assert text.count("<!-- snippet: not run") == len(_NOT_RUN.findall(text)), page.name


def _kb_streams_commands(page: Path) -> list[list[str]]:
    commands = []
    for code in snippets(page.read_text(), "bash"):
        for line in code.splitlines():
            line = line.split("#", 1)[0].strip().rstrip("&").strip()
            for part in line.split("&&"):
                words = shlex.split(part)
                if words[:1] == ["kb-streams"]:
                    commands.append(words[1:])
    return commands


@pytest.mark.parametrize("page", sorted({*PAGES, *(ROOT / "docs").glob("*.md")}),
                         ids=lambda page: page.name)
def test_documented_commands_parse(page):
    parser = build_parser()
    for argv in _kb_streams_commands(page):
        try:
            parser.parse_args(argv)
        except SystemExit as exit:  # argparse reports a bad command line by exiting
            pytest.fail(f"{page.name}: `kb-streams {shlex.join(argv)}` does not parse ({exit})")
