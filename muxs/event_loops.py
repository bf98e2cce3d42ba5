"""Which event loop to run: asyncio's own, or uvloop's (the ``uvloop`` extra) when installed.

Shared by ``muxs serve`` (``muxs.server.loops``) and ``SyncClient``'s own loop thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable

EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the loop for ``choice`` (None: asyncio's default); ``auto`` prefers uvloop."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_installed()):
        return None
    import uvloop

    return uvloop.new_event_loop
