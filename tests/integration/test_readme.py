"""The README's Python example runs as written against a real server and prints what the README says.

The snippet is taken from README.md itself (the ```python block), pointed at a test server's
URL instead of the default port, and run by the interpreter the README names (the project's
environment: here the one running the tests).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engram.testing import EngramProcess

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_URL = "http://127.0.0.1:7432"


def python_snippet() -> tuple[str, str]:
    """The README's Python block and the output the README says it prints."""
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    said = re.search(r"```python\n.*?```\s*\n\s*prints `([^`]+)`", text, flags=re.S)
    assert said is not None, "the README says what the example prints"
    return blocks[0], said.group(1)


def test_the_readme_names_the_interpreter_and_indexes_no_bucket() -> None:
    assert "`.venv/bin/python`" in README.read_text()
    code, _ = python_snippet()
    # A bucket may be empty (a match scoring 0.7 or less is "associated", none is "vivid"):
    # the example must not index one.
    assert not re.search(r"\.(vivid|associated|reconstructed)\[", code), code


@pytest.mark.parametrize("first", [True, False], ids=["empty-space", "space-with-other-memories"])
def test_the_readme_python_example_runs_as_written(tmp_path: Path, first: bool) -> None:
    code, expected = python_snippet()
    assert DEFAULT_URL in code
    with EngramProcess.start(tmp_path, spaces=["agent-7"]) as srv:
        if not first:  # the README's session stored these before; the example must still print its memory
            from engram.client import EngramClient

            with EngramClient(srv.http_url, space="agent-7") as mem:
                mem.remember("the espresso machine is on the third floor")
                mem.remember("Bob is allergic to peanuts")
        out = subprocess.run([sys.executable, "-c", code.replace(DEFAULT_URL, srv.http_url)],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        srv.stop()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
