"""Calls end on time: the client's deadline is honoured promptly, and the server has its own.

grpclib already cancels a handler when the deadline its client sent (``grpc-timeout``)
passes, but its timer only fires when the event loop gets a turn, and a handler streaming
to a reader that keeps up never has to wait for anything. Two hooks into grpclib's server
events do the rest, so that no handler has to know about either:

- a handler that has been sending for ``TURN_SECONDS`` without waiting yields to the event
  loop once: a stream cannot hold the loop, so its deadline, a cancel and every other call
  get their turn (yielding on every message would cost throughput for nothing);
- ``max_call_seconds`` bounds every call, with or without a client deadline: a call that
  runs past it ends with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

from grpclib._typing import IServerMethodFunc
from grpclib.const import Status
from grpclib.events import RecvRequest, SendMessage, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

log = logging.getLogger(__name__)

TURN_SECONDS = 0.005

# When the current call last let the event loop run (each call runs in its own task, so
# each has its own value).
_turn_started: ContextVar[float] = ContextVar("_turn_started", default=0.0)


def enforce_deadlines(server: Server, max_call_seconds: float | None) -> None:
    """Hook the deadline rules into ``server`` (``max_call_seconds`` None: no server limit)."""
    listen(server, SendMessage, _share_the_loop)
    if max_call_seconds is not None:
        seconds = max_call_seconds

        async def limit(event: RecvRequest) -> None:
            event.method_func = _bounded(event.method_func, event.method_name, seconds)

        listen(server, RecvRequest, limit)


async def _share_the_loop(event: SendMessage) -> None:
    loop = asyncio.get_running_loop()
    if loop.time() - _turn_started.get() >= TURN_SECONDS:
        await asyncio.sleep(0)
        _turn_started.set(loop.time())


def _bounded(handler: IServerMethodFunc, method: str, seconds: float) -> IServerMethodFunc:
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
                Status.DEADLINE_EXCEEDED,
                f"the call ran past this server's limit of {seconds:g} seconds",
            ) from None

    return call
