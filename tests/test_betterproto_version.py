"""betterproto gets its ``__version__`` from muxs.betterproto_version, not importlib.metadata."""

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from muxs import betterproto_version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_pinned_release_is_pyprojects() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert f"betterproto=={betterproto_version.PINNED}" in dependencies


def test_import_muxs_gives_betterproto_its_own_version_without_metadata() -> None:
    code = (
        "import sys, muxs, betterproto; "
        "print(betterproto.__version__, 'importlib.metadata' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [importlib.metadata.version("betterproto"), "False"]


def test_only_the_pinned_release_is_recognised(tmp_path: Path) -> None:
    package = tmp_path / "betterproto"
    package.mkdir()
    assert not betterproto_version.is_pinned_release(package)
    (tmp_path / "betterproto-2.0.0b6.dist-info").mkdir()
    assert not betterproto_version.is_pinned_release(package)
    (tmp_path / f"betterproto-{betterproto_version.PINNED}.dist-info").mkdir()
    assert betterproto_version.is_pinned_release(package)


def test_nothing_is_provided_once_betterproto_is_imported() -> None:
    assert "betterproto" in sys.modules
    assert not betterproto_version.provide_version()
