"""Server reflection (v1 and v1alpha), with grpclib's implementation.

The reflection services read muxs's descriptors from the descriptor set that
``python -m tools.codegen`` writes beside the generated code (``muxs_api/muxs.binpb``), plus
the descriptors of grpclib's own health and reflection protos, and the descriptor sets of the
hosted services of the user (``muxs.server.hosting.HostedService.descriptor_set``), all in a
private descriptor pool. A hosted service without one is listed but cannot be described.
(betterproto2 can embed descriptors in the generated module instead, but then every
``import muxs`` imports protobuf: docs/PERFORMANCE.md.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError
from grpclib.health.v1 import health_pb2
from grpclib.reflection.v1 import reflection_pb2
from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2

from muxs import _internals
from muxs.errors import ConfigError

if TYPE_CHECKING:
    from muxs._internals import IServable

#: The generated package and the descriptor set ``tools/codegen.py`` writes into it.
PACKAGE, DESCRIPTOR_SET = "muxs_api", "muxs.binpb"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


def service_name(service: IServable) -> str:
    """A service's full name (``muxs.Greeter``)."""
    return next(iter(service.__mapping__())).split("/")[1]


def descriptor_pool(descriptor_sets: Sequence[bytes] = ()) -> DescriptorPool:
    """A pool holding the muxs protos, the health and reflection protos, and the files of
    ``descriptor_sets`` (``ConfigError`` if one is not a ``FileDescriptorSet``)."""
    files = []
    for module in (health_pb2, reflection_pb2, reflection_v1alpha_pb2):
        file = FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        files.append(file)
    own = resources.files(PACKAGE).joinpath(DESCRIPTOR_SET).read_bytes()
    for data in (own, *descriptor_sets):
        try:
            files += FileDescriptorSet.FromString(data).file
        except DecodeError:
            raise ConfigError("services", "a descriptor set is not a FileDescriptorSet") from None
    pool = DescriptorPool()
    added: set[str] = set()
    for file in files:
        if file.name not in added:  # a file several sets include (with --include_imports)
            pool.Add(file)
            added.add(file.name)
    return pool


class MethodSymbols:
    """A descriptor pool whose ``FindFileContainingSymbol`` finds a service's methods too
    (``muxs.Greeter.SayHello``), as grpc-go's and grpc core's reflection do: protobuf's
    finds messages, fields, enums and services only, and ``grpcurl describe`` asks for
    methods by name. Everything else is the pool's."""

    def __init__(self, pool: DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        service, _, method = symbol.rpartition(".")
        with contextlib.suppress(KeyError):
            found = self._pool.FindServiceByName(service)
            if method in found.methods_by_name:
                return found.file
        return self._pool.FindFileContainingSymbol(symbol)


def reflection_services(
    services: Collection[IServable], descriptor_sets: Sequence[bytes] = ()
) -> list[IServable]:
    """Reflection v1 and v1alpha, listing ``services`` and themselves, describing what
    muxs's descriptors and ``descriptor_sets`` hold."""
    names = [*(service_name(service) for service in services), *REFLECTION_SERVICES]
    pool: Any = MethodSymbols(descriptor_pool(descriptor_sets))
    return _internals.reflection_services(names, pool)
