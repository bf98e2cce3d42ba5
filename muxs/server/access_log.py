"""Access logs: one INFO line per call on the ``muxs.access_log`` logger.

The line says which method, who called (peer, and the authenticated subject when there
is one), the status, how long it took and how many messages went each way. It never
contains metadata (so never a token) nor message contents (so never file contents).
The fields are also attached to the record as ``record.fields``, for the JSON format.

A call pays only for keeping its line: the lines wait, and are handed to the logger's handlers
in a batch, ``BATCH_SECONDS`` after the first of them ended (sooner once ``BATCH_LINES``
wait, and when the server stops: ``AccessLog.flush``). A client calling one call at a time
would otherwise run logging's code, cold, once per call (13 % of such a call's CPU in
docs/PERFORMANCE.md). Each record has the time its call ended. The records are made
without ``LogRecord``'s look-ups (caller, thread, process: the same for every line), and
their text and fields only when a handler reads them (``muxs serve``'s handler writes a
turn's lines, so a batch, at once: ``muxs.cli._logging.TurnFlushingHandler``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from muxs.errors import StatusCode
from muxs.server.context import CallContext
from muxs.server.hooks import CallObserver

# Named, not __name__: operators filter on it (tests/server/test_access_log.py pins it).
log = logging.getLogger("muxs.access_log")

#: How long a finished call's line may wait, at most, to be logged with the lines after it.
BATCH_SECONDS = 0.05
#: How many lines may wait: the one that makes this many has them logged at once.
BATCH_LINES = 256


#: ``StatusCode.name`` of each code (an enum's ``name`` is a descriptor: slow per line).
_STATUS_NAMES = {code: code.name for code in StatusCode}


class _AccessLine:
    """What the access log says about a finished call, and no more (a handler that keeps
    records, as a test's log capture does, keeps these, not the call and its stream); its
    text is made when a handler first reads it (``str``)."""

    __slots__ = ("_text", "duration", "path", "peer", "received", "sent", "status", "subject")

    def __init__(self, call: CallContext, status: StatusCode) -> None:
        self.path = f"/{call.service}/{call.method}"
        self.peer = call.peer
        self.subject = call.subject
        self.status = status
        self.duration = call.duration
        self.received = call.received
        self.sent = call.sent
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            subject = f" subject={self.subject}" if self.subject is not None else ""
            self._text = (
                f"method={self.path} peer={self.peer}{subject} "
                f"status={_STATUS_NAMES[self.status]} "
                f"duration_ms={round(self.duration * 1000, 3)} messages_in={self.received} "
                f"messages_out={self.sent}"
            )
        return self._text

    def fields(self) -> dict[str, object]:
        fields: dict[str, object] = {"method": self.path, "peer": self.peer}
        if self.subject is not None:
            fields["subject"] = self.subject
        fields.update(
            status=_STATUS_NAMES[self.status],
            code=self.status.value,
            duration_ms=round(self.duration * 1000, 3),
            messages_in=self.received,
            messages_out=self.sent,
        )
        return fields


class AccessRecord(logging.LogRecord):
    """The record of a finished call: what ``Logger.makeRecord`` would make, without its
    look-ups (the caller, the thread, the process: the same for every line, so copied from
    ``template``, a record made in this process); its ``msg`` and ``fields`` are made when
    read."""

    def __init__(self, line: _AccessLine, created: float, template: dict[str, Any]) -> None:
        self.__dict__.update(template)
        self.created = created
        self.msecs = (created - int(created)) * 1000
        self.relativeCreated = template["relativeCreated"] + (created - template["created"]) * 1000
        self._line = self.msg = line

    @property
    def fields(self) -> dict[str, object]:
        if "_fields" not in self.__dict__:
            self.__dict__["_fields"] = self._line.fields()
        fields: dict[str, object] = self.__dict__["_fields"]
        return fields


class AccessLog(CallObserver):
    """Logs every finished call: an ``AccessRecord`` handed to the logger's handlers, in
    batches (see the module's docstring)."""

    _template: dict[str, Any] | None = None

    def __init__(self) -> None:
        #: The lines of the calls that ended since the last batch, each with its time.
        self._waiting: list[tuple[_AccessLine, float]] = []
        self._batch: asyncio.TimerHandle | None = None

    def finished(self, call: CallContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        assert call.status is not None
        waiting = self._waiting
        waiting.append((_AccessLine(call, call.status), time.time()))
        if len(waiting) >= BATCH_LINES:
            self.flush()
        elif self._batch is None:
            self._batch = asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the lines waiting to the logger's handlers now."""
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        if self._template is None:  # made in the process, and the thread, that logs
            self._template = vars(log.makeRecord(log.name, logging.INFO, __file__, 0, "", (), None))
        for line, created in waiting:
            log.handle(AccessRecord(line, created, self._template))
