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
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import mul, sub
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from muxs.server.access_log import AccessBatch

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"
#: A record's fields that a %-style format names.
_FIELDS = re.compile(r"%\((\w+)\)")
#: The fields of an access line's record that change from line to line, besides the time
#: (``asctime``) and the ``message``.
_PER_RECORD = frozenset({"created", "msecs", "relativeCreated", "msg"})
_MILLISECONDS = [f"{n:03d}" for n in range(1000)]
#: What ``escaped`` writes as an escape in ASCII text: the controls, DEL and the backslash.
_ASCII_ESCAPED = bytes(range(0x20)) + b"\x7f\\"
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# hpack logs every header it codes at DEBUG, tokens included; grpclib's health check logs
# each status change, at INFO when a check passes (every start-up) and WARNING when it fails.
QUIET_LOGGERS = ("hpack", "h2", "grpclib.health.check")


def escaped(text: str) -> str:
    """``text`` with each backslash and character that is not printable (controls, line
    and paragraph separators, format characters such as bidi overrides) written as a
    Python escape: ``\\n``, ``\\x1b``, ``\\u202e``."""
    if _plain(text):
        return text  # the common case, at C speed
    return "".join(_escaped_char(char) for char in text)


def _plain(text: str) -> bool:
    """Whether ``escaped`` leaves ``text`` as it is."""
    if text.isascii():  # at memory speed, not a look-up per character (a batch is 40 KB)
        data = text.encode("ascii")
        return len(data.translate(None, _ASCII_ESCAPED)) == len(data)
    return text.isprintable() and "\\" not in text


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
        fields = _FIELDS.findall(fmt)
        #: Whether the time and then the message are the only fields of ``fmt`` that change
        #: from line to line, each once (``format_access_lines`` formats the rest once).
        self.formats_access_lines = (
            fields.count("asctime") == fields.count("message") == 1
            and not _PER_RECORD.intersection(fields)
            and "%(asctime)s" in fmt
            and "%(message)s" in fmt
            and fmt.index("%(asctime)s") < fmt.index("%(message)s")
        )

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
        return self._time(record.created, record.msecs)

    def format_access_lines(self, batch: AccessBatch, values: dict[str, Any], end: str) -> str:
        """What ``format`` gives the ``AccessRecord`` of each line of ``batch``, each followed
        by ``end``, the records' other attributes ``values`` (a record's): one %-template,
        repeated, over the batch's columns; line by line, escaped, when a line needs it. Only
        when ``formats_access_lines``."""
        fmt: str = self._fmt  # type: ignore[assignment]  # (% style: the only one here)
        head, rest = (fmt % {**values, "asctime": "\0", "message": "\1"}).split("\0")
        between, tail = rest.split("\1")
        columns = batch.columns()
        if columns is None or not _plain("".join((head, between, tail, *batch.texts()))):
            return "".join(
                escaped(
                    f"{head}{self._time(created, (created - int(created)) * 1000)}"
                    f"{between}{line}{tail}"
                )
                + end
                for line, created in zip(batch.lines, batch.created, strict=True)
            )
        message, message_values = columns
        created = batch.created
        first, last = min(created), max(created)
        rows: Iterable[tuple[object, ...]]
        if int(first) == int(last):  # one second: its text written once, in the template
            time_format = self._second_text(first).replace("%", "%%") + ",%03d"
            msecs = map(int, map(mul, map(sub, created, repeat(int(first))), repeat(1000)))
            rows = zip(msecs, *message_values, strict=True)
        else:
            time_format = "%s,%03d"
            seconds = list(map(int, created))
            pairs = dict(zip(seconds, created, strict=True)).items()
            texts = {second: self._second_text(one) for second, one in pairs}
            msecs = map(int, map(mul, map(sub, created, seconds), repeat(1000)))
            rows = zip(map(texts.__getitem__, seconds), msecs, *message_values, strict=True)
        head, between, rest = (text.replace("%", "%%") for text in (head, between, tail + end))
        template = f"{head}{time_format}{between}{message}{rest}"
        return (template * len(batch)) % tuple(chain.from_iterable(rows))

    def _time(self, created: float, msecs: float) -> str:
        """``formatTime``'s text for a record ``created`` then, with those ``msecs``."""
        return f"{self._second_text(created)},{_MILLISECONDS[int(msecs)]}"

    def _second_text(self, created: float) -> str:
        """``formatTime``'s text for ``created``'s second (made once a second)."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(created))
        return self._text

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
            self._lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        self._write_soon()

    def takes_access_lines(self) -> bool:
        """Whether ``handle_access_lines`` writes what ``handle`` would for each record."""
        formatter = self.formatter
        return (
            not self.filters
            and type(formatter) in (TextFormatter, JsonFormatter)
            and formatter.formats_access_lines  # type: ignore[union-attr]
        )

    def handle_access_lines(self, batch: AccessBatch, template: dict[str, Any]) -> None:
        """Write each line of ``batch`` as its ``AccessRecord`` (a record of the access log's
        logger, with the attributes of ``template``), without making the records: the
        access log's batch (``muxs.server.access_log``)."""
        formatter = self.formatter
        assert isinstance(formatter, TextFormatter | JsonFormatter)
        text = formatter.format_access_lines(batch, dict(template), self.terminator)
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(text)
            self._write_soon()

    def _write_soon(self) -> None:
        """Write the lines waiting at the end of the loop's turn, or now outside a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread
            self.flush()
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

    formats_access_lines = True
    _second: int | None = None
    _text = ""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = getattr(record, "fields", {})
        entry = _json_entry(vars(record), self._time(record.created), record.getMessage(), fields)
        if record.exc_info:
            entry["traceback"] = escaped_traceback(self.formatException(record.exc_info))
        return _JSON.encode(entry)

    def format_access_lines(self, batch: AccessBatch, values: dict[str, Any], end: str) -> str:
        """What ``format`` gives the ``AccessRecord`` of each line of ``batch``, each followed
        by ``end``, the records' other attributes ``values`` (a record's); a batch is escaped
        field by field only when it needs it (a line's fields are parts of its message)."""
        lines = batch.lines
        messages = [str(line) for line in lines]
        escape = not _plain("".join(messages))
        return "".join(
            _JSON.encode(
                _json_entry(values, self._time(line.created), message, line.fields(), escape)
            )
            + end
            for line, message in zip(lines, messages, strict=True)
        )

    def _time(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, each
        second's part made once."""
        second = int(created)
        microseconds = round((created - second) * 1_000_000)  # as datetime rounds
        if microseconds == 1_000_000:
            second, microseconds = second + 1, 0
        if second != self._second:
            self._second = second
            self._text = datetime.fromtimestamp(second, UTC).isoformat()[: -len("+00:00")]
        return f"{self._text}.{_MILLISECONDS[microseconds // 1000]}+00:00"


#: ``json.dumps(..., default=str)`` without a new encoder per line.
_JSON = json.JSONEncoder(default=str)


def _json_entry(
    values: dict[str, Any],
    time_text: str,
    message: str,
    fields: dict[str, object],
    escape: bool = True,
) -> dict[str, object]:
    """A JSON line's object, its values escaped unless ``escape`` is false; ``values``: a
    record's attributes."""
    entry: dict[str, object] = {
        "time": time_text,
        "level": values["levelname"],
        "logger": values["name"],
        "message": escaped(message) if escape else message,
    }
    if values["processName"] != "MainProcess":
        entry["process"] = values["processName"]
    if escape:
        entry.update(
            (name, escaped(value) if isinstance(value, str) else value)
            for name, value in fields.items()
        )
    else:
        entry.update(fields)
    return entry


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
