"""The README's "Testing your services" example, run by pytest as a user's test module."""

from pathlib import Path

import pytest

from tests.installed.check_install import readme_block

README = Path(__file__).parents[1] / "README.md"
EXAMPLE_PACKAGES = Path(__file__).parent / "example"

#: The configuration the README asks for (pytest-asyncio's auto mode), as strict as ours.
PYTEST_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def test_the_readme_example_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGES))  # orders_api, the user's package
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(
        test_orders=readme_block(README.read_text(), "Testing your services", "python")
    )
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=4)
