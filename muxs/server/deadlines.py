"""Calls end on time: the client's deadline is honoured promptly, and the server has its own.

grpclib already cancels a handler when the deadline its client sent (``grpc-timeout``)
passes, but its timer only fires when the event loop gets a turn, and a handler streaming
to a reader that keeps up never has to wait for anything. The call hooks (``muxs.server.hooks``)
apply two rules to every call, so that no handler has to know about either:

- ``Pacer``: a server stream that has been sending for ``TURN_SECONDS`` without waiting
  yields to the event loop once: a stream cannot hold the loop, so its deadline, a cancel
  and every other call get their turn (yielding on every message would cost throughput
  for nothing);
- ``bounded``: ``max_call_seconds`` bounds every call, with or without a client deadline:
  a call that runs past it ends with DEADLINE_EXCEEDED.

Client-streaming handlers read their requests with ``next_within``: a client that stops
sending mid-stream for ``stream_idle_timeout`` ends its call with DEADLINE_EXCEEDED (a time
limit of the server's, as ``max_call_seconds`` is; CANCELLED would say the client gave up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from muxs.errors import StatusCode

if TYPE_CHECKING:
    from muxs._internals import IServerMethodFunc

log = logging.getLogger(__name__)

T = TypeVar("T")

TURN_SECONDS = 0.005
#: A deadline this close counts as passed: asyncio may run a timer up to its clock's
#: resolution early, so a deadline's cancel can come when grpclib counts a nanosecond left,
#: and a call cannot do anything useful in less.
DEADLINE_SLACK = 0.001


class Pacer:
    """Tells a stream when it has been sending for ``TURN_SECONDS``: then it yields to the
    event loop once (``await asyncio.sleep(0)``) and starts a new turn."""

    __slots__ = ("_loop", "_turn_started")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._turn_started = self._loop.time()

    def turn_is_over(self) -> bool:
        return self._loop.time() - self._turn_started >= TURN_SECONDS

    def new_turn(self) -> None:
        self._turn_started = self._loop.time()


def bounded(handler: IServerMethodFunc, method: str, seconds: float) -> IServerMethodFunc:
    """``handler``, ended with DEADLINE_EXCEEDED if it runs longer than ``seconds``."""

    async def call(stream: Stream[Any, Any]) -> None:
        limit = asyncio.timeout(seconds)
        try:
            async with limit:
                await handler(stream)
        except TimeoutError:
            if not limit.expired():
                raise
            log.info("%s ran past the server's limit of %gs", method, seconds)
            raise GRPCError(
                StatusCode.DEADLINE_EXCEEDED,
                f"the call ran past this server's limit of {seconds:g} seconds",
            ) from None

    return call


async def next_within(messages: AsyncIterator[T], seconds: float) -> T | None:
    """The client's next message (None once its stream has ended); DEADLINE_EXCEEDED if it
    sends none within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await anext(messages, None)
    except TimeoutError:
        raise GRPCError(
            StatusCode.DEADLINE_EXCEEDED,
            f"the client sent nothing for {seconds:g} seconds (this server's "
            "stream_idle_timeout); the call was ended",
        ) from None
