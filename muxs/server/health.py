"""Health: the standard ``grpc.health.v1.Health`` service, with grpclib's implementation.

- Overall (service ``""``) and every hosted service are SERVING while the server runs
  and NOT_SERVING as soon as a drain begins.
- ``muxs.FileController`` is also NOT_SERVING while its root is not writable (a file
  cannot be created in it). That check is re-run at most every ``recheck`` seconds, on
  a ``Check`` or, while someone watches, in the background. A read-only root leaves
  the overall status and ``muxs.Greeter`` SERVING: the server still does useful work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from grpclib.health.check import CheckBase, ServiceCheck, ServiceStatus
from grpclib.health.service import OVERALL, Health

from muxs._internals import forget_last_check
from muxs.api import FileControllerBase
from muxs.server.storage import TEMP_PREFIX

if TYPE_CHECKING:
    from muxs._internals import ICheckable, IServable

log = logging.getLogger(__name__)

ROOT_RECHECK_SECONDS = 5.0


def root_is_writable(root: Path) -> bool:
    """Whether a new file can be created (and removed) in ``root``."""
    probe = root / f"{TEMP_PREFIX}health-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        log.debug("root %s is not writable: %s", root, exc)
        return False
    return True


class _RootWritable:
    """The FileController's check, named in grpclib's "status changed" log lines."""

    def __init__(self, root: Path) -> None:
        self._root = root

    async def __call__(self) -> bool:
        return await asyncio.to_thread(root_is_writable, self._root)

    def __repr__(self) -> str:
        return f"'root {self._root} is writable'"


class HealthState:
    """The health statuses of a muxs server, and the service that reports them."""

    def __init__(
        self,
        services: Collection[IServable],
        root: Path,
        *,
        recheck: float = ROOT_RECHECK_SECONDS,
    ) -> None:
        self._serving = ServiceStatus()
        self._serving.set(True)
        self._root_writable = ServiceCheck(
            _RootWritable(root), check_ttl=recheck, check_timeout=max(recheck, 1.0)
        )
        checks: dict[ICheckable, list[CheckBase]] = {OVERALL: [self._serving]}
        for service in services:
            checks[service] = [self._serving]
            if isinstance(service, FileControllerBase):
                checks[service].append(self._root_writable)
        self.service = Health(checks)

    async def refresh(self) -> None:
        """Run the checks now, whatever their age (so that a ``Watch`` reply is right at once)."""
        forget_last_check(self._root_writable)  # grpclib's ServiceCheck caches for its TTL
        await self._root_writable.__check__()

    def drain(self) -> None:
        """Turn every status NOT_SERVING: the server is about to stop."""
        self._serving.set(False)
