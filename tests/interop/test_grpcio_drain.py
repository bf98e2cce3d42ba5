"""A drain loses no call a client can send again: grpcio and the muxs SDK call continuously,
round robin over two servers, while one of them stops."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from typing import Any

import grpc

from muxs import Client, ServerSettings, serve
from tests.callers import SayHelloCallers, counting
from tests.polling import until

#: The one failure a drain may give a client that does not send calls again: a call that
#: reached the stopping server before its GOAWAY did, refused unstarted (UNAVAILABLE).
REFUSED = "the server is shutting down; retry on another server"


class GrpcioCallers:
    """Threads calling SayHello back to back through one grpcio channel (round robin)."""

    def __init__(self, targets: list[str], pb: tuple[Any, Any], count: int) -> None:
        pb2, pb2_grpc = pb
        self._request = pb2.HelloRequest(name="bob")
        self._channel = grpc.insecure_channel(
            "ipv4:" + ",".join(targets), options=[("grpc.lb_policy_name", "round_robin")]
        )
        self._stub = pb2_grpc.GreeterStub(self._channel)
        self._stop = threading.Event()
        self.replies: list[str] = []
        self.refused: list[grpc.RpcError] = []
        self.lost: list[grpc.RpcError] = []
        self._threads = [threading.Thread(target=self._run) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.replies.append(self._stub.SayHello(self._request, timeout=30).message)
            except grpc.RpcError as exc:
                unstarted = exc.code() is grpc.StatusCode.UNAVAILABLE and exc.details() == REFUSED
                (self.refused if unstarted else self.lost).append(exc)

    async def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._channel.close()


async def test_no_call_is_lost_while_a_server_drains_under_load(
    settings: ServerSettings, pb: tuple[Any, Any]
) -> None:
    calls: Counter[int] = Counter()
    stacks = [contextlib.AsyncExitStack() for _ in range(2)]
    servers = [
        await stack.enter_async_context(
            serve(settings=settings, interceptors=[counting(calls, index)])
        )
        for index, stack in enumerate(stacks)
    ]
    targets = [server.target for server in servers]
    try:
        async with Client(targets, timeout=30) as client:
            sdk = SayHelloCallers(client)
            grpcio = GrpcioCallers(targets, pb, 4)
            try:
                tasks = [asyncio.create_task(sdk.call()) for _ in range(4)]
                await until(lambda: len(sdk.replies) >= 40 and len(grpcio.replies) >= 40)
                await stacks[0].aclose()  # drains while both clients keep calling
                stopped_at = (len(sdk.replies), len(grpcio.replies))
                await until(
                    lambda: len(sdk.replies) >= stopped_at[0] + 40
                    and len(grpcio.replies) >= stopped_at[1] + 40
                )
                sdk.stop()
                await asyncio.gather(*tasks)
            finally:
                await grpcio.stop()
    finally:
        for stack in stacks:
            await stack.aclose()
    lost: list[tuple[str, str | None]] = [(exc.status.name, exc.message) for exc in sdk.lost]
    lost += [(exc.code().name, exc.details()) for exc in grpcio.lost]
    assert lost == []
    assert set(sdk.replies) == set(grpcio.replies) == {"Hello, bob!"}
    assert calls[0] > 20
    assert calls[1] > 60
