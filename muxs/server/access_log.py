"""Access logs: one INFO line per call on the ``muxs.access_log`` logger.

The line says which method, who called (peer, and the authenticated subject when there
is one), the status, how long it took and how many messages went each way. It never
contains metadata (so never a token) nor message contents (so never file contents).
The fields are also attached to the record as ``record.fields``, for the JSON format.

A call pays only for keeping its line, a tuple of its fields: the lines wait, and are made
and handed to the logger's handlers in a batch, ``BATCH_SECONDS`` after the first of them
ended (sooner once ``BATCH_LINES`` wait, and when the server stops: ``AccessLog.flush``). A
client calling one call at a time would otherwise run logging's code, cold, once per call (13 %
of such a call's CPU: docs/performance-history.md). Each line has the time its call ended.

Handed to the handlers, a batch takes one of two paths. When every handler that would see it
takes access lines (``LineBatchHandler``: ``muxs serve``'s own, ``muxs.cli._logging``), the
batch goes to each whole, and the handler writes each line as it would write its record,
without logging's machinery per record (``Logger.handle``, ``callHandlers``, the handler's
lock, the record itself). Otherwise (an embedding program's handlers, a filter, a test's
capture), each line becomes an ``AccessRecord`` through ``Logger.handle``: what
``Logger.makeRecord`` would make, without its look-ups (caller, thread, process: the same for
every line), its text and fields made only when a handler reads them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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

#: What a finished call leaves for its line: its service and method, peer, subject, status,
#: start and duration (``time.monotonic`` seconds), and messages received and sent.
_Ended = tuple[str, str, str, str | None, StatusCode | None, float, float, int, int]


class AccessLine:
    """What the access log says about a finished call, and no more (a handler that keeps
    records, as a test's log capture does, keeps these, not the call and its stream):
    ``created``, the time the call ended (``time.time()``'s clock), ``str()``, the line's
    text, made when first read, and ``fields()``, the same as a dict."""

    __slots__ = ("_ended", "_text", "created")

    def __init__(self, ended: _Ended, created: float) -> None:
        self._ended = ended
        self.created = created
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            service, method, peer, subject, status, _, duration, received, sent = self._ended
            assert status is not None
            shown = f" subject={subject}" if subject is not None else ""
            self._text = (
                f"method=/{service}/{method} peer={peer}{shown} status={_STATUS_NAMES[status]} "
                f"duration_ms={round(duration * 1000, 3)} messages_in={received} "
                f"messages_out={sent}"
            )
        return self._text

    def fields(self) -> dict[str, object]:
        service, method, peer, subject, status, _, duration, received, sent = self._ended
        assert status is not None
        fields: dict[str, object] = {"method": f"/{service}/{method}", "peer": peer}
        if subject is not None:
            fields["subject"] = subject
        fields.update(
            status=_STATUS_NAMES[status],
            code=status.value,
            duration_ms=round(duration * 1000, 3),
            messages_in=received,
            messages_out=sent,
        )
        return fields


@runtime_checkable
class LineBatchHandler(Protocol):
    """A ``logging.Handler`` that takes a batch of access lines at once, as it would take
    their records one by one from ``Logger.handle``."""

    def takes_access_lines(self) -> bool:
        """Whether ``handle_access_lines`` writes what ``handle`` would for each record
        (no filter, a formatter it knows)."""

    def handle_access_lines(self, lines: Sequence[AccessLine], template: dict[str, Any]) -> None:
        """Write each of ``lines`` as its record; ``template``: the attributes of a record
        the logger made in this process (``vars(Logger.makeRecord(...))``)."""


class AccessRecord(logging.LogRecord):
    """The record of a finished call: what ``Logger.makeRecord`` would make, without its
    look-ups (the caller, the thread, the process: the same for every line, so copied from
    ``template``, a record made in this process); its ``msg`` and ``fields`` are made when
    read."""

    def __init__(self, line: AccessLine, template: dict[str, Any]) -> None:
        self.__dict__.update(template)
        self.created = created = line.created
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
    """Logs every finished call, in batches (see the module's docstring)."""

    _template: dict[str, Any] | None = None

    def __init__(self) -> None:
        #: What the calls that ended since the last batch left for their lines.
        self._waiting: list[_Ended] = []
        self._batch: asyncio.TimerHandle | None = None

    def finished(self, call: CallContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        waiting = self._waiting
        waiting.append(
            (
                call.service,
                call.method,
                call.peer,
                call.subject,
                call.status,
                call.started,
                call.duration,
                call.received,
                call.sent,
            )
        )
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
        clock = time.time() - time.monotonic()  # a call's end, on time.time()'s clock
        lines = [AccessLine(ended, ended[5] + ended[6] + clock) for ended in waiting]
        handlers = _batch_handlers()
        if handlers is not None:
            for handler in handlers:
                handler.handle_access_lines(lines, self._template)
            return
        for line in lines:
            log.handle(AccessRecord(line, self._template))


def _batch_handlers() -> list[LineBatchHandler] | None:
    """The handlers ``Logger.callHandlers`` would give an INFO record of ``log``, when each
    takes access lines and ``log`` has no filter; None otherwise (or when there are none:
    logging's last resort)."""
    if log.filters or log.disabled:
        return None
    handlers: list[LineBatchHandler] = []
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if handler.level > logging.INFO:
                continue
            if not isinstance(handler, LineBatchHandler) or not handler.takes_access_lines():
                return None
            handlers.append(handler)
        logger = logger.parent if logger.propagate else None
    return handlers or None
