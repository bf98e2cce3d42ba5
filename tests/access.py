"""Waiting for access-log records: a call ends on the server after its client has its answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager


class AccessRecords(logging.Handler):
    """Collects ``muxs.access_log`` records; ``await finished(method)`` waits for one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._arrived.set()

    def fields(self) -> list[dict[str, object]]:
        return [record.fields for record in self.records]  # type: ignore[attr-defined]

    async def finished(self, method: str) -> dict[str, object]:
        """The fields of the first call to ``method`` (``/muxs.Greeter/SayHello``) to end."""
        async with asyncio.timeout(10):
            while True:
                for fields in self.fields():
                    if fields["method"] == method:
                        return fields
                self._arrived.clear()
                await self._arrived.wait()


@contextmanager
def access_records() -> Iterator[AccessRecords]:
    logger = logging.getLogger("muxs.access_log")
    handler = AccessRecords()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
