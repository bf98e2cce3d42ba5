"""``IdleLimit``: a client's messages, each within the server's ``stream_idle_timeout``."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from collections.abc import AsyncIterator

import pytest
from grpclib.exceptions import GRPCError

from muxs.errors import StatusCode
from muxs.server.deadlines import IdleLimit
from tests.polling import until


async def _messages(queue: asyncio.Queue[int | None]) -> AsyncIterator[int]:
    while (message := await queue.get()) is not None:
        yield message


def _queue(*messages: int | None) -> asyncio.Queue[int | None]:
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)
    return queue


async def test_messages_in_time_are_read_to_the_end() -> None:
    limit = IdleLimit(_messages(_queue(1, 2, 3, None)), 60)
    assert [await limit.next() for _ in range(3)] == [1, 2, 3]
    timer = limit._timer
    assert timer is not None
    assert await limit.next() is None
    assert timer.cancelled()  # the stream ended: its timer is not kept for 60 s
    assert limit._timer is None


@pytest.mark.parametrize("sent", [0, 3])
async def test_a_stalled_stream_ends_with_deadline_exceeded(sent: int) -> None:
    limit = IdleLimit(_messages(_queue(*range(1, sent + 1))), 0.01)
    for expected in range(1, sent + 1):
        assert await limit.next() == expected
    with pytest.raises(GRPCError) as raised:
        await limit.next()
    assert raised.value.status == StatusCode.DEADLINE_EXCEEDED
    assert raised.value.message == (
        "the client sent nothing for 0.01 seconds (this server's stream_idle_timeout); "
        "the call was ended"
    )
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_another_cancel_is_not_taken_for_the_limit() -> None:
    limit = IdleLimit(_messages(_queue()), 60)
    reader = asyncio.ensure_future(limit.next())
    await until(lambda: limit._reader is not None)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_message_in_time_after_an_earlier_one_rearms_the_timer() -> None:
    queue = _queue(1)
    limit = IdleLimit(_messages(queue), 60)
    assert await limit.next() == 1
    timer = limit._timer
    assert timer is not None  # armed by the first read, still due for it
    reader = asyncio.ensure_future(limit.next())
    await until(lambda: limit._reader is not None)
    limit._check()  # the timer firing before the second read is due
    assert limit._timer is not None
    assert limit._timer.when() > timer.when()
    queue.put_nowait(2)
    assert await reader == 2


def _collected(ref: weakref.ref[_Call]) -> bool:
    gc.collect()
    return ref() is None


class _Call:
    """Something a call keeps in a context variable (as ``CallContext``)."""


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("_CALL")


async def test_its_timer_keeps_neither_it_nor_the_calls_context_alive() -> None:
    async def call() -> weakref.ref[IdleLimit[int]]:
        _CALL.set(_Call())
        limit = IdleLimit(_messages(_queue(1)), 60)
        assert await limit.next() == 1
        assert limit._timer is not None  # still armed as the call ends
        return weakref.ref(limit)

    context = contextvars.Context()
    limit = await asyncio.get_running_loop().create_task(call(), context=context)
    call_kept = weakref.ref(context[_CALL])
    del context
    gc.collect()
    assert limit() is None
    # The loop lets go of the task's context once it has run the task's last callbacks.
    await until(lambda: _collected(call_kept))
