"""The generated types reach SDK users under ``mypy --strict``, on every interpreter tox runs.

mypy runs as a user runs it: in a directory of its own, without the repository's configuration
or ``mypy_path``, against the muxs this environment has installed. The user's script and its
deliberate mistakes are ``tests/installed/check_install.py``'s; ``tox -e installed-typing`` runs
the same check against the built wheel.
"""

from pathlib import Path

import pytest

from tests.installed import check_install


def run_mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    """``mypy --strict`` on ``source`` saved as ``user.py``: its output and exit code."""
    code, output = check_install.mypy_strict(tmp_path, source)
    return "\n".join(output), code


@pytest.mark.slow
def test_a_user_script_sees_the_generated_dataclasses(tmp_path: Path) -> None:
    check_install.check_user_script_types(tmp_path)


@pytest.mark.slow
def test_a_type_error_in_a_user_script_is_reported(tmp_path: Path) -> None:
    check_install.check_mistakes_reported(tmp_path)


@pytest.mark.slow
def test_the_readme_own_services_example_is_strictly_typed(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_install.check_own_services_types(tmp_path, readme)


@pytest.mark.slow
def test_the_readme_per_call_compression_example_is_strictly_typed(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_install.check_compression_types(tmp_path, readme)
