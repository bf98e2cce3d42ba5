"""The event loop ``muxs serve`` runs on: asyncio's own, or uvloop's (the ``uvloop`` extra)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
T = TypeVar("T")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the loop for ``choice`` (None: asyncio's default); ``auto`` prefers uvloop."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_installed()):
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the event loop ``choice`` names."""
    factory = loop_factory(choice)
    log.debug("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
