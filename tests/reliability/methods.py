"""Every method the server has, and whether muxs implements it yet."""

from __future__ import annotations

from betterproto.casing import snake_case
from grpclib.const import Handler

from muxs.api import FileControllerBase, GreeterBase
from muxs.services import FileControllerService, GreeterService

LIMIT = 64 * 1024
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
