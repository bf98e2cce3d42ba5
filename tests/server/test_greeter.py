import math

import pytest

from muxs import Client, RpcError, StatusCode


async def test_say_hello_uses_the_reference_text(client: Client) -> None:
    assert (await client.say_hello("you")).message == "Hello, you!"


async def test_say_hello_keeps_unicode_and_empty_names(client: Client) -> None:
    assert (await client.say_hello("世界 🌍")).message == "Hello, 世界 🌍!"
    assert (await client.say_hello("")).message == "Hello, !"


async def test_square_returns_the_square_root_as_float32(client: Client) -> None:
    # The reference's transcript: "client Square 231 get :15.1986837387" (float32 on the wire).
    assert (await client.square(231)).value == 15.198683738708496
    assert (await client.square(0)).value == 0.0
    assert (await client.square(math.inf)).value == math.inf


@pytest.mark.parametrize("value", [-1.0, -0.001, -math.inf])
async def test_square_refuses_negative_values(client: Client, value: float) -> None:
    with pytest.raises(RpcError) as caught:
        await client.square(value)
    assert caught.value.status is StatusCode.INVALID_ARGUMENT
    assert "negative" in caught.value.message


async def test_square_refuses_nan(client: Client) -> None:
    with pytest.raises(RpcError) as caught:
        await client.square(math.nan)
    assert caught.value.status is StatusCode.INVALID_ARGUMENT
    assert "NaN" in caught.value.message
