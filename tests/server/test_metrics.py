"""Prometheus metrics: go-grpc-prometheus names and labels, scraped over HTTP."""

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from muxs import Client, RpcError, RunningServer, ServerSettings, serve
from tests.access import access_records

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def metered(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    async with serve(settings=replace(settings, metrics_port=0)) as running:
        yield running


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text: str = response.read().decode()
        return text


async def scrape(server: RunningServer) -> Samples:
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.metrics_port}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(service: str, method: str, kind: str, **extra: str) -> frozenset[tuple[str, str]]:
    return frozenset(
        {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **extra}.items()
    )


HELLO = labels("muxs.Greeter", "SayHello", "unary")
BIDI = labels("muxs.Greeter", "BidiHello", "bidi_stream")


async def test_calls_are_counted_by_method_type_and_code(metered: RunningServer) -> None:
    waiting = asyncio.Event()

    async def names() -> AsyncIterator[str]:
        yield "first"
        await waiting.wait()  # never set: the call stays open until cancelled

    with access_records() as logs:
        async with Client(metered.target) as client:
            await client.say_hello("a")
            await client.say_hello("b")
            with pytest.raises(RpcError):
                await client.read("missing.txt")
            assert len([reply async for reply in client.lots_of_replies("x", 3)]) == 3
            await client.write("notes.txt", "héllo")
            async with client.bidi_hello(names()) as replies:
                await anext(replies)
                during = await scrape(metered)
        await logs.finished("/muxs.Greeter/BidiHello")
    after = await scrape(metered)

    assert during[("muxs_calls_in_flight", BIDI)] == 1
    assert after[("muxs_calls_in_flight", BIDI)] == 0
    assert after[("grpc_server_started_total", HELLO)] == 2
    assert after[("grpc_server_handled_total", HELLO | {("grpc_code", "OK")})] == 2
    assert after[("grpc_server_handling_seconds_count", HELLO)] == 2
    assert after[("grpc_server_msg_received_total", HELLO)] == 2
    assert after[("grpc_server_msg_sent_total", HELLO)] == 2
    read = labels("muxs.FileController", "Read", "unary", grpc_code="NOT_FOUND")
    assert after[("grpc_server_handled_total", read)] == 1
    replies_sent = labels("muxs.Greeter", "LotsOfReplies", "server_stream")
    assert after[("grpc_server_msg_sent_total", replies_sent)] == 3
    assert after[("grpc_server_handled_total", BIDI | {("grpc_code", "CANCELLED")})] == 1
    write = labels("muxs.FileController", "Write", "unary")
    assert after[("muxs_file_bytes_written_total", write)] == len("héllo".encode())
    assert any(name.startswith("process_") for name, _ in after)


async def test_metrics_are_off_by_default(live_server: RunningServer) -> None:
    assert live_server.metrics_port is None
