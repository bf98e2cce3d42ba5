"""Waiting for a condition another task or the server makes true, with a generous bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BOUND = 10.0


async def until(condition: Callable[[], bool], *, bound: float = BOUND) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``bound`` s."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {bound} s"
        await asyncio.sleep(0.01)


def until_sync(condition: Callable[[], bool], *, bound: float = BOUND) -> None:
    """``until`` for code outside an event loop (a session fixture starting a process)."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {bound} s"
        time.sleep(0.05)
