"""muxs serving an S3 bucket (the SeaweedFS the session starts): replicas sharing it, `muxs serve
--storage`, health, and the settings of the S3 backend."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from muxs import Client, ConfigError, RpcError, ServerSettings, StatusCode, serve
from muxs.cli import main
from tests.cli.test_cli import SEED_TRANSCRIPT
from tests.processes import muxs_process
from tests.seaweedfs import S3Engine


async def test_two_servers_on_one_bucket_see_each_others_files(s3_engine: S3Engine) -> None:
    settings = s3_engine.settings()
    async with (
        serve(settings=settings) as one,
        serve(settings=settings) as other,
        Client(one.target) as first,
        Client(other.target) as second,
    ):
        await first.write_bytes("shared/blob", b"written through one")
        assert await second.read_bytes("shared/blob") == b"written through one"
        assert [info.name async for info in second.list("shared")] == ["blob"]
        assert (await second.delete("shared/blob")).code == 0
        with pytest.raises(RpcError) as caught:
            await first.stat("shared/blob")
        assert caught.value.status is StatusCode.NOT_FOUND


async def test_muxs_serve_on_s3_answers_the_seed_file_sequence(
    s3_engine: S3Engine, tmp_path: Path
) -> None:
    settings = s3_engine.settings()
    assert settings.storage is not None
    assert settings.s3_endpoint is not None
    options = ["--storage", settings.storage, "--s3-endpoint", settings.s3_endpoint]
    options += ["--s3-region", "us-east-1", "--s3-access-key-id", "muxs-tests"]
    options += ["--s3-secret-access-key", "muxs-tests-secret"]
    lines: list[str] = []
    async with (
        muxs_process(tmp_path / "unused", *options, lines=lines) as (_, target),
        Client(target) as client,
    ):
        transcript = []
        try:
            await client.read("aaaa.txt")
        except RpcError as exc:
            transcript.append(f"File Read: {exc}")
        transcript.append(
            f"File Write: {(await client.write('aaaa2.txt', '37183714ghgjh243')).code}"
        )
        transcript.append(f"File Read: {(await client.read('aaaa2.txt')).text}")
    assert transcript == SEED_TRANSCRIPT.splitlines()[2:]
    assert any(settings.storage in line for line in lines)
    assert not any("muxs-tests-secret" in line for line in lines)
    assert s3_engine.keys(settings.storage.removeprefix(f"s3://{s3_engine.bucket}/")) == [
        f"{settings.storage.removeprefix(f's3://{s3_engine.bucket}/')}/aaaa2.txt"
    ]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("broken", ["unreachable endpoint", "missing bucket"])
async def test_the_file_controller_is_not_serving_while_the_bucket_cannot_be_written(
    s3_engine: S3Engine, broken: str
) -> None:
    settings = s3_engine.settings()
    if broken == "unreachable endpoint":
        settings = replace(settings, s3_endpoint=f"http://127.0.0.1:{closed_port()}")
    else:
        settings = replace(settings, storage="s3://no-such-bucket/p")
    async with serve(settings=settings) as running, Client(running.target) as client:
        assert await client.check_health("muxs.FileController") == "NOT_SERVING"
        assert await client.check_health("muxs.Greeter") == "SERVING"
        assert await client.check_health() == "SERVING"
        with pytest.raises(RpcError) as caught:
            await client.write("f", "x")
        assert caught.value.status is StatusCode.UNAVAILABLE
        assert caught.value.message == "the server's storage cannot be reached; retry later"


async def test_a_healthy_bucket_is_serving(s3_engine: S3Engine) -> None:
    async with serve(settings=s3_engine.settings()) as running, Client(running.target) as client:
        assert await client.check_health("muxs.FileController") == "SERVING"


@pytest.mark.parametrize(
    ("options", "option", "problem"),
    [
        ({"storage": "s3://"}, "storage", "'' is not an S3 bucket name"),
        ({"storage": "file:///srv"}, "storage", "'file:///srv' is not s3://bucket/prefix"),
        ({"storage": "s3://b-1/a/../b"}, "storage", "the prefix of 's3://b-1/a/../b' has a '.'"),
        ({"storage": "s3://key:secret@bkt/p"}, "storage", "must be s3://bucket/prefix alone"),
        (
            {"storage": "s3://bkt", "s3_endpoint": "http://10.1.2.3:8333"},
            "s3_endpoint",
            "plain http to a non-loopback host",
        ),
        ({"s3_part_bytes": 1024}, "s3_part_bytes", "1024 is not between 5242880"),
        ({"s3_parts_in_flight": 0}, "s3_parts_in_flight", "0 is not between 1 and 64"),
        (
            {"storage": "s3://bkt", "s3_access_key_id": "id"},
            "s3_secret_access_key",
            "go together",
        ),
    ],
)
def test_bad_s3_settings_are_refused(options: dict[str, object], option: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(**options)  # type: ignore[arg-type]
    assert caught.value.option == option
    assert problem in caught.value.problem
    assert "key:secret@" not in str(caught.value)  # a credential in the URL is not echoed


def test_the_secret_key_is_never_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2-very-secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert main(["config", "show", "--storage", "s3://bkt/p"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "# s3_secret_access_key = (redacted)  # env AWS_SECRET_ACCESS_KEY" in shown
    assert 's3_access_key_id = "AKIDEXAMPLE"  # env AWS_ACCESS_KEY_ID' in shown
    assert 's3_region = "eu-west-3"  # env AWS_REGION' in shown
    assert not any("hunter2" in line for line in shown)
    settings = ServerSettings(storage="s3://bkt", s3_access_key_id="a", s3_secret_access_key="s3cr")
    assert "s3cr" not in repr(settings)
