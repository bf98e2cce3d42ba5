"""Every method the server has, and whether muxs implements it yet."""

from __future__ import annotations

from betterproto2.casing import snake_case
from grpclib.const import Handler, Status

from muxs.api import FileControllerBase, GreeterBase
from muxs.server.services import FileControllerService, GreeterService

LIMIT = 64 * 1024
# The statuses a bad or random request may get: each one a client can act on (never UNKNOWN).
REFUSALS = frozenset(
    {
        Status.INVALID_ARGUMENT,
        Status.NOT_FOUND,
        Status.PERMISSION_DENIED,
        Status.FAILED_PRECONDITION,
        Status.RESOURCE_EXHAUSTED,
        Status.INTERNAL,
        Status.ABORTED,
    }
)
MAX_REPLIES = 50
_SERVICES = {GreeterBase: GreeterService, FileControllerBase: FileControllerService}
METHODS: dict[str, Handler] = {**GreeterBase().__mapping__(), **FileControllerBase().__mapping__()}


def implemented(path: str) -> bool:
    """Whether muxs implements the method (the generated base answers UNIMPLEMENTED)."""
    name = snake_case(path.rpartition("/")[2])
    return any(
        getattr(service, name, None) is not getattr(base, name, None)
        for base, service in _SERVICES.items()
        if path.startswith(f"/muxs.{base.__name__.removesuffix('Base')}/")
    )
