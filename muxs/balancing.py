"""Several servers behind one client: round robin over the healthy ones.

``RoundRobin`` stands where a grpclib ``Channel`` stands (the calls use its ``request``,
``close`` and ``refused_by_goaway``) and holds one ``AnsweringChannel`` per server: each call
goes to the next server in turn, skipping one whose latest connection failed until grpc's
connection backoff (``muxs.retries.connect_backoff``) has passed since (when every server
is failing, the one to be tried again first gets the call). A call refused by a server that is
gone fails over to the next one through the transparent retry (``muxs.retries``).

A ``dns:///name:port`` target starts with one channel to ``name`` (the system resolver's
first address), resolves ``name`` in the background on the first call, and again whenever a
connection fails; a channel is kept for each address still resolved, the others leave the
rotation (the calls still running on them end as they would) and close with the client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from muxs.channel import AnsweringChannel

log = logging.getLogger(__name__)

#: Makes the channel to ``(host, port)``.
ChannelMaker = Callable[[str, int], AnsweringChannel]


class RoundRobin:
    """Channels to ``addresses`` (``(host, port)``), used in turn; ``dns_name``: the name the
    addresses are resolved from again (None: a fixed list)."""

    def __init__(
        self,
        make_channel: ChannelMaker,
        addresses: Sequence[tuple[str, int]],
        *,
        dns_name: tuple[str, int] | None = None,
    ) -> None:
        self._make_channel = make_channel
        self._channels = {address: make_channel(*address) for address in addresses}
        self._order = list(self._channels)
        self._next = 0
        self._dns_name = dns_name
        self._resolving: asyncio.Task[None] | None = None
        self._retired: list[AnsweringChannel] = []
        self._resolved = False

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The servers' addresses, in their turn's order."""
        return list(self._order)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        """grpclib's ``Channel.request`` on the next healthy server's channel."""
        if self._dns_name is not None and not self._resolved:
            self._resolve_soon()
        return self._pick().request(*args, **kwargs)

    def _pick(self) -> AnsweringChannel:
        now = time.monotonic()
        count = len(self._order)
        for step in range(count):
            address = self._order[(self._next + step) % count]
            channel = self._channels[address]
            if _healthy(channel, now):
                self._next = (self._next + step + 1) % count
                return channel
        # Every server is failing: the one to be tried again first gets the call.
        return min(self._channels.values(), key=lambda c: c.retry_at or 0.0)

    def refused_by_goaway(self, stream: Any) -> bool:
        return any(channel.refused_by_goaway(stream) for channel in self._channels.values())

    def connect_failed(self) -> None:
        """A connection failed: resolve the name again (with a ``dns:`` target)."""
        if self._dns_name is not None:
            self._resolve_soon()

    def _resolve_soon(self) -> None:
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.get_running_loop().create_task(self._resolve())

    async def _resolve(self) -> None:
        assert self._dns_name is not None
        host, port = self._dns_name
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.warning("could not resolve %s: %s", host, exc)
            return
        addresses = list(dict.fromkeys((str(info[4][0]), int(info[4][1])) for info in found))
        if not addresses:
            return
        self._resolved = True
        for address in addresses:
            if address not in self._channels:
                self._channels[address] = self._make_channel(*address)
        for address in set(self._channels) - set(addresses):
            self._retired.append(self._channels.pop(address))
        self._order = addresses
        self._next %= len(addresses)
        log.debug("%s resolved to %s", host, addresses)

    def close(self) -> None:
        if self._resolving is not None:
            self._resolving.cancel()
        for channel in [*self._channels.values(), *self._retired]:
            channel.close()


def _healthy(channel: AnsweringChannel, now: float) -> bool:
    """Whether ``channel``'s latest connection did not fail, or its backoff has passed."""
    return channel.retry_at is None or now >= channel.retry_at
