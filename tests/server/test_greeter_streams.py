"""The streaming Greeter calls through the async SDK."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from muxs import Client, RpcError, StatusCode


async def test_lots_of_replies_sends_count_numbered_greetings(client: Client) -> None:
    replies = [reply async for reply in client.lots_of_replies("you", 5)]
    assert [(r.message, r.index) for r in replies] == [("Hello, you!", i) for i in range(1, 6)]


async def test_lots_of_replies_defaults_to_ten(client: Client) -> None:
    assert [r.index async for r in client.lots_of_replies("you")] == list(range(1, 11))


async def test_lots_of_replies_over_the_limit_is_invalid_argument(client: Client) -> None:
    with pytest.raises(RpcError) as caught:
        [r async for r in client.lots_of_replies("you", 100_001)]
    assert caught.value.status is StatusCode.INVALID_ARGUMENT
    assert "limit of 100000" in caught.value.message


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "b", "c"], "Hello, a, b and c!"),
        (["a", "b"], "Hello, a and b!"),
        (["a"], "Hello, a!"),
        ([], "Hello!"),
    ],
)
async def test_lots_of_greetings_greets_every_name_in_order(
    client: Client, names: list[str], message: str
) -> None:
    assert (await client.lots_of_greetings(names)).message == message


async def test_bidi_hello_answers_each_request_before_the_next_is_sent(client: Client) -> None:
    outbox: asyncio.Queue[str | None] = asyncio.Queue()
    sent: list[str] = []

    async def names() -> AsyncIterator[str]:
        while (name := await outbox.get()) is not None:
            sent.append(name)
            yield name

    async with client.bidi_hello(names()) as replies:
        for name in ["a", "b", "c"]:
            await outbox.put(name)
            reply = await anext(replies)
            # The reply arrived while the client still held back the next name.
            assert (reply.message, reply.index) == (f"Hello, {name}!", len(sent))
            assert sent[-1] == name
        await outbox.put(None)
        assert [r async for r in replies] == []


async def test_an_error_in_the_request_iterator_surfaces_at_once(client: Client) -> None:
    async def names() -> AsyncIterator[str]:
        yield "a"
        raise LookupError("the caller's own bug")

    # Were it held until the call ended, the deadline would end it: DEADLINE_EXCEEDED.
    with pytest.raises(LookupError, match="the caller's own bug"):
        [r async for r in client.bidi_hello(names(), timeout=60)]
    with pytest.raises(LookupError, match="the caller's own bug"):
        await client.lots_of_greetings(names(), timeout=60)


@pytest.mark.parametrize("count", [-1, 2**32])
def test_lots_of_replies_refuses_a_count_that_is_not_a_uint32(client: Client, count: int) -> None:
    with pytest.raises(ValueError, match=f"count {count} is not between 0 and 4294967295"):
        client.lots_of_replies("you", count)
