"""Logging for ``muxs serve``: the only place muxs configures handlers.

``text``: ``time LEVEL logger: message``. ``json``: one object per line with ``time``,
``level``, ``logger``, ``message``, the record's structured ``fields`` (the access log's
method, peer, status, ...) and, for an error, its ``traceback``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"
# hpack logs every header it codes at DEBUG, tokens included; grpclib's health check logs
# each status change, at INFO when a check passes (every start-up) and WARNING when it fails.
QUIET_LOGGERS = ("hpack", "h2", "grpclib.health.check")


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` that formats each second's time once (an access log writes
    thousands of lines a second)."""

    _second: int | None = None
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"


class TurnFlushingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that, in an event loop's thread, flushes once at the end of the
    loop's turn instead of after every record: one write for all the lines of a turn."""

    _scheduled = False

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread
            super().flush()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._scheduled = False
        super().flush()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.processName != "MainProcess":
            entry["process"] = record.processName
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
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
