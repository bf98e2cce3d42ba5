"""``muxs --version`` (one source: ``muxs.__version__``) and a bare ``muxs``."""

import importlib.metadata

import pytest

import muxs
from muxs.cli import main


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    installed = importlib.metadata.version("muxs")
    assert capsys.readouterr().out == f"muxs {installed}\n"
    assert muxs.__version__ == installed


def test_a_bare_muxs_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert "serve" in help_text
    assert "--version" in help_text

    assert main([]) == 0
    printed = capsys.readouterr()
    assert printed.out == help_text
    assert printed.err == ""
