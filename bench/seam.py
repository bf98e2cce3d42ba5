"""``python -m bench.seam``: what the interceptor seam alone costs per call, in-process.

Runs ``muxs.server.interceptors.chain`` with 0, 1 and 3 no-op interceptors around an empty
handler, ``CALLS`` times each, and prints the best of ``ROUNDS`` per call: the seam's cost
without the network, the codec and grpclib, which the ``interceptors`` suite of
``python -m bench`` measures end to end (where it is lost in the noise).
"""

from __future__ import annotations

import asyncio
import time

from muxs.server.context import CallContext
from muxs.server.interceptors import ServerInterceptor, ServerProceed, chain

CALLS = 200_000
ROUNDS = 5


async def noop(call: CallContext, proceed: ServerProceed) -> None:
    await proceed()


async def handler() -> None:
    pass


async def per_call(interceptors: list[ServerInterceptor], call: CallContext) -> float:
    """Seconds per call, the best of ``ROUNDS``."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            if interceptors:
                await chain(interceptors, call, handler)()
            else:
                await handler()
        best = min(best, time.perf_counter() - started)
    return best / CALLS


async def main() -> None:
    call = CallContext("bench.Service", "Method", "unary", "unknown", 0.0, stream=None)  # type: ignore[arg-type]
    for count in (0, 1, 3):
        seconds = await per_call([noop] * count, call)
        print(f"{count} no-op interceptor(s): {seconds * 1e6:.2f} µs per call")


if __name__ == "__main__":
    asyncio.run(main())
