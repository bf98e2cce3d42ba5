"""A user's own service for the embedding tests: ``orders.Orders`` (tests/example/orders.proto),
and a client helper that reads a call's headers and trailers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from muxs import HostedService, StatusCode
from muxs.server.context import current

EXAMPLE = Path(__file__).parents[1] / "example"
sys.path.insert(0, str(EXAMPLE))  # orders_api, as a user's generated package

from orders_api.orders import Order, OrderRequest, OrdersBase, OrdersStub  # noqa: E402

DESCRIPTOR_SET = EXAMPLE / "orders_api" / "orders.binpb"
__all__ = ["DESCRIPTOR_SET", "Order", "OrderRequest", "Orders", "OrdersStub", "Reply", "call"]


class Orders(OrdersBase):
    """Keeps orders in memory; ``Get`` answers with the caller's subject in ``item``'s place
    when asked for the id ``whoami``."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    async def get(self, message: OrderRequest) -> Order:
        if message.id == "whoami":
            return Order(id="whoami", item=str(current().identity.subject))
        if message.id not in self.orders:
            raise GRPCError(StatusCode.NOT_FOUND, f"no order {message.id!r}")
        return self.orders[message.id]

    async def place(self, message: Order) -> Order:
        order = Order(id=str(len(self.orders) + 1), item=message.item, quantity=message.quantity)
        self.orders[order.id] = order
        return order

    async def search(self, message: OrderRequest) -> AsyncIterator[Order]:
        for order in list(self.orders.values()):
            if order.item.startswith(message.item):
                yield order


@dataclass
class Reply:
    """What a client saw of one unary call."""

    status: StatusCode
    message: str | None
    reply: Any
    headers: dict[str, Any]
    trailers: dict[str, Any]


async def call(
    channel: Channel,
    method: str,
    request: Any,
    reply_type: type[Any] = Order,
    metadata: Mapping[str, str | bytes] | None = None,
    timeout: float | None = None,
) -> Reply:
    """Call the unary ``/orders.Orders/<method>``; the status, headers and trailers as seen."""
    path = method if method.startswith("/") else f"/orders.Orders/{method}"
    stream = channel.request(
        path,
        Cardinality.UNARY_UNARY,
        type(request),
        reply_type,
        metadata=metadata,
        timeout=timeout,
    )
    reply, status, message = None, StatusCode.OK, None
    try:
        async with stream:
            await stream.send_message(request, end=True)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
    except GRPCError as exc:
        status, message = exc.status, exc.message
    return Reply(
        status,
        message,
        reply,
        dict(stream.initial_metadata or {}),
        dict(stream.trailing_metadata or {}),
    )


def hosted() -> list[HostedService]:
    """The factory ``muxs serve --services tests.server.orders:hosted`` calls."""
    return [HostedService(Orders(), scope="orders:read", descriptor_set=DESCRIPTOR_SET)]
