"""Logging for ``muxs serve``: the only place muxs configures handlers.

``text``: ``time LEVEL logger: message``. ``json``: one object per line with ``time``,
``level``, ``logger``, ``message``, the record's structured ``fields`` (the access log's
method, peer, status, ...) and, for an error, its ``traceback``.

Log lines carry what clients and tokens control (a token's subject, a file name, a peer,
an error's text), so both formats pass every line through ``escaped``: no newline can
forge a record, no ANSI sequence reaches a terminal, no invisible character hides text.
A traceback keeps its lines, each escaped and indented, so none can pass for a record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# hpack logs every header it codes at DEBUG, tokens included; grpclib's health check logs
# each status change, at INFO when a check passes (every start-up) and WARNING when it fails.
QUIET_LOGGERS = ("hpack", "h2", "grpclib.health.check")


def escaped(text: str) -> str:
    """``text`` with each backslash and character that is not printable (controls, line
    and paragraph separators, format characters such as bidi overrides) written as a
    Python escape: ``\\n``, ``\\x1b``, ``\\u202e``."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, at C speed
    return "".join(_escaped_char(char) for char in text)


def _escaped_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def escaped_traceback(text: str) -> str:
    """A traceback's lines, each escaped and indented (a record starts at column 0)."""
    return "\n".join("    " + escaped(line) for line in text.splitlines())


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` that escapes each line (``escaped``) and formats each
    second's time once (an access log writes thousands of lines a second)."""

    _second: int | None = None
    _text = ""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._uses_time = self.usesTime()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        # ``logging.Formatter.format`` for a record without a traceback, with the question
        # whether the format shows the time asked once, not per line.
        record.message = record.getMessage()
        if self._uses_time:
            record.asctime = self.formatTime(record, self.datefmt)
        return self.formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escaped(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return escaped_traceback(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return escaped_traceback(stack_info)


class TurnFlushingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that, in an event loop's thread, writes the records of a turn of
    the loop at its end, in one write and one flush, instead of one of each per record (an
    access log writes a line per call; stderr is line-buffered, so each line was a system
    call). Outside a loop, each record is written and flushed at once, after those waiting."""

    _scheduled = False

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread
            self._write_waiting()
            super().emit(record)
            return
        try:
            self._lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write_turn)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # (an RLock: emit holds it too)
            self._write_waiting()
            super().flush()

    def _write_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def _write_waiting(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write("".join(lines))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": escaped(record.getMessage()),
        }
        if record.processName != "MainProcess":
            entry["process"] = record.processName
        fields: dict[str, object] = getattr(record, "fields", {})
        entry.update(
            (name, escaped(value) if isinstance(value, str) else value)
            for name, value in fields.items()
        )
        if record.exc_info:
            entry["traceback"] = escaped_traceback(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str, *, worker: bool = False) -> None:
    """Send every muxs (and grpclib) record at ``level`` or above to stderr.

    A ``worker`` of ``muxs serve --workers N`` names itself in each text line.
    """
    handler = TurnFlushingHandler()
    text_format = WORKER_TEXT_FORMAT if worker else TEXT_FORMAT
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(text_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Neither format shows thread or process ids: records need not look them up (the
    # logging HOWTO's "Optimization"); the process name stays, for workers' lines.
    logging.logThreads = False
    logging.logProcesses = False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
