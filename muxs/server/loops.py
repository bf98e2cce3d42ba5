"""The event loop ``muxs serve`` runs on: asyncio's own, or uvloop's (the ``uvloop`` extra);
the choice itself is ``muxs.event_loops``, shared with ``SyncClient``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from muxs.event_loops import EVENT_LOOPS, loop_factory, uvloop_installed

log = logging.getLogger(__name__)

__all__ = ["EVENT_LOOPS", "loop_factory", "run", "uvloop_installed"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the event loop ``choice`` names."""
    factory = loop_factory(choice)
    log.debug("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
