"""The unary message limit on FileController."""

from pathlib import Path

import pytest

from muxs import Client, RpcError, ServerSettings, StatusCode

LIMIT = 4096


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, max_message_bytes=LIMIT)


async def test_read_at_the_limit_succeeds(client: Client, root_dir: Path) -> None:
    (root_dir / "exact.txt").write_text("x" * LIMIT)
    assert len((await client.read("exact.txt")).text) == LIMIT


async def test_read_over_the_limit_is_failed_precondition(client: Client, root_dir: Path) -> None:
    (root_dir / "big.txt").write_text("x" * (LIMIT + 1))
    with pytest.raises(RpcError) as caught:
        await client.read("big.txt")
    assert caught.value.status is StatusCode.FAILED_PRECONDITION
    assert caught.value.message == (
        f"big.txt is larger than the {LIMIT}-byte message limit; ReadStream reads any size"
    )


async def test_write_over_the_limit_is_resource_exhausted(client: Client, root_dir: Path) -> None:
    with pytest.raises(RpcError) as caught:
        await client.write("big.txt", "é" * (LIMIT // 2 + 1))  # counted in UTF-8 bytes
    assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert "WriteStream" in caught.value.message
    assert not (root_dir / "big.txt").exists()
