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

Client-streaming handlers read their requests through an ``IdleLimit``: a client that stops
sending mid-stream for ``stream_idle_timeout`` ends its call with DEADLINE_EXCEEDED (a time
limit of the server's, as ``max_call_seconds`` is; CANCELLED would say the client gave up).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

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


class IdleLimit(Generic[T]):
    """A client's messages, each of which must come within ``seconds`` of being asked for
    (``next``): DEADLINE_EXCEEDED otherwise. As an ``asyncio.timeout`` around each read,
    but with one timer a call instead of one a message: the timer, due ``seconds`` after
    the oldest read it covers, re-arms itself for the current read when it finds one in
    time, and ends a read that is not (a stream of many small messages made a timer
    handle, its heap push and its cancel per message). The timer is cancelled once the
    client's stream has ended; a call that ends otherwise leaves it to fire once."""

    __slots__ = (
        "__weakref__",
        "_asked_at",
        "_expired",
        "_loop",
        "_messages",
        "_reader",
        "_seconds",
        "_timer",
    )

    def __init__(self, messages: AsyncIterator[T], seconds: float) -> None:
        self._messages = messages
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._asked_at = 0.0
        self._reader: asyncio.Task[Any] | None = None  # the task waiting for a message
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    async def next(self) -> T | None:
        """The client's next message (None once its stream has ended)."""
        reader = asyncio.current_task()
        assert reader is not None
        cancelling = reader.cancelling()
        self._asked_at = self._loop.time()
        self._reader = reader
        if self._timer is None:
            self._arm(self._asked_at + self._seconds)
        try:
            message = await anext(self._messages, None)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if reader.uncancel() <= cancelling:
                    raise GRPCError(
                        StatusCode.DEADLINE_EXCEEDED,
                        f"the client sent nothing for {self._seconds:g} seconds (this "
                        "server's stream_idle_timeout); the call was ended",
                    ) from None
            raise
        finally:
            self._reader = None
            if self._expired:  # a message came as the limit expired: as asyncio.timeout,
                self._expired = False  # its cancel is taken back
                reader.uncancel()
        if message is None and self._timer is not None:
            # The stream has ended: its timer goes now, not up to ``seconds`` later (about
            # 300 bytes a call, held that long at whatever rate calls come).
            self._timer.cancel()
            self._timer = None
        return message

    def _arm(self, when: float) -> None:
        # In an empty context: the call's (its CallContext, its stream) would stay alive
        # with the timer, past the end of a call that ended early.
        self._timer = self._loop.call_at(
            when, _check_idle, weakref.ref(self), context=contextvars.Context()
        )

    def _check(self) -> None:
        self._timer = None
        if self._reader is None:
            return  # not reading: the next read arms the timer again
        due = self._asked_at + self._seconds
        if due > self._loop.time():
            self._arm(due)
        else:
            self._expired = True
            self._reader.cancel()


def _check_idle(limit: weakref.ref[IdleLimit[Any]]) -> None:
    """The timer of an ``IdleLimit`` (by weak reference: a call that ended early leaves its
    timer to fire once, and does not stay in memory until then)."""
    alive = limit()
    if alive is not None:
        alive._check()
