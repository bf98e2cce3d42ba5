"""Which scope each method needs. Health and reflection are public; any other unmapped method is
refused (fail closed), and a test checks that every muxs method is mapped."""

from __future__ import annotations

GREETER = "greeter"
FILES_READ = "files:read"
FILES_WRITE = "files:write"
SCOPES = (GREETER, FILES_READ, FILES_WRITE)

PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)

_SERVICE_SCOPES = {"muxs.Greeter": GREETER}
_METHOD_SCOPES = {
    **{f"/muxs.FileController/{m}": FILES_READ for m in ("Read", "ReadStream", "List", "Stat")},
    **{f"/muxs.FileController/{m}": FILES_WRITE for m in ("Write", "WriteStream", "Delete")},
}


class UnmappedMethod(LookupError):
    """No scope is declared for the method: nobody may call it."""


def service_of(method_name: str) -> str:
    """``muxs.Greeter`` from ``/muxs.Greeter/SayHello``."""
    return method_name.split("/")[1]


def required_scope(method_name: str) -> str | None:
    """The scope ``/package.Service/Method`` needs; None when it is public."""
    service = service_of(method_name)
    if service in PUBLIC_SERVICES:
        return None
    scope = _METHOD_SCOPES.get(method_name) or _SERVICE_SCOPES.get(service)
    if scope is None:
        raise UnmappedMethod(method_name)
    return scope
