"""Client interceptors: async callables around every call the SDK makes.

An interceptor is ``async def interceptor(call: ClientCall, proceed: Proceed) -> None``.
It may change ``call.metadata`` and ``call.timeout`` before ``await proceed(call)``, which
runs the interceptors after it and the call itself, and returns once the call has ended
(or raises its ``RpcError``); then ``call.info`` holds the status, headers and trailers.
A unary call (and a server stream, before its first reply) may be proceeded again: a
retry; a call that streams requests may not (its iterator is consumed), which raises
``RuntimeError``. Interceptors compose in the order given: the first is the outermost.

One shape for every kind of call: for a streaming call, ``proceed`` returns when the
stream ends, while the caller reads the replies as they arrive (the interceptors then run
in a task of their own, and each reply is handed over to the caller: one task per call
and one hand-over per reply, paid only when the client has interceptors).

``SyncClient`` runs them on its event loop, so they are async there too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypeVar

from muxs.metadata import CallInfo, MetadataValue

__all__ = ["CallKind", "ClientCall", "Interceptor", "Proceed"]

Reply = TypeVar("Reply")

CallKind: TypeAlias = Literal["unary", "server_stream", "client_stream", "bidi_stream"]


@dataclass
class ClientCall:
    """One call as interceptors see it."""

    #: The gRPC path, ``/package.Service/Method``.
    method: str
    kind: CallKind
    #: What the call sends, client-wide defaults and the caller's merged; add to it freely
    #: (``ConfigError`` is raised for an invalid pair when the call is sent).
    metadata: list[tuple[str, MetadataValue]]
    #: The call's deadline in seconds (None: none).
    timeout: float | None
    #: The outcome of the latest attempt: status, headers and trailers.
    info: CallInfo = field(default_factory=CallInfo)
    #: 1 for the first attempt, 2 for the first retry...
    attempt: int = 0
    #: The server the client calls: ``host:port`` (as given to the client).
    target: str = ""
    #: Wait for a connection (within the deadline) instead of failing UNAVAILABLE at once
    #: when none can be made; the client's ``wait_for_ready`` unless an interceptor sets it.
    wait_for_ready: bool = False


Proceed: TypeAlias = Callable[[ClientCall], Awaitable[None]]
Interceptor: TypeAlias = Callable[[ClientCall, Proceed], Awaitable[None]]


def chain(interceptors: Sequence[Interceptor], last: Proceed) -> Proceed:
    """``last`` behind ``interceptors``, the first outermost; each attempt counted."""

    async def attempt(call: ClientCall) -> None:
        call.attempt += 1
        await last(call)

    proceed: Proceed = attempt
    for interceptor in reversed(interceptors):
        proceed = _bind(interceptor, proceed)
    return proceed


def _bind(interceptor: Interceptor, proceed: Proceed) -> Proceed:
    async def run(call: ClientCall) -> None:
        await interceptor(call, proceed)

    return run


async def unary(
    interceptors: Sequence[Interceptor],
    call: ClientCall,
    send: Callable[[ClientCall], Awaitable[Reply]],
) -> Reply:
    """The reply of ``send(call)`` behind ``interceptors``: the last attempt's."""
    replies: list[Reply] = []

    async def last(call: ClientCall) -> None:
        replies[:] = [await send(call)]

    await chain(interceptors, last)(call)
    if not replies:
        raise RuntimeError(f"an interceptor of {call.method} returned without proceeding")
    return replies[0]


class _Ended:
    """What the interceptors' task hands over last: how the call ended."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


async def streaming(
    interceptors: Sequence[Interceptor],
    call: ClientCall,
    open_call: Callable[[ClientCall], AsyncGenerator[Reply, None]],
) -> AsyncIterator[Reply]:
    """The replies of ``open_call(call)`` behind ``interceptors``, which run in a task that
    hands each reply over, then how the call ended. A server stream may be retried until
    its first reply has been handed over; a request stream, whose iterator the first
    attempt consumed, never."""
    handed: asyncio.Queue[Reply | _Ended] = asyncio.Queue(maxsize=1)
    delivered = opened = False

    async def last(call: ClientCall) -> None:
        nonlocal delivered, opened
        if delivered:
            raise RuntimeError(f"{call.method} cannot be retried: its replies were read")
        if opened and call.kind in ("client_stream", "bidi_stream"):
            raise RuntimeError(f"{call.method} cannot be retried: its requests were sent")
        opened = True
        async with contextlib.aclosing(open_call(call)) as replies:
            async for reply in replies:
                delivered = True
                await handed.put(reply)

    async def run() -> None:
        error: Exception | None = None
        try:
            await chain(interceptors, last)(call)
        except Exception as exc:
            error = exc
        await handed.put(_Ended(error))  # cancelled instead if the reader has left

    runner = asyncio.create_task(run())
    try:
        while not isinstance(item := await handed.get(), _Ended):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        runner.cancel()
        await asyncio.wait({runner})
