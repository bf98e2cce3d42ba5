"""The SDK's connection: made within ``connect_timeout``, and explained when it is not."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from h2.settings import SettingCodes

from muxs import Client, ConfigError, RpcError, RunningServer, StatusCode, SyncClient
from muxs.channel import MAX_FRAME_SIZE, AnsweringChannel
from muxs.errors import ConnectFailure, translate_errors
from muxs.tls import is_tls_record
from tests.client.test_client import call_of_kind
from tests.listeners import TLS_ALERT, answer_in_tls, hang_up, listening, never_answer
from tests.polling import until

NO_ANSWER = (
    "no answer within 0.2 s (the connect timeout: --connect-timeout, SDK: connect_timeout=): "
    "the server is likely overloaded, or not a gRPC server"
)


@pytest.mark.parametrize("kind", ["unary", "server stream", "client stream", "bidi"])
async def test_a_server_that_never_answers_fails_every_call_kind_at_the_connect_timeout(
    kind: str,
) -> None:
    async with (
        listening(never_answer) as target,
        Client(target, connect_timeout=0.2) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await call_of_kind(client, kind)
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message == f"cannot reach {target}: {NO_ANSWER}"


async def test_without_a_connect_timeout_the_deadline_still_ends_the_call() -> None:
    async with (
        listening(never_answer) as target,
        Client(target, connect_timeout=None, timeout=0.2) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED


async def test_a_deadline_shorter_than_the_connect_timeout_wins() -> None:
    async with (
        listening(never_answer) as target,
        Client(target, connect_timeout=30, timeout=0.2) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED


async def test_the_connect_timeout_never_cuts_a_connection_once_made(
    live_server: RunningServer, root_dir: Path
) -> None:
    (root_dir / "big.bin").write_bytes(b"x" * 1_000_000)
    async with Client(live_server.target, connect_timeout=0.05) as client:
        received = 0
        async for data in client.read_chunks("big.bin"):
            if not received:
                await asyncio.sleep(0.2)  # a slow reader: far past the connect timeout
            received += len(data)
        assert received == 1_000_000
        assert (await client.say_hello("again")).message == "Hello, again!"


async def test_a_server_that_hangs_up_at_once_may_want_tls() -> None:
    async with listening(hang_up) as target, Client(target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message == (
        f"cannot reach {target}: the server closed the connection before answering: "
        "if it uses TLS, add --tls or --ca FILE (SDK: tls=True or tls=CA_FILE)"
    )


async def test_a_server_answering_in_tls_is_named() -> None:
    async with listening(answer_in_tls) as target, Client(target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message == (
        f"cannot reach {target}: the server answered in TLS: "
        "add --tls or --ca FILE (SDK: tls=True or tls=CA_FILE)"
    )


@pytest.mark.parametrize(
    ("data", "tls"),
    [
        (TLS_ALERT, True),
        (b"\x16\x03\x03\x00\x7a", True),
        (b"\x00\x00\x12\x04", False),
        (b"", False),
    ],
)
def test_tls_records_are_recognised_by_their_first_bytes(data: bytes, tls: bool) -> None:
    assert is_tls_record(data) is tls


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan")])
async def test_a_connect_timeout_must_be_positive(seconds: float) -> None:
    with pytest.raises(ConfigError, match=r"connect_timeout: .* is not a number > 0"):
        Client("127.0.0.1:1", connect_timeout=seconds)


async def test_the_client_connects_through_an_answering_channel_with_its_timeout() -> None:
    client = Client("127.0.0.1:1", connect_timeout=3)
    channel = client._caller.channel
    assert isinstance(channel, AnsweringChannel)
    assert channel.connect_timeout == 3
    client.close()


async def test_the_sync_client_takes_a_connect_timeout() -> None:
    async with listening(never_answer) as target:

        def call() -> RpcError:
            with SyncClient(target, connect_timeout=0.2) as client:
                with pytest.raises(RpcError) as caught:
                    client.say_hello("x")
                return caught.value

        error = await asyncio.to_thread(call)
    assert error.status is StatusCode.UNAVAILABLE
    assert error.message == f"cannot reach {target}: {NO_ANSWER}"


def ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    ("cause", "client_cert", "says"),
    [
        (ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), False, "add --cert FILE --key FILE"),
        (ssl_error("TLSV1_ALERT_UNKNOWN_CA"), True, "the server refused the client certificate"),
        (ssl_error("WRONG_VERSION_NUMBER"), False, "it likely serves plaintext"),
        (ssl_error("NO_CIPHERS_AVAILABLE"), False, "the TLS handshake failed: NO_CIPHERS"),
        (ConnectionResetError(), True, "likely does not trust this client certificate"),
    ],
)
def test_a_refused_handshake_is_worded_from_what_the_server_answered(
    cause: OSError, client_cert: bool, says: str
) -> None:
    failure = ConnectFailure("tls_handshake", tls=True, client_cert=client_cert, connect_timeout=1)
    with pytest.raises(RpcError) as caught, translate_errors("h:1"):
        raise failure from cause
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message.startswith("cannot reach h:1: ")
    assert says in caught.value.message


async def test_the_client_advertises_a_1_mib_max_frame_size() -> None:
    """A server that follows it sends a 64 KiB file chunk as one DATA frame, not four."""
    settings: list[dict[int, int]] = []

    async def read_settings(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        server.initiate_connection()
        while data := await reader.read(65536):
            for event in server.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings.append({k: v.new_value for k, v in event.changed_settings.items()})

    async with listening(read_settings) as target, Client(target, connect_timeout=5) as client:
        call = asyncio.ensure_future(client.say_hello("x", timeout=5))
        await until(
            lambda: any(s.get(SettingCodes.MAX_FRAME_SIZE) == MAX_FRAME_SIZE for s in settings)
        )
        call.cancel()
    # h2's first SETTINGS frame carries its default (16 KiB); the next one raises it.
    frame_sizes = [
        s[SettingCodes.MAX_FRAME_SIZE] for s in settings if SettingCodes.MAX_FRAME_SIZE in s
    ]
    assert frame_sizes[-1] == MAX_FRAME_SIZE == 1024 * 1024
