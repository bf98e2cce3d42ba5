"""``muxs serve --otel`` (``ServerSettings.otel``): turned on by the flag or by OpenTelemetry's
standard variable, spans exported as ``OTEL_TRACES_EXPORTER`` says (here the console exporter, to
stdout: nothing goes to a network), every call traced, auth's refusals included, and a bad
exporter refused before the server starts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

import muxs
from muxs.errors import ConfigError
from muxs.otel import client_interceptor
from muxs.server.config import load_settings
from tests.processes import die_with_parent, listening_target
from tests.spans import Spans

TOKEN = "muxs_tracing-test-token"


@pytest.mark.parametrize(
    ("flags", "environ", "on", "source"),
    [
        ({}, {}, False, "default"),
        ({"otel": True}, {}, True, "flag --otel"),
        ({}, {"MUXS_OTEL": "true"}, True, "env MUXS_OTEL"),
        ({}, {"OTEL_TRACES_EXPORTER": "console"}, True, "env OTEL_TRACES_EXPORTER"),
        ({}, {"OTEL_TRACES_EXPORTER": "none"}, False, "default"),
        ({}, {"OTEL_TRACES_EXPORTER": "otlp", "MUXS_OTEL": "false"}, False, "env MUXS_OTEL"),
    ],
)
def test_tracing_is_off_unless_asked(
    flags: dict[str, object], environ: dict[str, str], on: bool, source: str
) -> None:
    loaded = load_settings(flags, environ)
    assert loaded.settings.otel is on
    assert loaded.sources["otel"] == source


def otel_environ(**variables: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MUXS_"))}
    return environ | variables


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one after another (the console exporter's output)."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        found, at = decoder.raw_decode(text, at)
        objects.append(found)
    return objects


async def test_muxs_serve_otel_traces_every_call_the_client_span_its_parent(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.toml"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(f'[[token]]\nsha256 = "{digest}"\nsubject = "a"\nscopes = ["greeter"]\n')
    command = [sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(tmp_path)]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--otel",
        "--auth-tokens",
        str(tokens),
        env=otel_environ(OTEL_TRACES_EXPORTER="console"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    try:
        target = await listening_target(process)
        spans = Spans()
        client_side = [client_interceptor(spans.provider)]
        async with muxs.Client(target, timeout=10, interceptors=client_side) as client:
            with pytest.raises(muxs.RpcError):
                await client.say_hello("nobody")  # no token: UNAUTHENTICATED
            async with muxs.Client(target, timeout=10, token=TOKEN, interceptors=client_side) as c:
                await c.say_hello("a")
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    exported = json_objects(stdout.decode())
    assert [s["attributes"]["rpc.grpc.status_code"] for s in exported] == [16, 0]
    clients = [s for s in spans.ended() if s.kind is SpanKind.CLIENT]
    for server, parent in zip(exported, clients, strict=True):
        assert server["name"] == "muxs.Greeter/SayHello"
        assert server["kind"] == "SpanKind.SERVER"
        assert server["resource"]["attributes"]["service.name"] == "muxs"
        assert parent.context is not None
        assert server["parent_id"] == f"0x{parent.context.span_id:016x}"
        assert server["context"]["trace_id"] == f"0x{parent.context.trace_id:032x}"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER='zipkin' is not one of otlp, console, none",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTLP protocol 'grpc': muxs exports OTLP over http/protobuf only",
        ),
    ],
)
async def test_an_exporter_muxs_lacks_stops_muxs_serve_with_exit_2(
    tmp_path: Path, variables: dict[str, str], problem: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(tmp_path)],
        env=otel_environ(**variables),
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    last = stderr.decode().splitlines()[-1]
    assert last == f"muxs serve: cannot start: otel: {problem}"
    assert "Traceback" not in stderr.decode()


def test_tracing_without_the_otel_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert str(caught.value) == (
        "otel: needs the OpenTelemetry SDK: pip install 'muxs[otel]' "
        "(from env OTEL_TRACES_EXPORTER)"
    )
