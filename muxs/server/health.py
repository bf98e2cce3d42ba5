"""Health: the standard ``grpc.health.v1.Health`` service, with grpclib's implementation.

- Overall (service ``""``) and every hosted service are SERVING while the server runs
  and NOT_SERVING as soon as a drain begins.
- ``muxs.FileController`` is also NOT_SERVING while its store is not writable (a file
  cannot be created in its root, or its S3 bucket cannot be reached or written). That
  check is re-run at most every ``recheck`` seconds, on a ``Check`` or, while someone
  watches, in the background. A read-only store leaves the overall status and
  ``muxs.Greeter`` SERVING: the server still does useful work.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from grpclib.health.check import CheckBase, ServiceCheck, ServiceStatus
from grpclib.health.service import OVERALL, Health

from muxs._internals import forget_last_check
from muxs.api import FileControllerBase

if TYPE_CHECKING:
    from muxs._internals import ICheckable, IServable
    from muxs.server.storage import FileStore

log = logging.getLogger(__name__)

ROOT_RECHECK_SECONDS = 5.0


class _StoreWritable:
    """The FileController's check, named in grpclib's "status changed" log lines."""

    def __init__(self, store: FileStore) -> None:
        self._store = store

    async def __call__(self) -> bool:
        return await self._store.writable()

    def __repr__(self) -> str:
        return f"'{self._store.description} is writable'"


class HealthState:
    """The health statuses of a muxs server, and the service that reports them."""

    def __init__(
        self,
        services: Collection[IServable],
        store: FileStore,
        *,
        recheck: float = ROOT_RECHECK_SECONDS,
    ) -> None:
        self._serving = ServiceStatus()
        self._serving.set(True)
        self._store_writable = ServiceCheck(
            _StoreWritable(store), check_ttl=recheck, check_timeout=max(recheck, 1.0)
        )
        checks: dict[ICheckable, list[CheckBase]] = {OVERALL: [self._serving]}
        for service in services:
            checks[service] = [self._serving]
            if isinstance(service, FileControllerBase):
                checks[service].append(self._store_writable)
        self.service = Health(checks)

    async def refresh(self) -> None:
        """Run the checks now, whatever their age (so that a ``Watch`` reply is right at once)."""
        forget_last_check(self._store_writable)  # grpclib's ServiceCheck caches for its TTL
        await self._store_writable.__check__()

    def drain(self) -> None:
        """Turn every status NOT_SERVING: the server is about to stop."""
        self._serving.set(False)
