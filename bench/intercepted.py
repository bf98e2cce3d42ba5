"""``python -m bench.intercepted N --root DIR``: muxs with ``muxs serve``'s defaults (the access
log at INFO, uvloop when installed) and N no-op server interceptors, for the ``interceptors``
suite: what the interceptor seam costs per call."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import muxs
from muxs.server.loops import run


async def noop(call: muxs.CallContext, proceed: muxs.ServerProceed) -> None:
    await proceed()


async def serve(count: int, root: str) -> None:
    settings = muxs.ServerSettings(port=0, root=Path(root))
    async with muxs.serve(settings=settings, interceptors=[noop] * count) as running:
        print(f"muxs listening on {running.target}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intercepted", description=__doc__)
    parser.add_argument("count", type=int, help="how many no-op interceptors")
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    run(serve(args.count, args.root), "auto")


if __name__ == "__main__":
    main()
