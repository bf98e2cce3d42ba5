"""SDK callers for tests of several servers: SayHello back to back, and the calls each server
served, counted."""

from __future__ import annotations

from collections import Counter

from muxs import CallContext, Client, RpcError, ServerInterceptor, ServerProceed


def counting(calls: Counter[int], index: int) -> ServerInterceptor:
    """A server interceptor that counts the calls it sees in ``calls[index]``."""

    async def count(call: CallContext, proceed: ServerProceed) -> None:
        calls[index] += 1
        await proceed()

    return count


class SayHelloCallers:
    """SayHello calls back to back through ``client``, from as many tasks as run ``call``:
    the replies and the failures, until ``enough`` replies have come (or ``stop``)."""

    def __init__(self, client: Client, *, enough: int | None = None) -> None:
        self._client = client
        self._enough = enough
        self._stopping = False
        self.replies: list[str] = []
        self.lost: list[RpcError] = []

    async def call(self) -> None:
        while not self._stopping and (self._enough is None or len(self.replies) < self._enough):
            try:
                self.replies.append((await self._client.say_hello("bob")).message)
            except RpcError as exc:
                self.lost.append(exc)

    def stop(self) -> None:
        """Make no more calls (those under way end first)."""
        self._stopping = True
