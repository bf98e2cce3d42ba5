"""The generated types reach SDK users under ``mypy --strict``."""

from pathlib import Path

import pytest
from mypy import api

USER_SCRIPT = """
import asyncio
import muxs

async def main() -> None:
    async with muxs.Client("127.0.0.1:50051", timeout=5) as client:
        reply: muxs.HelloReply = await client.say_hello("you")
        message: str = reply.message
        value: float = (await client.square(2.0)).value
        code: int = (await client.write("a.txt", message)).code
        text: str = (await client.read("a.txt")).text
        print(message, value, code, text)
    try:
        pass
    except muxs.RpcError as exc:
        status: muxs.StatusCode = exc.status
        print(status.name, exc.message)

asyncio.run(main())
"""


def run_mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    script = tmp_path / "user.py"
    script.write_text(source)
    stdout, stderr, code = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)]
    )
    return stdout + stderr, code


@pytest.mark.slow
def test_a_user_script_type_checks(tmp_path: Path) -> None:
    output, code = run_mypy(tmp_path, USER_SCRIPT)
    assert code == 0, output


@pytest.mark.slow
def test_a_type_error_in_a_user_script_is_reported(tmp_path: Path) -> None:
    broken = USER_SCRIPT.replace("value: float =", "value: str =")
    output, code = run_mypy(tmp_path, broken)
    assert code == 1
    assert (
        'Incompatible types in assignment (expression has type "float", variable has type "str")'
        in output
    )
