"""``import muxs`` loads the SDK only; the server, token verification, certificate checks and
the codegen are imported when first used (each check in a fresh interpreter)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mypy import api

#: Modules an SDK user must not pay for: the server stack, token verification (PyJWT,
#: cryptography), certificate checks, the codegen and the extras' libraries.
SERVER_SIDE = (
    "muxs.server",  # every server module, server-side auth included
    "muxs.testing",  # the in-process server of users' tests
    "tools",
    "jwt",
    "cryptography",
    "grpc_tools",
    "google.protobuf",
    "grpclib.health",
    "grpclib.reflection",
    "prometheus_client",
    "httpx",
    "opentelemetry",
)


def modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` once ``code`` has run in a new interpreter."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.parametrize(
    "code",
    [
        "import muxs",
        "from muxs import Client, SyncClient, HelloRequest, RpcError",
        "import muxs.auth; muxs.auth.ClientCredentials",
    ],
)
def test_the_sdk_loads_nothing_of_the_server(code: str) -> None:
    assert loaded(modules_after(code), SERVER_SIDE) == []


def test_the_server_names_load_the_server_when_used() -> None:
    modules = modules_after("import muxs; muxs.serve")
    assert "muxs.server.serving" in modules
    assert "muxs.server.settings" in modules


def test_a_client_commands_parser_loads_nothing_of_the_server() -> None:
    code = "from muxs.cli import build_parser; build_parser('hello').parse_args(['hello', 'x'])"
    assert loaded(modules_after(code), SERVER_SIDE) == []


def test_the_serve_commands_parser_loads_the_server_settings() -> None:
    code = "from muxs.cli import build_parser; build_parser('serve').parse_args(['serve'])"
    assert "muxs.server.settings" in modules_after(code)


@pytest.mark.slow
def test_type_checkers_see_the_server_names_and_no_others(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        "import muxs\n"
        "settings: muxs.ServerSettings = muxs.ServerSettings(port=0)\n"
        "reveal_type(muxs.serve)\n"
        "muxs.serv\n"
    )
    stdout, _, code = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)]
    )
    assert code == 1
    assert "muxs.server.serving.RunningServer" in stdout
    assert 'user.py:4: error: Module has no attribute "serv"' in stdout
    assert stdout.count("error:") == 1
