"""grpcio's standard health and reflection clients against a muxs server; prints JSON.

Run as a script (``python grpcio_ops_client.py HOST:PORT``): grpcio-health-checking and
grpclib both register ``grpc.health.v1`` in protobuf's default pool, and one process
can hold only one of them, so these clients cannot run in the test process.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

HEALTH_OF = ("", "muxs.Greeter", "muxs.FileController")


def health(channel: grpc.Channel) -> dict[str, object]:
    # The typing stubs of HealthStub lack its methods.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name
    checked = {
        service: name(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status)
        for service in HEALTH_OF
    }
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    first = name(next(watch).status)
    watch.cancel()
    return {"check": checked, "watch": first}


def reflection(channel: grpc.Channel) -> dict[str, object]:
    try:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
    except grpc.RpcError as exc:
        return {"error": exc.code().name}
    pool = DescriptorPool(database)
    methods = {
        method.full_name: [
            method.input_type.full_name,
            method.output_type.full_name,
            method.client_streaming,
            method.server_streaming,
        ]
        for service in services
        for method in pool.FindServiceByName(service).methods
    }
    return {"services": services, "methods": methods}


def main(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        json.dump({"health": health(channel), "reflection": reflection(channel)}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
