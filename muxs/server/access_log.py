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

Handed to the handlers, a batch (``AccessBatch``: the lines' fields as columns) takes one of
two paths. When every handler that would see it takes access lines (``LineBatchHandler``:
``muxs serve``'s own, ``muxs.cli._logging``), the batch goes to each whole, and the handler
writes each line as it would write its record, without logging's machinery per record
(``Logger.handle``, ``callHandlers``, the handler's lock, the record itself): ``muxs serve``'s
text format writes a batch as one %-template, repeated, over its columns, a duration from its
integer thousandths of a millisecond (``duration_columns``: the text of ``repr(round(ms, 3))``
without rounding a float, then writing it shortest, per line). Otherwise (an embedding
program's handlers, a filter, a test's capture), each line becomes an ``AccessRecord``
through ``Logger.handle``: what ``Logger.makeRecord`` would make, without its look-ups
(caller, thread, process: the same for every line), its text and fields made only when a
handler reads them. Whether the logger logs INFO is asked once a batch, as it is handed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from operator import add, attrgetter, floordiv, mod, mul, sub
from typing import Any, Protocol, cast

from muxs.errors import StatusCode
from muxs.server.context import CallContext
from muxs.server.hooks import CallObserver

# Named, not __name__: operators filter on it (tests/server/test_access_log.py pins it).
log = logging.getLogger("muxs.access_log")

#: How long a finished call's line may wait, at most, to be logged with the lines after it.
BATCH_SECONDS = 0.05
#: How many lines may wait: the one that makes this many has them logged at once.
BATCH_LINES = 256


#: What a finished call leaves for its line: its service and method, peer, subject, status,
#: start and duration (``time.monotonic`` seconds), and messages received and sent.
_Ended = tuple[str, str, str, str | None, StatusCode | None, float, float, int, int]

#: The digits ``repr`` writes after the point of a number of thousandths ending in each of
#: 0-999 (``repr(round(ms, 3))`` ends ``.0``, ``.5``, ``.25``, ``.125``).
_FRACTIONS = [f"{n:03d}".rstrip("0") or "0" for n in range(1000)]
#: The thousandths of a millisecond (``ms * 1000``) below which ``duration_columns`` writes
#: them as ``repr(round(ms, 3))`` would: there, a double is off by under 2**-21 of a unit,
#: so a product less than ``_NEAR_HALF`` from its nearest integer rounds as its exact value.
_EXACT_BELOW = 2.0**33
_NEAR_HALF = 0.5 - 2.0**-20
#: A line's message, a %-template of ``AccessBatch.columns``.
_MESSAGE = "method=/%s/%s peer=%s%s status=%s duration_ms=%s.%s messages_in=%s messages_out=%s"


def duration_columns(durations: Sequence[float]) -> tuple[Iterable[int], Iterable[str]] | None:
    """Each of ``durations`` (seconds) in milliseconds, as ``repr(round(seconds * 1000, 3))``
    writes it, in two columns: the whole milliseconds, and the digits after the point. None
    when one of them is too long, or too near a half of a thousandth, to be written so (it
    never is: there is one chance in 200,000 that a line is, and a call would take 100 days)."""
    thousandths = list(map(mul, map(mul, durations, repeat(1000)), repeat(1000.0)))
    try:
        if not 0.0 <= min(thousandths) <= max(thousandths) < _EXACT_BELOW:
            return None
        rounded = list(map(round, thousandths))
    except (ValueError, OverflowError):  # NaN, infinity: never a duration
        return None
    if max(map(abs, map(sub, thousandths, rounded))) >= _NEAR_HALF:
        return None
    return (
        map(floordiv, rounded, repeat(1000)),
        map(_FRACTIONS.__getitem__, map(mod, rounded, repeat(1000))),
    )


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
                f"method=/{service}/{method} peer={peer}{shown} status={status._name_} "
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
            status=status._name_,
            code=status._value_,
            duration_ms=round(duration * 1000, 3),
            messages_in=received,
            messages_out=sent,
        )
        return fields


class AccessBatch:
    """The lines of the calls that ended since the last batch, in the order they ended:
    ``created``, the time each ended (``time.time()``'s clock), ``lines``, each as an
    ``AccessLine``, and ``columns()``, their messages' values column by column."""

    def __init__(self, ended: list[_Ended], clock: float) -> None:
        self._ended = ended
        (
            self._services,
            self._methods,
            self._peers,
            self._subjects,
            self._statuses,
            starts,
            self._durations,
            self._received,
            self._sent,
        ) = zip(*ended, strict=True)
        #: ``start + duration + clock``, each: the time ``time.monotonic`` read as a call ended.
        self.created: list[float] = list(map(add, map(add, starts, self._durations), repeat(clock)))
        self._lines: list[AccessLine] | None = None

    def __len__(self) -> int:
        return len(self._ended)

    @property
    def lines(self) -> list[AccessLine]:
        if self._lines is None:
            self._lines = list(map(AccessLine, self._ended, self.created))
        return self._lines

    def texts(self) -> Iterator[str]:
        """The texts of the lines that come from the calls (service, method, peer, subject):
        what may need escaping; the rest are numbers and status names."""
        subjects = (subject for subject in self._subjects if subject is not None)
        return chain(self._services, self._methods, self._peers, subjects)

    def columns(self) -> tuple[str, list[Iterable[object]]] | None:
        """The lines' message as a %-template, and its values, one column each, line by
        line; None when a duration cannot be written so (``duration_columns``): then read
        ``lines``."""
        durations = duration_columns(self._durations)
        if durations is None:
            return None
        names = map(attrgetter("_name_"), self._statuses)
        if self._subjects.count(None) == len(self._subjects):
            return _MESSAGE.replace("%s%s", "%s", 1), [
                self._services,
                self._methods,
                self._peers,
                names,
                *durations,
                self._received,
                self._sent,
            ]
        subjects = [f" subject={s}" if s is not None else "" for s in self._subjects]
        return _MESSAGE, [
            self._services,
            self._methods,
            self._peers,
            subjects,
            names,
            *durations,
            self._received,
            self._sent,
        ]


class LineBatchHandler(Protocol):
    """A ``logging.Handler`` that takes a batch of access lines at once, as it would take
    their records one by one from ``Logger.handle``."""

    def takes_access_lines(self) -> bool:
        """Whether ``handle_access_lines`` writes what ``handle`` would for each record
        (no filter, a formatter it knows)."""

    def handle_access_lines(self, batch: AccessBatch, template: dict[str, Any]) -> None:
        """Write each line of ``batch`` as its record; ``template``: the attributes of a
        record the logger made in this process (``vars(Logger.makeRecord(...))``)."""


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
        if not waiting or not log.isEnabledFor(logging.INFO):
            return
        if self._template is None:  # made in the process, and the thread, that logs
            self._template = vars(log.makeRecord(log.name, logging.INFO, __file__, 0, "", (), None))
        clock = time.time() - time.monotonic()  # a call's end, on time.time()'s clock
        batch = AccessBatch(waiting, clock)
        handlers = _batch_handlers()
        if handlers is not None:
            for handler in handlers:
                handler.handle_access_lines(batch, self._template)
            return
        for line in batch.lines:
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
            # Not isinstance(): a runtime-checkable protocol's check lists its members each time.
            takes = getattr(handler, "takes_access_lines", None)
            if takes is None or not takes():
                return None
            handlers.append(cast(LineBatchHandler, handler))
        logger = logger.parent if logger.propagate else None
    return handlers or None
