"""Watch a grpclib server's calls through its public events; no handler is changed.

Also the huge LotsOfReplies call the deadline, cancellation and flow-control tests make.
``CallProbe`` counts the messages the server's handlers produced (``SendMessage`` fires
before each one is sent) and records how each handler ended: ``"completed"``,
``"cancelled"`` or the name of the gRPC status it raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.events import RecvRequest, SendMessage, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from muxs import HelloReply

if TYPE_CHECKING:
    from muxs._internals import IServerMethodFunc

NAME = "x" * 1000  # so that a reply is about 1 KiB
COUNT = 100_000  # about 100 MB of replies: far more than any flow-control window
REPLY_BYTES = len(bytes(HelloReply(message=f"Hello, {NAME}!", index=COUNT))) + 5  # + gRPC frame


T = TypeVar("T")


async def read_all(replies: AsyncIterator[T], into: list[T] | None = None) -> list[T]:
    """Every reply of a stream, also appended to ``into`` as they come (to count them if the
    call fails)."""
    into = [] if into is None else into
    async for reply in replies:
        into.append(reply)
    return into


# A few replies of slack over the exact window: when the client's acknowledgements of the
# replies it consumed reach the server is a matter of scheduling (seen once: 3 over).
ACK_SLACK = 8


def in_flight(window: int) -> int:
    """How many replies a server can send before a client with ``window`` acknowledges any.

    Plus the one a paused handler holds, and ``ACK_SLACK``: a bound thousands of times
    below the 100 000 replies asked for.
    """
    return window // REPLY_BYTES + 1 + ACK_SLACK


class CallProbe:
    def __init__(self, server: Server) -> None:
        self.sent = 0
        self.outcomes: list[str] = []
        self.started = asyncio.Event()  # a handler is running
        self._tasks: list[asyncio.Task[Any]] = []
        listen(server, RecvRequest, self._on_request)
        listen(server, SendMessage, self._on_send)

    async def finished(self) -> list[str]:
        """Wait until a handler has started and every call's server task has ended.

        Returns how each handler ended.
        """
        await self.started.wait()
        await asyncio.wait(self._tasks)
        return self.outcomes

    async def _on_send(self, event: SendMessage) -> None:
        self.sent += 1

    async def _on_request(self, event: RecvRequest) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        event.method_func = self._observed(event.method_func)

    def _observed(self, handler: IServerMethodFunc) -> IServerMethodFunc:
        async def observed(stream: Stream[Any, Any]) -> None:
            self.started.set()
            try:
                await handler(stream)
            except asyncio.CancelledError:
                self.outcomes.append("cancelled")
                raise
            except GRPCError as exc:
                self.outcomes.append(exc.status.name)
                raise
            self.outcomes.append("completed")

        return observed
