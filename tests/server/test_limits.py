"""The unary message limit on FileController."""

from pathlib import Path

import pytest

from muxs import Client, RpcError, ServerSettings, StatusCode

LIMIT = 4096


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, max_message_bytes=LIMIT)


#: The largest text whose reply fits the limit: Content's tag and the text's length (a
#: two-byte varint) take 3 of the 4096 bytes.
LARGEST_TEXT = LIMIT - 3


async def test_read_of_a_reply_at_the_limit_succeeds(client: Client, root_dir: Path) -> None:
    (root_dir / "exact.txt").write_text("x" * LARGEST_TEXT)
    assert len((await client.read("exact.txt")).text) == LARGEST_TEXT


@pytest.mark.parametrize("size", [LARGEST_TEXT + 1, LIMIT, LIMIT + 1])
async def test_read_of_a_reply_over_the_limit_is_failed_precondition(
    client: Client, root_dir: Path, size: int
) -> None:
    """A file whose text is within the limit, but not its reply, is refused too: clients
    receive at most the same limit, framing included."""
    (root_dir / "big.txt").write_text("x" * size)
    with pytest.raises(RpcError) as caught:
        await client.read("big.txt")
    assert caught.value.status is StatusCode.FAILED_PRECONDITION
    assert caught.value.message == (
        f"big.txt does not fit in one {LIMIT}-byte message (the message limit); "
        "ReadStream reads any size"
    )


async def test_write_over_the_limit_is_resource_exhausted(client: Client, root_dir: Path) -> None:
    with pytest.raises(RpcError) as caught:
        await client.write("big.txt", "é" * (LIMIT // 2 + 1))  # counted in UTF-8 bytes
    assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert "WriteStream" in caught.value.message
    assert not (root_dir / "big.txt").exists()
