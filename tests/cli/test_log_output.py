"""The server's log output: text lines as logging's own formatter writes them, flushed once
per event-loop turn inside the loop and at once outside it."""

import asyncio
import io
import logging

from muxs.cli._logging import TEXT_FORMAT, TextFormatter, TurnFlushingHandler


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("muxs.access_log", logging.INFO, "", 0, "a line", (), None)
    record.created, record.msecs = created, (created % 1) * 1000
    return record


def test_text_lines_read_as_loggings_own_across_seconds() -> None:
    ours, standard = TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_800_000_000.25):
        record = record_at(created)
        assert ours.format(record) == standard.format(record)


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_outside_an_event_loop_every_record_is_flushed() -> None:
    stream = CountingStream()
    handler = TurnFlushingHandler(stream)
    handler.emit(record_at(1_800_000_000.0))
    handler.emit(record_at(1_800_000_000.0))
    assert stream.flushes == 2


async def test_in_an_event_loop_a_turns_records_are_flushed_once_after_it() -> None:
    stream = CountingStream()
    handler = TurnFlushingHandler(stream)
    for _ in range(3):
        handler.emit(record_at(1_800_000_000.0))
    assert stream.flushes == 0
    assert stream.getvalue().count("a line") == 3  # written, not yet flushed
    await asyncio.sleep(0)
    assert stream.flushes == 1
