"""The server's log output: text lines as logging's own formatter writes them, flushed once
per event-loop turn inside the loop and at once outside it; every line escaped."""

import asyncio
import io
import json
import logging
import sys
from typing import Any

import pytest

from muxs.cli._logging import (
    TEXT_FORMAT,
    WORKER_TEXT_FORMAT,
    JsonFormatter,
    TextFormatter,
    TurnFlushingHandler,
    escaped,
)
from muxs.errors import StatusCode
from muxs.server.access_log import AccessBatch, AccessRecord


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
        self.writes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_outside_an_event_loop_every_record_is_flushed() -> None:
    stream = CountingStream()
    handler = TurnFlushingHandler(stream)
    handler.emit(record_at(1_800_000_000.0))
    handler.emit(record_at(1_800_000_000.0))
    assert stream.flushes == 2


async def test_in_an_event_loop_a_turns_records_are_written_and_flushed_once_after_it() -> None:
    stream = CountingStream()
    handler = TurnFlushingHandler(stream)
    for _ in range(3):
        handler.handle(record_at(1_800_000_000.0))
    assert (stream.writes, stream.flushes) == (0, 0)
    await asyncio.sleep(0)
    assert (stream.writes, stream.flushes) == (1, 1)
    assert stream.getvalue().count("a line\n") == 3


async def test_lines_waiting_for_the_end_of_the_turn_are_written_by_flush() -> None:
    stream = CountingStream()
    handler = TurnFlushingHandler(stream)
    handler.handle(record_at(1_800_000_000.0))
    handler.flush()  # as logging.shutdown does at exit
    assert stream.getvalue() == "a line\n"
    await asyncio.sleep(0)
    assert stream.getvalue() == "a line\n"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é and 日本", "plain text, é and 日本"),
        ("a\nb\r\tc", r"a\nb\r\tc"),
        ("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
        ("\x00\x7f\x85", r"\x00\x7f\x85"),
        ("right\u202eleft\u2028next\u200b", r"right\u202eleft\u2028next\u200b"),
        ("\U000e0041 tag", r"\U000e0041 tag"),
        ("a\\nb", r"a\\nb"),  # a backslash is escaped: the escapes read back unambiguously
    ],
)
def test_escaped(text: str, shown: str) -> None:
    assert escaped(text) == shown


def test_text_is_left_as_it_is_exactly_when_no_character_needs_an_escape() -> None:
    for code in [*range(0x3000), 0xFEFF, 0x1F600, 0xE0041]:
        char = chr(code)
        for text in (f"plain {char}", f"\u00e9t\u00e9 {char}"):  # ASCII, and not
            assert (escaped(text) == text) is (char.isprintable() and char != "\\")


def failed_record(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord("muxs.hooks", logging.ERROR, "", 0, message, (), exc_info)


FORGED = "bad\n2030-01-01 00:00:00,000 INFO muxs.access_log: forged\x1b[2J"


def test_a_text_record_and_its_traceback_cannot_forge_a_record() -> None:
    lines = TextFormatter(TEXT_FORMAT).format(failed_record(FORGED)).splitlines()
    assert lines[0].endswith(
        r"muxs.hooks: bad\n2030-01-01 00:00:00,000 INFO muxs.access_log: forged\x1b[2J"
    )
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-2:] == [
        "    ValueError: bad",
        r"    2030-01-01 00:00:00,000 INFO muxs.access_log: forged\x1b[2J",
    ]


def test_a_json_record_escapes_its_message_fields_and_traceback() -> None:
    record = failed_record(FORGED)
    record.fields = {"subject": "a\nb", "code": 3}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == r"bad\n2030-01-01 00:00:00,000 INFO muxs.access_log: forged\x1b[2J"
    assert (entry["subject"], entry["code"]) == (r"a\nb", 3)
    assert "\x1b" not in entry["traceback"]
    assert all(line.startswith("    ") for line in entry["traceback"].splitlines())


PLAIN = [
    ("muxs.Greeter", "SayHello", "127.0.0.1:1", None, StatusCode.OK, 10.0, 0.0123456, 1, 1),
    ("muxs.FileController", "Read", "[::1]:2", "alice", StatusCode.NOT_FOUND, 11.0, 2.5, 1, 0),
]
HOSTILE = [*PLAIN, (*PLAIN[1][:3], FORGED, *PLAIN[1][4:])]
#: A call of 3 hours: its duration is written line by line (``duration_columns``).
LONG = [*PLAIN, (*PLAIN[0][:6], 3 * 3600.0, *PLAIN[0][7:])]


@pytest.mark.parametrize("step", [0.3337, 0.0007], ids=["seconds", "one-second"])
@pytest.mark.parametrize("ended", [PLAIN, HOSTILE, LONG], ids=["plain", "hostile", "long"])
@pytest.mark.parametrize(
    "formatter",
    [TextFormatter(TEXT_FORMAT), TextFormatter(WORKER_TEXT_FORMAT), JsonFormatter()],
    ids=["text", "worker-text", "json"],
)
def test_a_batch_of_access_lines_is_written_as_their_records_would_be(
    ended: list[Any], formatter: logging.Formatter, step: float
) -> None:
    logger = logging.getLogger("muxs.access_log")
    template = vars(logger.makeRecord(logger.name, logging.INFO, __file__, 0, "", (), None))
    # Across seconds or within one, at times whose milliseconds round differently, and one
    # that datetime rounds up to the next second (a line's time: start + duration + clock).
    clock = 1_800_000_000.0
    times = [0.0005 + n * step for n in range(len(ended) * 3)] + [0.9999996]
    batch = AccessBatch(
        [(*e[:5], time - e[6], *e[6:]) for e, time in zip(ended * 4, times, strict=False)], clock
    )
    batched, one_by_one = TurnFlushingHandler(io.StringIO()), TurnFlushingHandler(io.StringIO())
    for handler in (batched, one_by_one):
        handler.setFormatter(formatter)
    assert batched.takes_access_lines()
    batched.handle_access_lines(batch, template)  # outside an event loop: written at once
    for line in batch.lines:
        one_by_one.handle(AccessRecord(line, template))
    written = batched.stream.getvalue()
    assert written == one_by_one.stream.getvalue()
    assert len(written.splitlines()) == len(batch)
    assert "\x1b" not in written


@pytest.mark.parametrize(
    "fmt",
    [
        "%(message)s at %(asctime)s",  # the message first
        "%(asctime)s %(msecs)d %(message)s",  # another field that changes per line
        "%(asctime)s %(message)s %(message)s",
        "%(asctime)s %(message)-20s|",  # not a plain %s
        "%(levelname)s %(message)s",  # no time
    ],
)
def test_a_handler_whose_format_it_cannot_batch_takes_records(fmt: str) -> None:
    handler = TurnFlushingHandler(io.StringIO())
    handler.setFormatter(TextFormatter(fmt))
    assert not handler.takes_access_lines()


def test_a_handler_with_a_filter_or_another_formatter_takes_records() -> None:
    filtered, foreign = TurnFlushingHandler(io.StringIO()), TurnFlushingHandler(io.StringIO())
    filtered.setFormatter(TextFormatter(TEXT_FORMAT))
    filtered.addFilter(lambda record: True)
    foreign.setFormatter(logging.Formatter(TEXT_FORMAT))
    assert not filtered.takes_access_lines()
    assert not foreign.takes_access_lines()
