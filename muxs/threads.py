"""Blocking work in worker threads, never racing the cleanup of what it uses.

``asyncio.to_thread`` leaves a thread running when its caller is cancelled: a caller that
then closes the file the thread still reads (or unlinks the temp file it still writes)
races it, and a closed descriptor's number can be reused by another file meanwhile.
Here a cancelled caller first waits for its thread, and what a cancelled ``open_blocking``
opened is closed, not leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


async def run_blocking(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in a worker thread; if cancelled, once it has returned."""
    return await _finish(asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs)))


async def open_blocking(func: Callable[P, C], /, *args: P.args, **kwargs: P.kwargs) -> C:
    """``run_blocking`` for a call that opens something: if cancelled, what it opened is closed."""
    call = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    return await _finish(call, on_cancel=lambda opened: opened.close())


async def _finish(
    call: asyncio.Future[T], *, on_cancel: Callable[[T], None] = lambda result: None
) -> T:
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({call})
        if not call.cancelled() and call.exception() is None:
            on_cancel(call.result())
        raise
