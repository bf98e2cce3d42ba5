"""Several servers behind one client: round robin, a stopped server skipped, ``dns:///``."""

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from muxs import Client, ConfigError, RpcError, RunningServer, ServerSettings, StatusCode, serve
from muxs.server.services.greeter import greeting
from tests.callers import SayHelloCallers, counting
from tests.listeners import Behaviour, answer_in_tls, hang_up, listening, never_answer
from tests.polling import until
from tests.processes import muxs_process


async def test_calls_go_round_robin_and_none_is_lost_when_a_server_stops(
    settings: ServerSettings,
) -> None:
    calls: Counter[int] = Counter()
    stacks = [contextlib.AsyncExitStack() for _ in range(3)]
    servers = [
        await stack.enter_async_context(
            serve(settings=settings, interceptors=[counting(calls, index)])
        )
        for index, stack in enumerate(stacks)
    ]
    try:
        async with Client([server.target for server in servers], timeout=30) as client:
            for _ in range(6):
                await client.say_hello("ann")
            assert calls == Counter({0: 2, 1: 2, 2: 2})

            callers = SayHelloCallers(client, enough=120)
            tasks = [asyncio.create_task(callers.call()) for _ in range(4)]
            await until(lambda: len(callers.replies) >= 20)
            await stacks[1].aclose()  # drains: its calls in flight finish, later ones fail over
            stopped_at = calls[1]
            await asyncio.gather(*tasks)
    finally:
        for stack in stacks:
            await stack.aclose()
    assert set(callers.replies) == {"Hello, bob!"}
    # The stopped server retires its connections with GOAWAYs before it closes them: its
    # refusals are sent again elsewhere, and no request reaches it as it closes.
    assert callers.lost == []
    assert calls[1] == stopped_at  # nothing reached the stopped server after it stopped
    assert calls[0] > 20
    assert calls[2] > 20


async def test_a_dns_target_reaches_the_names_addresses(settings: ServerSettings) -> None:
    async with (
        serve(settings=settings) as server,
        Client(f"dns:///localhost:{server.port}", timeout=30) as client,
    ):
        for _ in range(4):  # ::1, where nothing listens, is refused and skipped
            assert (await client.say_hello("ann")).message == "Hello, ann!"


