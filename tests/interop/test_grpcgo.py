"""grpc-go, the engine under grpcurl: the grpcurl commands of README.md and docs/OPERATIONS.md,
and the frame orders grpc-go has of its own (uploads, downloads with its BDP pings, bidi,
cancellation, deadlines, keepalive pings).

grpcurl itself is not packaged; ``grpcgo/`` is a small grpcurl on grpc-go (reflection, JSON
requests as dynamic messages, grpcurl's output and exit codes: 64 plus the status code of a
failed call). It is built once per session, offline, in GOPATH mode, from Debian's Go and its
grpc-go and protobuf sources, which ``.ci/run`` installs (golang-go, golang-google-grpc-dev,
golang-google-protobuf-dev).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from muxs import RunningServer, ServerSettings, StatusCode, serve
from muxs.server.limits import LimitedServer, _LimitedProtocol
from muxs.server.pings import MAX_STRIKES
from muxs.server.storage import TEMP_PREFIX
from muxs.server.verification.static_tokens import new_token
from tests.access import access_records
from tests.polling import until

CLIENT_DIR = Path(__file__).parent / "grpcgo"
#: Where Debian's golang-*-dev packages put their sources.
GOPATH = "/usr/share/gocode"
SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "muxs.FileController",
    "muxs.Greeter",
]


@pytest.fixture(scope="session")
def grpcgo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grpc-go client, built once per session."""
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI"):
            pytest.fail("go is missing: .ci/run installs it")
        pytest.skip(
            "go is not installed: the grpc-go interop tests need it (apt install golang-go "
            "golang-google-grpc-dev golang-google-protobuf-dev)"
        )
    binary = tmp_path_factory.mktemp("grpcgo") / "grpcgo"
    offline = {"GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "", "GOPROXY": "off"}
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=CLIENT_DIR,
        env={**os.environ, **offline},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, f"the grpc-go client does not build:\n{built.stderr}"
    return binary


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


async def grpcurl(binary: Path, *args: str, stdin: bytes | None = None) -> Outcome:
    """``grpcurl -plaintext ARGS``, as the grpc-go client runs it."""
    process = await asyncio.create_subprocess_exec(
        binary,
        "-plaintext",
        *args,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return Outcome(process.returncode, out.decode(), err.decode())


@asynccontextmanager
async def calling(
    binary: Path, server: RunningServer, method: str, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The grpc-go client calling ``server``'s ``method`` with the requests the test writes
    to its stdin (``-d @``), as it writes them."""
    process = await asyncio.create_subprocess_exec(
        binary,
        "-plaintext",
        "-d",
        "@",
        *flags,
        server.target,
        method,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def ended(process: asyncio.subprocess.Process, *, close_stdin: bool = True) -> Outcome:
    """How a running client ended: once its stdin is closed (the call half-closed), or by
    itself."""
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    if close_stdin:
        process.stdin.close()
    async with asyncio.timeout(60):
        out, err = await process.stdout.read(), await process.stderr.read()
        return Outcome(await process.wait(), out.decode(), err.decode())


def failed(status: StatusCode, message: str, *details: str) -> Outcome:
    """What grpcurl says of a call that ended with ``status`` (the type of each detail)."""
    name = "".join(word.capitalize() for word in status.name.split("_"))
    name = {"Cancelled": "Canceled"}.get(name, name)  # grpc-go's spelling
    err = f"ERROR:\n  Code: {name}\n  Message: {message}\n"
    if details:
        err += "  Details:\n" + "".join(
            f"  {number}) type.googleapis.com/{detail}\n"
            for number, detail in enumerate(details, 1)
        )
    return Outcome(64 + status.value, "", err)


def as_json(*messages: dict[str, object]) -> str:
    """Replies as grpcurl prints them."""
    return "".join(json.dumps(message, indent=2) + "\n" for message in messages)


def chunks(data: bytes, size: int, filename: str = "") -> bytes:
    """WriteStream's requests as JSON, the first naming the file."""
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    requests = [{"data": base64.b64encode(part).decode()} for part in parts]
    requests[0]["filename"] = filename
    return "\n".join(json.dumps(request) for request in requests).encode()


def downloaded(out: str) -> bytes:
    """The bytes of ReadStream's replies, as grpcurl printed them."""
    decoder, data, at = json.JSONDecoder(), b"", 0
    while at < len(out):
        reply, at = decoder.raw_decode(out, at)
        data += base64.b64decode(reply["data"])
        at += 1  # the newline
    return data


# The README's and docs/OPERATIONS.md's grpcurl commands.


async def test_grpcurl_list_names_every_service(grpcgo: Path, live_server: RunningServer) -> None:
    assert await grpcurl(grpcgo, live_server.target, "list") == Outcome(
        0, "\n".join(SERVICES) + "\n", ""
    )


async def test_grpcurl_list_of_a_service_names_its_methods(
    grpcgo: Path, live_server: RunningServer
) -> None:
    methods = ["BidiHello", "LotsOfGreetings", "LotsOfReplies", "SayHello", "Square"]
    out = "".join(f"muxs.Greeter.{method}\n" for method in methods)
    assert await grpcurl(grpcgo, live_server.target, "list", "muxs.Greeter") == Outcome(0, out, "")


GREETER = """\
muxs.Greeter is a service:
service Greeter {
  rpc BidiHello ( stream .muxs.HelloRequest ) returns ( stream .muxs.HelloReply );
  rpc LotsOfGreetings ( stream .muxs.HelloRequest ) returns ( .muxs.HelloReply );
  rpc LotsOfReplies ( .muxs.HelloRequest ) returns ( stream .muxs.HelloReply );
  rpc SayHello ( .muxs.HelloRequest ) returns ( .muxs.HelloReply );
  rpc Square ( .muxs.Number ) returns ( .muxs.Number );
}
"""
SAY_HELLO = """\
muxs.Greeter.SayHello is a method:
rpc SayHello ( .muxs.HelloRequest ) returns ( .muxs.HelloReply );
"""
FILE_INFO = """\
muxs.FileInfo is a message:
message FileInfo {
  string name = 1;
  uint64 size = 2;
  double mtime = 3;
  bool is_dir = 4;
}
"""


@pytest.mark.parametrize(
    ("symbol", "description"),
    [("muxs.Greeter", GREETER), ("muxs.Greeter.SayHello", SAY_HELLO), ("muxs.FileInfo", FILE_INFO)],
)
async def test_grpcurl_describe_shows_a_symbol(
    grpcgo: Path, live_server: RunningServer, symbol: str, description: str
) -> None:
    outcome = await grpcurl(grpcgo, live_server.target, "describe", symbol)
    assert outcome == Outcome(0, description, "")


async def test_grpcurl_describe_of_an_unknown_symbol_fails(
    grpcgo: Path, live_server: RunningServer
) -> None:
    outcome = await grpcurl(grpcgo, live_server.target, "describe", "muxs.Greeter.Nope")
    assert outcome == Outcome(1, "", 'Failed to resolve symbol "muxs.Greeter.Nope": not found\n')


async def test_grpcurl_calls_say_hello_with_json(grpcgo: Path, live_server: RunningServer) -> None:
    outcome = await grpcurl(
        grpcgo, "-d", '{"name": "you"}', live_server.target, "muxs.Greeter/SayHello"
    )
    assert outcome == Outcome(0, as_json({"message": "Hello, you!"}), "")


async def test_grpcurl_checks_health(grpcgo: Path, live_server: RunningServer) -> None:
    """The health service (grpc-health-probe is a grpc-go client too); an enum in JSON."""
    request = ("-d", '{"service": "muxs.FileController"}')
    outcome = await grpcurl(grpcgo, *request, live_server.target, "grpc.health.v1.Health/Check")
    assert outcome == Outcome(0, as_json({"status": "SERVING"}), "")


async def test_grpcurl_over_a_unix_socket(grpcgo: Path, tmp_path: Path) -> None:
    socket = tmp_path / "muxs.sock"
    async with serve(root=tmp_path / "root", path=socket):
        listed = await grpcurl(grpcgo, "-unix", str(socket), "list")
        said = await grpcurl(
            grpcgo, "-unix", "-d", '{"name": "uds"}', str(socket), "muxs.Greeter/SayHello"
        )
    assert listed == Outcome(0, "\n".join(SERVICES) + "\n", "")
    assert said == Outcome(0, as_json({"message": "Hello, uds!"}), "")


# Metadata, deadlines, compression and the refusals, with their exact status codes.


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A tokens file granting ``greeter`` Greeter's scope and ``reader`` files:read."""
    grants = {"greeter": ["greeter"], "reader": ["files:read"]}
    tokens, entries = {}, []
    for subject, scopes in grants.items():
        tokens[subject], entry = new_token(subject, scopes)
        entries.append(entry)
    path = tmp_path / "tokens.toml"
    path.write_text("\n\n".join(entries) + "\n")
    return path, tokens


async def test_grpcurl_sends_a_bearer_token_as_a_header(
    grpcgo: Path, settings: ServerSettings, tokens: tuple[Path, dict[str, str]]
) -> None:
    path, token = tokens
    hello = ("-d", '{"name": "you"}')
    async with serve(settings=replace(settings, auth_tokens=path)) as server:
        target = server.target
        listed = await grpcurl(grpcgo, target, "list")  # reflection is public
        without = await grpcurl(grpcgo, *hello, target, "muxs.Greeter/SayHello")
        unknown = await grpcurl(
            grpcgo, "-H", "authorization: Bearer muxs_nope", *hello, target, "muxs.Greeter/SayHello"
        )
        reader = await grpcurl(
            grpcgo, "-H", f"Authorization: Bearer {token['reader']}", *hello, target,
            "muxs.Greeter/SayHello",
        )  # fmt: skip
        greeter = await grpcurl(
            grpcgo, "-H", f"authorization: Bearer {token['greeter']}", *hello, target,
            "muxs.Greeter/SayHello",
        )  # fmt: skip
    assert listed.code == 0
    assert without == failed(
        StatusCode.UNAUTHENTICATED, "send the metadata 'authorization: Bearer <token>'"
    )
    assert unknown == failed(StatusCode.UNAUTHENTICATED, "the token is not a known API token")
    assert reader == failed(StatusCode.PERMISSION_DENIED, "this call needs the 'greeter' scope")
    assert greeter == Outcome(0, as_json({"message": "Hello, you!"}), "")


async def test_refusals_have_their_status_codes(grpcgo: Path, settings: ServerSettings) -> None:
    async with serve(settings=replace(settings, max_message_bytes=1024)) as server:
        missing = await grpcurl(
            grpcgo, "-d", '{"filename": "nope.txt"}', server.target, "muxs.FileController/Read"
        )
        negative = await grpcurl(
            grpcgo, "-d", '{"value": -4}', server.target, "muxs.Greeter/Square"
        )
        too_big = await grpcurl(
            grpcgo, "-d", json.dumps({"name": "x" * 2000}), server.target, "muxs.Greeter/SayHello"
        )
    assert missing == failed(StatusCode.NOT_FOUND, "nope.txt does not exist")
    assert negative == failed(
        StatusCode.INVALID_ARGUMENT,
        "value -4.0 is negative; Square returns the square root, which needs a number >= 0",
    )
    assert too_big == failed(
        StatusCode.RESOURCE_EXHAUSTED,
        "a 2003-byte message is over this server's 1024-byte limit",
        "google.rpc.QuotaFailure",
    )


async def test_grpcgo_reads_the_largest_text_whose_reply_fits_its_receive_limit(
    grpcgo: Path, live_server: RunningServer
) -> None:
    """grpc-go receives at most 4 MiB a message by default, muxs's default message limit:
    the largest text a Read returns is 5 bytes under it (Content's tag and the text's
    4-byte length). A text 1 to 5 bytes larger was sent, and grpc-go refused it itself
    ("grpc: received message larger than max (4194309 vs. 4194304)", RESOURCE_EXHAUSTED)."""
    largest = 4 * 1024 * 1024 - 5
    (live_server.root / "fits.txt").write_text("x" * largest)
    (live_server.root / "over.txt").write_text("x" * (largest + 1))
    read = ("muxs.FileController/Read",)
    fits = await grpcurl(grpcgo, "-d", '{"filename": "fits.txt"}', live_server.target, *read)
    over = await grpcurl(grpcgo, "-d", '{"filename": "over.txt"}', live_server.target, *read)
    assert fits == Outcome(0, as_json({"text": "x" * largest}), "")
    assert over == failed(
        StatusCode.FAILED_PRECONDITION,
        "over.txt does not fit in one 4194304-byte message (the message limit); "
        "ReadStream reads any size",
    )


async def test_grpcgo_compresses_requests_and_inflates_replies(
    grpcgo: Path,
    settings: ServerSettings,
    inflated: list[str],
    compressed_replies: list[int],
) -> None:
    name = "muxs " * 300
    async with serve(settings=replace(settings, compression="gzip")) as server:
        outcome = await grpcurl(
            grpcgo, "-gzip", "-d", json.dumps({"name": name}), server.target,
            "muxs.Greeter/SayHello",
        )  # fmt: skip
    assert outcome == Outcome(0, as_json({"message": f"Hello, {name}!"}), "")
    assert inflated == ["gzip"]
    assert compressed_replies == [len(f"Hello, {name}!") + 3]  # the field's tag and length


# grpc-go's own frame orders: a client stream it ends with an empty DATA frame, a download it
# answers with WINDOW_UPDATE and BDP pings, a bidi stream, RST_STREAM CANCEL, grpc-timeout.

UPLOAD = bytes(range(256)) * 16 * 1024  # 4 MiB


async def test_grpcgo_uploads_a_file_and_downloads_it(
    grpcgo: Path, settings: ServerSettings, root_dir: Path
) -> None:
    """4 MiB up in 64 KiB chunks, and down in 16 KiB ones: 256 replies, each of which grpc-go
    answers with a WINDOW_UPDATE and, one ping in flight at a time, a BDP ping."""
    async with serve(settings=replace(settings, chunk_bytes=16 * 1024)) as server:
        up = await grpcurl(
            grpcgo, "-d", "@", server.target, "muxs.FileController/WriteStream",
            stdin=chunks(UPLOAD, 64 * 1024, "up.bin"),
        )  # fmt: skip
        down = await grpcurl(
            grpcgo, "-d", '{"filename": "up.bin"}', server.target, "muxs.FileController/ReadStream"
        )
    assert up == Outcome(0, as_json({"sha256": hashlib.sha256(UPLOAD).hexdigest()}), "")
    assert (root_dir / "up.bin").read_bytes() == UPLOAD
    assert (down.code, down.err, down.out.count('"data"')) == (0, "", 256)
    assert downloaded(down.out) == UPLOAD


async def test_grpcgo_cancels_a_download_mid_stream(
    grpcgo: Path, settings: ServerSettings, root_dir: Path
) -> None:
    (root_dir / "big.bin").write_bytes(UPLOAD)
    with access_records() as records:
        async with serve(settings=settings) as server:
            outcome = await grpcurl(
                grpcgo, "-cancel-after", "1", "-d", '{"filename": "big.bin"}', server.target,
                "muxs.FileController/ReadStream",
            )  # fmt: skip
            ended_call = await records.finished("/muxs.FileController/ReadStream")
    canceled = failed(StatusCode.CANCELLED, "context canceled")
    assert (outcome.code, outcome.err) == (canceled.code, canceled.err)
    assert downloaded(outcome.out) == UPLOAD[: 64 * 1024]
    assert ended_call["status"] == "CANCELLED"


async def read_reply(process: asyncio.subprocess.Process) -> dict[str, object]:
    """The next reply the client printed."""
    assert process.stdout is not None
    lines = [await process.stdout.readline()]
    while lines[-1] != b"}\n":
        assert lines[-1], f"the client ended: {b''.join(lines)!r}, {await ended(process)}"
        lines.append(await process.stdout.readline())
    reply: dict[str, object] = json.loads(b"".join(lines))
    return reply


@pytest.mark.parametrize("end", ["close", "interrupt"])
async def test_grpcgo_bidi_replies_to_each_request_as_it_comes(
    grpcgo: Path, settings: ServerSettings, end: str
) -> None:
    """Each reply comes before the next request is sent; then the client half-closes (its
    stdin closed: CloseSend), or a SIGINT cancels the call (RST_STREAM CANCEL) while the
    server waits for the next one.

    The SIGINT's stdin stays open: a half-close would race the cancel inside grpc-go, and
    when it won, the server rightly ended the call OK (its trailers went before it read the
    reset) and the client said OK or CANCELLED by which it saw first. What the server
    reports when the reset follows the half-close is pinned by
    tests/server/test_access_log.py (``end_then_reset``)."""
    with access_records() as records:
        async with (
            serve(settings=settings) as server,
            calling(grpcgo, server, "muxs.Greeter/BidiHello") as process,
        ):
            assert process.stdin is not None
            for index, name in enumerate(["a", "b"], 1):
                process.stdin.write(json.dumps({"name": name}).encode() + b"\n")
                assert await read_reply(process) == {"message": f"Hello, {name}!", "index": index}
            if end == "interrupt":
                process.send_signal(signal.SIGINT)
            outcome = await ended(process, close_stdin=end == "close")
        ended_call = await records.finished("/muxs.Greeter/BidiHello")
    if end == "close":
        assert (outcome, ended_call["status"]) == (Outcome(0, "", ""), "OK")
    else:
        assert outcome == failed(StatusCode.CANCELLED, "context canceled")
        assert ended_call["status"] == "CANCELLED"


DEADLINE = StatusCode.DEADLINE_EXCEEDED
#: How an upload is given up: the server's settings, grpc-go's flags, and what grpcurl may say.
#: grpc-go's own deadline expires in grpc-go and muxs alike: the message is whichever side's
#: came first (grpclib's is empty). "interrupt" is a SIGINT: grpc-go resets the stream (CANCEL).
GIVEN_UP: dict[str, tuple[dict[str, Any], list[str], list[Outcome]]] = {
    "client deadline": (
        {},
        ["-max-time", "2"],
        [failed(DEADLINE, "context deadline exceeded"), failed(DEADLINE, "")],
    ),
    "max_call_seconds": (
        {"max_call_seconds": 0.5},
        [],
        [failed(DEADLINE, "the call ran past this server's limit of 0.5 seconds")],
    ),
    "stream_idle_timeout": (
        {"stream_idle_timeout": 0.5},
        [],
        [
            failed(
                DEADLINE,
                "the client sent nothing for 0.5 seconds (this server's stream_idle_timeout); "
                "the call was ended",
            )
        ],
    ),
    "interrupt": ({}, [], [failed(StatusCode.CANCELLED, "context canceled")]),
}


@pytest.mark.parametrize("how", GIVEN_UP)
async def test_an_upload_given_up_leaves_the_file_as_it_was(
    grpcgo: Path, settings: ServerSettings, root_dir: Path, how: str
) -> None:
    """grpc-go stops sending after its first chunk; the upload ends without its last one,
    and the file is as it was."""
    changes, flags, outcomes = GIVEN_UP[how]
    (root_dir / "kept.bin").write_bytes(b"old")
    upload, server_settings = "muxs.FileController/WriteStream", replace(settings, **changes)
    async with (
        serve(settings=server_settings) as server,
        calling(grpcgo, server, upload, *flags) as process,
    ):
        assert process.stdin is not None
        process.stdin.write(chunks(b"new" * 1000, 3000, "kept.bin"))
        await until(lambda: any(root_dir.glob(f"{TEMP_PREFIX}*")))  # under way
        if how == "interrupt":
            process.send_signal(signal.SIGINT)
        outcome = await ended(process, close_stdin=False)
        await until(lambda: not any(root_dir.glob(f"{TEMP_PREFIX}*")))
    assert outcome in outcomes
    assert (root_dir / "kept.bin").read_bytes() == b"old"


@asynccontextmanager
async def greeting_with_keepalive(
    grpcgo: Path, settings: ServerSettings, keepalive_time: str, min_ping_interval: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, _LimitedProtocol]]:
    """A BidiHello from grpc-go pinging every ``keepalive_time`` seconds to a server that
    allows a ping every ``min_ping_interval``, its first reply read: the client and the
    server's one connection."""
    async with (
        serve(settings=replace(settings, min_ping_interval=min_ping_interval)) as server,
        calling(
            grpcgo, server, "muxs.Greeter/BidiHello", "-keepalive-time", keepalive_time
        ) as process,
    ):
        assert process.stdin is not None
        process.stdin.write(b'{"name": "a"}\n')
        assert await read_reply(process) == {"message": "Hello, a!", "index": 1}
        assert isinstance(server.server, LimitedServer)
        (connection,) = server.server.connections
        yield process, connection


async def test_grpcgo_keepalive_pings_within_the_policy_are_never_punished(
    grpcgo: Path, settings: ServerSettings
) -> None:
    """grpc-go pings every 0.3 s while its call waits (no data either way); the server
    allows a ping every 0.2 s."""
    async with greeting_with_keepalive(grpcgo, settings, "0.3", 0.2) as (process, connection):
        pinged = connection.ping_policy.received  # grpc-go's BDP pings, so far
        await until(lambda: connection.ping_policy.received >= pinged + 3)
        assert connection.ping_policy.strikes == 0
        outcome = await ended(process)
    assert outcome == Outcome(0, "", "")


async def test_grpcgo_keepalive_pings_faster_than_the_policy_get_too_many_pings(
    grpcgo: Path, settings: ServerSettings
) -> None:
    """grpc-go pings every 0.1 s while its call waits; the server allows one per 5 s: the
    third strike gets GOAWAY ENHANCE_YOUR_CALM too_many_pings, and the call ends UNAVAILABLE."""
    async with greeting_with_keepalive(grpcgo, settings, "0.1", 5.0) as (process, connection):
        outcome = await ended(process, close_stdin=False)
    assert outcome == failed(StatusCode.UNAVAILABLE, "transport is closing")
    assert connection.ping_policy.strikes == MAX_STRIKES + 1


async def test_a_grpcgo_call_in_flight_goes_on_past_its_connections_max_age(
    grpcgo: Path, settings: ServerSettings
) -> None:
    """Past both GOAWAYs of ``max_connection_age`` (last stream 2^31-1 and a PING, then the
    last stream the server saw), grpc-go's bidi stream is answered and ends OK."""
    aging = replace(settings, max_connection_age=0.3)
    async with (
        serve(settings=aging) as server,
        calling(grpcgo, server, "muxs.Greeter/BidiHello") as process,
    ):
        assert process.stdin is not None
        process.stdin.write(b'{"name": "a"}\n')
        assert await read_reply(process) == {"message": "Hello, a!", "index": 1}
        assert isinstance(server.server, LimitedServer)
        connections = server.server.connections
        (connection,) = connections
        await until(lambda: connection.refuses_stream(2**31 - 1))  # the last GOAWAY is sent
        process.stdin.write(b'{"name": "b"}\n')
        assert await read_reply(process) == {"message": "Hello, b!", "index": 2}
        outcome = await ended(process)
        await until(lambda: connection not in connections)
    assert outcome == Outcome(0, "", "")
