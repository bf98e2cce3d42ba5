"""A reply cut short by the server's trailers: the SDK raises the trailers' status.

A server whose call ends while a reply is half sent (its deadline passed while the
client's flow-control window was full) sends its trailers after the part it sent.
"""

from collections.abc import AsyncIterator, Mapping

import pytest
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream
from grpclib.testing import ChannelFor

from muxs import Client, HelloReply, HelloRequest, RpcError, StatusCode
from tests.probe import read_all

PREFIX_OF_A_100_BYTE_MESSAGE = b"\x00\x00\x00\x00\x64"


class CuttingGreeter:
    """Sends one whole reply (streams only), then a third of one, then DEADLINE_EXCEEDED."""

    def __mapping__(self) -> Mapping[str, Handler]:
        return {
            "/muxs.Greeter/SayHello": Handler(
                self.cut, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/LotsOfReplies": Handler(
                self.cut, Cardinality.UNARY_STREAM, HelloRequest, HelloReply
            ),
        }

    async def cut(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        await stream.recv_message()
        if stream._cardinality.server_streaming:
            await stream.send_message(HelloReply(message="whole"))
        else:
            await stream.send_initial_metadata()
        await stream._stream.send_data(PREFIX_OF_A_100_BYTE_MESSAGE + b"x" * 33)
        raise GRPCError(Status.DEADLINE_EXCEEDED, "the call ran past this server's limit")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with ChannelFor([CuttingGreeter()]) as channel:
        yield Client("in-memory:0", channel=channel)


async def test_a_unary_reply_cut_short_raises_the_trailers_status(client: Client) -> None:
    with pytest.raises(RpcError) as caught:
        await client.say_hello("you")
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert caught.value.message == "the call ran past this server's limit"


async def test_a_streamed_reply_cut_short_raises_the_trailers_status(client: Client) -> None:
    received: list[HelloReply] = []
    with pytest.raises(RpcError) as caught:
        await read_all(client.lots_of_replies("you", 3), into=received)
    assert [reply.message for reply in received] == ["whole"]
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED


class FailingAfterItsReply:
    """Sends a whole unary reply, then an error status in its trailers."""

    def __mapping__(self) -> Mapping[str, Handler]:
        return {
            "/muxs.Greeter/SayHello": Handler(
                self.fail, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
        }

    async def fail(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        await stream.recv_message()
        await stream.send_message(HelloReply(message="whole"))
        raise GRPCError(Status.DATA_LOSS, "the reply was not stored")


async def test_a_unary_reply_is_not_returned_when_the_trailers_say_the_call_failed() -> None:
    """The SDK stops reading at a unary call's reply, and still checks its trailers."""
    async with ChannelFor([FailingAfterItsReply()]) as channel:
        with pytest.raises(RpcError) as caught:
            await Client("in-memory:0", channel=channel).say_hello("you")
    assert caught.value.status is StatusCode.DATA_LOSS
    assert caught.value.message == "the reply was not stored"
