"""The Greeter service."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

from grpclib.exceptions import GRPCError

from muxs._internals import ClosingServerStreams
from muxs.api import GreeterBase, HelloReply, HelloRequest, Number
from muxs.errors import StatusCode
from muxs.server.deadlines import IdleLimit
from muxs.server.refusals import over_limit
from muxs.server.services.sizes import text_reply_length

DEFAULT_REPLY_COUNT = 10


def greeting(names: list[str]) -> str:
    """``Hello, a!``, ``Hello, a and b!``, ``Hello, a, b and c!``; ``Hello!`` for nobody."""
    if not names:
        return "Hello!"
    if len(names) == 1:
        return f"Hello, {names[0]}!"
    return f"Hello, {', '.join(names[:-1])} and {names[-1]}!"


def _joiner_length(kept: int) -> int:
    """What a name adds to ``greeting`` beyond its own bytes, after ``kept`` names: the first
    turns ``Hello!`` into ``Hello, !``, the second adds `` and ``, each later one ``, ``."""
    return (2, 5, 2)[min(kept, 2)]


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class GreeterService(ClosingServerStreams, GreeterBase):
    """Greetings in every streaming style, and the reference's square root."""

    def __init__(
        self, *, max_stream_replies: int, max_message_bytes: int, stream_idle_timeout: float
    ) -> None:
        self._max_stream_replies = max_stream_replies
        self._max_message_bytes = max_message_bytes
        self._idle = stream_idle_timeout

    async def say_hello(self, hello_request: HelloRequest) -> HelloReply:
        return HelloReply(message=greeting([hello_request.name]))

    async def square(self, number: Number) -> Number:
        """The square root of ``value`` (the reference's wire behaviour, despite the name)."""
        if math.isnan(number.value):
            raise GRPCError(StatusCode.INVALID_ARGUMENT, "value is NaN; Square needs a number >= 0")
        if number.value < 0:
            raise GRPCError(
                StatusCode.INVALID_ARGUMENT,
                f"value {number.value} is negative; Square returns the square root, "
                "which needs a number >= 0",
            )
        return Number(value=math.sqrt(number.value))

    async def lots_of_replies(self, hello_request: HelloRequest) -> AsyncIterator[HelloReply]:
        count = hello_request.count or DEFAULT_REPLY_COUNT
        if count > self._max_stream_replies:
            raise GRPCError(
                StatusCode.INVALID_ARGUMENT,
                f"count {count} is over this server's limit of {self._max_stream_replies}",
            )
        message = greeting([hello_request.name])
        for index in range(1, count + 1):
            yield HelloReply(message=message, index=index)

    async def lots_of_greetings(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> HelloReply:
        """One greeting of every name, which must fit one message (``max_message_bytes``):
        the names a call keeps are bounded by its reply."""
        names: list[str] = []
        size = len(greeting([]).encode())
        requests = IdleLimit(hello_request_iterator, self._idle)
        while (request := await requests.next()) is not None:
            size += _utf8_length(request.name) + _joiner_length(len(names))
            if text_reply_length(size) > self._max_message_bytes:
                raise over_limit(
                    "max_message_bytes",
                    f"the greeting would be larger than this server's {self._max_message_bytes}"
                    "-byte message limit (max_message_bytes); send fewer or shorter names",
                )
            names.append(request.name)
        return HelloReply(message=greeting(names))

    async def bidi_hello(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> AsyncIterator[HelloReply]:
        index = 0
        requests = IdleLimit(hello_request_iterator, self._idle)
        while (request := await requests.next()) is not None:
            index += 1
            yield HelloReply(message=greeting([request.name]), index=index)
