"""The Greeter service."""

from __future__ import annotations

import math

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from muxs.api import GreeterBase, HelloReply, HelloRequest, Number


class GreeterService(GreeterBase):
    """Greetings and the reference's square root."""

    async def say_hello(self, hello_request: HelloRequest) -> HelloReply:
        return HelloReply(message=f"Hello, {hello_request.name}!")

    async def square(self, number: Number) -> Number:
        """The square root of ``value`` (the reference's wire behaviour, despite the name)."""
        if math.isnan(number.value):
            raise GRPCError(Status.INVALID_ARGUMENT, "value is NaN; Square needs a number >= 0")
        if number.value < 0:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"value {number.value} is negative; Square returns the square root, "
                "which needs a number >= 0",
            )
        return Number(value=math.sqrt(number.value))