@pytest.mark.parametrize(
    ("target", "refusal"),
    [
        ("dns:localhost:1", "is not dns:///NAME:PORT"),
        ("dns:///localhost", "is not HOST:PORT"),
        ("dns:///:1", "is not HOST:PORT"),
        (["127.0.0.1:1", "dns:///localhost:1"], "is HOST:PORT"),
        (["127.0.0.1:1", "unix:///tmp/sock"], "is HOST:PORT"),
    ],
)
def test_a_malformed_target_is_refused(target: str | list[str], refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        Client(target)


def test_no_target_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        Client([])
    assert refused.value.option == "target"


async def test_every_server_down_is_unavailable(closed_port: int) -> None:
    targets = [f"127.0.0.1:{closed_port}"] * 2
    async with Client(targets, timeout=30) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann")
    assert failed.value.status is StatusCode.UNAVAILABLE


@pytest.mark.parametrize("behaviour", [hang_up, answer_in_tls, never_answer])
async def test_a_call_whose_connection_fails_before_the_server_answers_goes_to_the_next(
    live_server: RunningServer, behaviour: Behaviour
) -> None:
    # A stopping server resets a connection so when it closes its listening socket with the
    # connection in the backlog: the request never left, so the next server takes the call.
    async with (
        listening(behaviour) as failing,
        Client([failing, live_server.target], timeout=30, connect_timeout=2) as client,
    ):
        assert (await client.say_hello("ann")).message == "Hello, ann!"  # failing's turn
        assert (await client.say_hello("bob")).message == "Hello, bob!"  # failing skipped


async def test_every_server_hanging_up_before_it_answers_is_unavailable() -> None:
    async with (
        listening(hang_up) as first,
        listening(hang_up) as second,
        Client([first, second], timeout=30) as client,
    ):
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann")
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == (
        f"cannot reach {first},{second}: the server closed the connection before answering: "
        "if it uses TLS, add --tls or --ca FILE (SDK: tls=True or tls=CA_FILE)"
    )


async def test_a_server_killed_mid_run_loses_only_the_calls_in_flight_on_it(
    settings: ServerSettings, tmp_path: Path
) -> None:
    async with (
        serve(settings=settings) as first,
        serve(settings=settings) as third,
        muxs_process(tmp_path / "killed") as (process, killed),
        Client([first.target, killed, third.target], timeout=30) as client,
    ):
        callers = SayHelloCallers(client, enough=150)
        tasks = [asyncio.create_task(callers.call()) for _ in range(4)]
        await until(lambda: len(callers.replies) >= 30)
        process.kill()  # SIGKILL: no drain, its connection reset
        await process.wait()
        await asyncio.gather(*tasks)
    assert set(callers.replies) == {"Hello, bob!"}
    assert len(callers.lost) <= len(tasks)  # one call in flight on it per caller, at most
    assert {exc.status for exc in callers.lost} <= {StatusCode.UNAVAILABLE}


async def test_no_call_is_lost_while_three_servers_retire_their_connections_by_age(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxs.server.limits")
    settings = dataclasses.replace(settings, max_connection_age=0.2)
    calls: Counter[int] = Counter()
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                serve(settings=settings, interceptors=[counting(calls, index)])
            )
            for index in range(3)
        ]

        def retired_with_calls_open() -> int:
            """The max-age GOAWAYs sent so far with a call in flight on the connection."""
            return sum(
                1
                for record in caplog.records
                if "reached its max_connection_age" in record.getMessage()
                and record.args is not None
                and cast(tuple[object, ...], record.args)[1] != 0
            )

        streams: list[str] = []
        async with Client([server.target for server in servers], timeout=30) as client:
            callers = SayHelloCallers(client, enough=150)
            lost = callers.lost  # the streams' failures too

            async def streamer() -> None:
                async def names() -> AsyncIterator[str]:
                    yield "a"
                    # Held open until a connection is retired with a call open.
                    seen = retired_with_calls_open()
                    await until(lambda: retired_with_calls_open() > seen)
                    yield "b"

                while len(streams) < 6:
                    try:
                        streams.append((await client.lots_of_greetings(names())).message)
                    except RpcError as exc:
                        lost.append(exc)

            await asyncio.gather(*(callers.call() for _ in range(4)), streamer(), streamer())
        assert retired_with_calls_open() >= 3  # each stream waited for one
    assert lost == []
    assert set(callers.replies) == {"Hello, bob!"}
    assert set(streams) == {greeting(["a", "b"])}
    total = sum(calls.values())
    assert all(calls[index] > total / 6 for index in range(3))  # spread over the three


#: What each worker of ``muxs serve --workers N`` logs once it serves.
WORKER_LISTENING = "muxs.server.serving: muxs listening"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_server_stopped_by_sigterm_mid_run_loses_no_call(
    settings: ServerSettings, tmp_path: Path, workers: str
) -> None:
    log: list[str] = []
    async with (
        serve(settings=settings) as first,
        muxs_process(tmp_path / "stopped", "--workers", workers, later=log) as (process, stopped),
        Client([first.target, stopped], timeout=30) as client,
    ):
        # The supervisor listens before its workers have imported muxs (seconds on a busy
        # machine): the run starts once each of them serves.
        started = 0 if workers == "1" else int(workers)
        await until(lambda: sum(WORKER_LISTENING in line for line in log) == started, bound=60)
        callers = SayHelloCallers(client, enough=150)
        tasks = [asyncio.create_task(callers.call()) for _ in range(4)]
        await until(lambda: len(callers.replies) >= 30)
        process.send_signal(signal.SIGTERM)  # a drain: GOAWAYs, then its connections close
        assert await process.wait() == 0
        await asyncio.gather(*tasks)
    assert callers.lost == []
    assert set(callers.replies) == {"Hello, bob!"}
