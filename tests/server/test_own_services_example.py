"""The README's "Your own services" example runs as written, and says what it should."""

import logging
import re
import sys
from pathlib import Path

import pytest

from tests.installed.check_install import readme_block

README = Path(__file__).parents[2] / "README.md"
EXAMPLE_PACKAGES = Path(__file__).parents[1] / "example"


def test_the_readme_example_runs(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = readme_block(README.read_text(), "Your own services", "python")
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGES))
    monkeypatch.setattr(sys, "argv", ["example.py"])
    caplog.set_level(logging.INFO, logger="orders")
    exec(compile(source, "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == ("placed order 1 of tea\nUNAUTHENTICATED\nHello, alice!\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "orders"]
    assert lines[0] == "order 1 placed by alice"
    ids = [re.fullmatch(r"(\S+) (\S+) in [\d.]+ ms \[(.+)\]", line) for line in lines[1:]]
    assert [(m[1], m[2]) for m in ids if m] == [
        ("/orders.Orders/Place", "Status.OK"),
        ("/orders.Orders/Get", "Status.OK"),
        ("/muxs.Greeter/SayHello", "Status.OK"),
    ]
    assert len({m[3] for m in ids if m}) == 3  # a new request id per call
