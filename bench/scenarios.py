"""What the benchmark measures: each call, its pre-encoded request, its load and its unit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from grpclib.const import Cardinality

from bench.filework import CHUNK_BYTES
from bench.h2load import Load
from bench.wire import field as pb_field
from bench.wire import fields

NAME = b"bench"
GREETING = b"Hello, " + NAME + b"!"
BLOB = "bench-blob"
UPLOAD = "bench-upload"


@dataclass(frozen=True)
class Sizes:
    """How much work one run does (``--quick`` shrinks it)."""

    duration: float
    warm_up: float
    replies: int
    read_bytes: int
    write_bytes: int


FULL = Sizes(duration=5, warm_up=1, replies=1000, read_bytes=16 << 20, write_bytes=8 << 20)
QUICK = Sizes(duration=1, warm_up=0.5, replies=200, read_bytes=4 << 20, write_bytes=2 << 20)


@dataclass(frozen=True)
class Scenario:
    """One benchmarked call under one load.

    ``per_call`` units of ``unit`` are done by each completed call (1 request, N replies,
    N bytes); ``check`` raises ``AssertionError`` if the probe's replies are wrong.
    """

    key: str
    title: str
    path: str
    cardinality: Cardinality
    messages: list[bytes]
    load: Load
    unit: str
    per_call: float
    check: Callable[[list[bytes]], None]
    latency: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _check_hello(replies: list[bytes]) -> None:
    _expect(len(replies) == 1 and dict(fields(replies[0])).get(1) == GREETING, "SayHello reply")


def _check_replies(count: int) -> Callable[[list[bytes]], None]:
    def check(replies: list[bytes]) -> None:
        _expect(len(replies) == count, f"{len(replies)} LotsOfReplies replies, not {count}")
        _expect(dict(fields(replies[-1])).get(2) == count, "the last reply's index")

    return check


def _check_read(size: int) -> Callable[[list[bytes]], None]:
    def check(replies: list[bytes]) -> None:
        got = sum(len(bytes(dict(fields(reply)).get(2, b""))) for reply in replies)
        _expect(got == size, f"ReadStream sent {got} bytes, not {size}")

    return check


def _check_write(data: bytes) -> Callable[[list[bytes]], None]:
    digest = hashlib.sha256(data).hexdigest().encode()

    def check(replies: list[bytes]) -> None:
        _expect(len(replies) == 1, "one WriteStream reply")
        status = dict(fields(replies[0]))
        _expect(status.get(1, 0) == 0, f"WriteStream code {status.get(1)!r}")
        _expect(status.get(2) in (None, digest), "WriteStream sha256 of the bytes sent")

    return check


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def unary(clients: int, streams: int, sizes: Sizes) -> Scenario:
    return Scenario(
        key=f"unary-{clients}x{streams}",
        title=f"SayHello {clients}x{streams}",
        path="/muxs.Greeter/SayHello",
        cardinality=Cardinality.UNARY_UNARY,
        messages=[pb_field(1, NAME)],
        load=Load(clients, streams, sizes.duration, sizes.warm_up),
        unit="req/s",
        per_call=1,
        check=_check_hello,
        latency=True,
    )


def scenarios(sizes: Sizes, unary_loads: list[tuple[int, int]]) -> list[Scenario]:
    """Every scenario of a run: unary at each load, then the streaming calls."""
    blob = _pattern(sizes.read_bytes)
    upload = _pattern(sizes.write_bytes)
    chunks = [upload[i : i + CHUNK_BYTES] for i in range(0, len(upload), CHUNK_BYTES)]
    write_messages = [pb_field(1, UPLOAD.encode()) + pb_field(2, chunks[0])]
    write_messages += [pb_field(2, chunk) for chunk in chunks[1:]]
    return [
        *(unary(clients, streams, sizes) for clients, streams in unary_loads),
        Scenario(
            key="server-stream",
            title=f"LotsOfReplies x{sizes.replies}",
            path="/muxs.Greeter/LotsOfReplies",
            cardinality=Cardinality.UNARY_STREAM,
            messages=[pb_field(1, NAME) + pb_field(2, sizes.replies)],
            load=Load(4, 4, sizes.duration, sizes.warm_up),
            unit="msg/s",
            per_call=sizes.replies,
            check=_check_replies(sizes.replies),
        ),
        Scenario(
            key="read-stream",
            title=f"ReadStream {sizes.read_bytes >> 20} MiB",
            path="/muxs.FileController/ReadStream",
            cardinality=Cardinality.UNARY_STREAM,
            messages=[pb_field(1, BLOB.encode())],
            load=Load(2, 1, sizes.duration, sizes.warm_up),
            unit="MB/s",
            per_call=sizes.read_bytes / 1e6,
            check=_check_read(sizes.read_bytes),
            files={BLOB: blob},
        ),
        Scenario(
            key="write-stream",
            title=f"WriteStream {sizes.write_bytes >> 20} MiB",
            path="/muxs.FileController/WriteStream",
            cardinality=Cardinality.STREAM_UNARY,
            messages=write_messages,
            load=Load(2, 1, sizes.duration, sizes.warm_up),
            unit="MB/s",
            per_call=sizes.write_bytes / 1e6,
            check=_check_write(upload),
        ),
    ]
