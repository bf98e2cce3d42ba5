"""A test-only Greeter hosted through grpclib directly (muxs's server codecs): it echoes
metadata, sets trailers and fails with rich error details (fixtures in tests/conftest.py)."""

from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RetryInfo
from grpclib.const import Cardinality, Handler
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from muxs.api import HelloReply, HelloRequest, Number
from muxs.errors import StatusCode


class EchoGreeter:
    """A test-only Greeter, through grpclib directly: it echoes the request's ``x-``
    metadata as headers (``x-echo-`` prefixed) and as trailers, and fails Square as told."""

    def __init__(self) -> None:
        #: Square answers UNAVAILABLE (with RetryInfo) this many times before it answers.
        self.unavailable = 0
        self.calls = 0

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/muxs.Greeter/SayHello": Handler(
                self.say_hello, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/LotsOfReplies": Handler(
                self.lots_of_replies, Cardinality.UNARY_STREAM, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/Square": Handler(self.square, Cardinality.UNARY_UNARY, Number, Number),
        }

    @staticmethod
    def _echoed(stream: Stream[Any, Any]) -> list[tuple[str, str | bytes]]:
        return [(k, v) for k, v in (stream.metadata or {}).items() if k.startswith("x-")]

    async def _headers(self, stream: Stream[Any, Any]) -> None:
        self.calls += 1
        echoed = [("x-echo-" + k.removeprefix("x-"), v) for k, v in self._echoed(stream)]
        await stream.send_initial_metadata(metadata=echoed)

    async def say_hello(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await self._headers(stream)
        await stream.send_message(HelloReply(message=f"Hello, {request.name}!"))
        await stream.send_trailing_metadata(metadata=self._echoed(stream))

    async def lots_of_replies(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await self._headers(stream)
        for index in range(1, request.count + 1):
            await stream.send_message(HelloReply(message=request.name, index=index))
        await stream.send_trailing_metadata(metadata=self._echoed(stream))

    async def square(self, stream: Stream[Number, Number]) -> None:
        request = await stream.recv_message()
        assert request is not None
        self.calls += 1
        if self.unavailable:
            self.unavailable -= 1
            delay = Duration(nanos=1000)
            raise GRPCError(StatusCode.UNAVAILABLE, "busy", [RetryInfo(retry_delay=delay)])
        if request.value < 0:
            violation = BadRequest.FieldViolation(field="value", description="is negative")
            info = ErrorInfo(reason="NEGATIVE", domain="muxs.test", metadata={"value": "-1"})
            raise GRPCError(
                StatusCode.INVALID_ARGUMENT,
                "value is negative",
                [BadRequest(field_violations=[violation]), info],
            )
        await stream.send_message(Number(value=request.value))
