"""Server reflection (v1 and v1alpha), with grpclib's implementation.

The reflection services read muxs's descriptors from the descriptor set that
``python -m tools.codegen`` writes beside the generated code (``muxs_api/muxs.binpb``), plus
the descriptors of grpclib's own health and reflection protos, all in a private descriptor
pool. (betterproto2 can embed descriptors in the generated module instead, but then every
``import muxs`` imports protobuf: docs/PERFORMANCE.md.)
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.protobuf.descriptor_pool import DescriptorPool
from grpclib.health.v1 import health_pb2
from grpclib.reflection.v1 import reflection_pb2
from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2

from muxs import _internals

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


def descriptor_pool() -> DescriptorPool:
    """A pool holding the muxs protos and the health and reflection protos."""
    pool = DescriptorPool()
    descriptor_set = FileDescriptorSet.FromString(
        resources.files(PACKAGE).joinpath(DESCRIPTOR_SET).read_bytes()
    )
    for file in descriptor_set.file:
        pool.Add(file)
    for module in (health_pb2, reflection_pb2, reflection_v1alpha_pb2):
        file = FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        pool.Add(file)
    return pool


def reflection_services(services: Collection[IServable]) -> list[IServable]:
    """Reflection v1 and v1alpha, listing ``services`` and themselves."""
    names = [*(service_name(service) for service in services), *REFLECTION_SERVICES]
    pool: Any = descriptor_pool()
    return _internals.reflection_services(names, pool)
