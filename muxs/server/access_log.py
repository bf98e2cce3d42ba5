"""Access logs: one INFO line per call on the ``muxs.access_log`` logger.

The line says which method, who called (peer, and the authenticated subject when there
is one), the status, how long it took and how many messages went each way. It never
contains metadata (so never a token) nor message contents (so never file contents).
The fields are also attached to the record as ``record.fields``, for the JSON format.

A line costs what a handler makes of it: the record is made without ``LogRecord``'s look-ups
(caller, thread, process: the same for every line), and its text and fields are made only
when a handler reads them (``muxs serve``'s handler writes a turn's lines at once:
``muxs.cli._logging.TurnFlushingHandler``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from muxs.server.context import CallContext
from muxs.server.hooks import CallObserver

# Named, not __name__: operators filter on it (tests/server/test_access_log.py pins it).
log = logging.getLogger("muxs.access_log")


def access_fields(call: CallContext) -> dict[str, object]:
    """What the access log says about a finished call."""
    assert call.status is not None
    fields: dict[str, object] = {"method": call.path, "peer": call.peer}
    if call.subject is not None:
        fields["subject"] = call.subject
    fields.update(
        status=call.status.name,
        code=call.status.value,
        duration_ms=round(call.duration * 1000, 3),
        messages_in=call.received,
        messages_out=call.sent,
    )
    return fields


class _AccessLine:
    """A finished call's access line, made when a handler first reads it (``str``)."""

    __slots__ = ("_call", "_text")

    def __init__(self, call: CallContext) -> None:
        self._call = call
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            call = self._call
            assert call.status is not None
            subject = f" subject={call.subject}" if call.subject is not None else ""
            self._text = (
                f"method={call.path} peer={call.peer}{subject} status={call.status.name} "
                f"duration_ms={round(call.duration * 1000, 3)} messages_in={call.received} "
                f"messages_out={call.sent}"
            )
        return self._text


class AccessRecord(logging.LogRecord):
    """The record of a finished call: what ``Logger.makeRecord`` would make, without its
    look-ups (the caller, the thread, the process: the same for every line, so copied from
    ``template``, a record made in this process); its ``msg`` and ``fields`` are made when
    read."""

    def __init__(self, call: CallContext, template: dict[str, Any]) -> None:
        self.__dict__.update(template)
        created = time.time()
        self.created = created
        self.msecs = (created - int(created)) * 1000
        self.relativeCreated = template["relativeCreated"] + (created - template["created"]) * 1000
        self.msg = _AccessLine(call)
        self._call = call

    @property
    def fields(self) -> dict[str, object]:
        if "_fields" not in self.__dict__:
            self.__dict__["_fields"] = access_fields(self._call)
        fields: dict[str, object] = self.__dict__["_fields"]
        return fields


class AccessLog(CallObserver):
    """Logs every finished call (an ``AccessRecord`` handed to the logger's handlers)."""

    _template: dict[str, Any] | None = None

    def finished(self, call: CallContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        if self._template is None:  # made in the process, and the thread, that logs
            self._template = vars(log.makeRecord(log.name, logging.INFO, __file__, 0, "", (), None))
        log.handle(AccessRecord(call, self._template))
