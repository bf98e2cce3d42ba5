"""generated/ is what tools/codegen.py writes from proto/, and nothing else."""

import importlib.util
import shutil
from pathlib import Path

import pytest

from tools import codegen


def test_generated_is_fresh() -> None:
    assert codegen.check() == [], "run `python -m tools.codegen` and commit generated/"


def test_the_check_notices_a_stale_tree(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path / "fresh")
    stale = tmp_path / "stale"
    shutil.copytree(fresh, stale)
    (stale / "muxs" / "__init__.py").write_text("# edited by hand\n")
    (stale / "extra.py").write_text("")
    assert codegen.stale_files(stale, fresh) == ["extra.py", "muxs/__init__.py"]


def test_check_command_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert codegen.main(["--check"]) == 0
    assert capsys.readouterr().out == "generated code is fresh\n"


def test_the_generated_package_is_marked_typed(tmp_path: Path) -> None:
    """PEP 561: without ``py.typed`` an installed muxs_api is ``Any`` to type checkers."""
    fresh = codegen.generate(tmp_path / "fresh")
    assert (fresh / "py.typed").read_bytes() == b""


def test_the_codegen_is_not_part_of_the_installed_package() -> None:
    assert importlib.util.find_spec("muxs.codegen") is None
