"""The README's examples of metadata, interceptors and error details run, as written, against
a muxs server (each in its own interpreter, as a user would run it)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from muxs import RunningServer

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Metadata, interceptors and error details"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_section_has_its_three_examples() -> None:
    assert len(examples()) == 3


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, "Hello, you! Status.OK {}"),
        (1, "Hello, you!"),
        (2, "PERMISSION_DENIED [('filename', '../outside leads outside the root')]"),
    ],
)
async def test_a_readme_example_runs(live_server: RunningServer, index: int, expected: str) -> None:
    code = examples()[index].replace("127.0.0.1:50051", live_server.target)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == expected
    if index == 1:
        assert "/muxs.Greeter/SayHello Status.OK in" in stderr.decode()
