"""``python -m bench.access_lines [CALLS] [--format text|json] [--without-log]``: the access
log's own path, alone.

``AccessLog.finished`` for ``CALLS`` calls (256 ``CallContext``s, reused), the event loop
turning every 64 of them, lines written by ``muxs serve``'s handler and formatter to
/dev/null; prints microseconds a call. Counted by callgrind, with and without the log (the
same loop, no ``finished``), the difference is the log's instructions a call, free of the
server around it (``bench.instructions`` counts them in a server)::

    valgrind --tool=callgrind python -m bench.access_lines 20000
    valgrind --tool=callgrind python -m bench.access_lines 20000 --without-log
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from muxs.cli._logging import configure_logging
from muxs.errors import StatusCode
from muxs.server.access_log import AccessLog
from muxs.server.context import CallContext


def _ended_call(n: int) -> CallContext:
    peer = f"127.0.0.1:{40000 + n % 64}"
    stream: Any = None
    call = CallContext("muxs.Greeter", "SayHello", "unary", peer, time.monotonic(), stream)
    call.status, call.received, call.sent = StatusCode.OK, 1, 1
    call.duration = 0.000123456 + (n % 97) * 1.7e-6
    return call


async def _run(calls: int, with_log: bool) -> float:
    ended = [_ended_call(n) for n in range(256)]
    access_log = AccessLog()
    for call in ended:  # warm up
        access_log.finished(call)
    access_log.flush()
    await asyncio.sleep(0)
    start = time.perf_counter()
    for n in range(calls):
        if with_log:
            access_log.finished(ended[n % 256])
        if n % 64 == 63:
            await asyncio.sleep(0)
    access_log.flush()
    await asyncio.sleep(0)
    return (time.perf_counter() - start) / max(calls, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.access_lines", description=__doc__)
    parser.add_argument("calls", nargs="?", type=int, default=100_000, help="calls logged")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--without-log", action="store_true", help="the same loop, no lines")
    args = parser.parse_args(argv)
    configure_logging("INFO", args.format)
    with open(os.devnull, "w") as devnull:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        seconds = asyncio.run(_run(args.calls, not args.without_log))
    print(f"{args.format}: {seconds * 1e6:.3f} µs a call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
