"""grpcio's standard health and reflection clients work against a muxs server."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from muxs import RunningServer, ServerSettings, serve

CLIENT = Path(__file__).with_name("grpcio_ops_client.py")


async def grpcio_clients(target: str) -> dict[str, Any]:
    """What grpcio's health and reflection clients report, run in their own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), target, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.slow
async def test_health_and_reflection_clients_resolve_every_method(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    result = await grpcio_clients(live_server.target)
    assert result["health"] == {
        "check": {"": "SERVING", "muxs.Greeter": "SERVING", "muxs.FileController": "SERVING"},
        "watch": "SERVING",
    }
    reflected = result["reflection"]
    assert reflected["services"] == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "muxs.FileController",
        "muxs.Greeter",
    ]
    muxs_pb2 = pb[0]
    for service in muxs_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            assert reflected["methods"][method.full_name] == [
                method.input_type.full_name,
                method.output_type.full_name,
                method.client_streaming,
                method.server_streaming,
            ]
    assert reflected["methods"]["grpc.health.v1.Health.Check"][:2] == [
        "grpc.health.v1.HealthCheckRequest",
        "grpc.health.v1.HealthCheckResponse",
    ]


@pytest.mark.slow
async def test_no_reflection_leaves_reflection_unimplemented(tmp_path: Path) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0, root=tmp_path, reflection=False)
    async with serve(settings=settings) as running:
        result = await grpcio_clients(running.target)
    assert result["reflection"] == {"error": "UNIMPLEMENTED"}
    assert result["health"]["check"][""] == "SERVING"


def test_importing_muxs_leaves_room_for_grpcio_health_and_reflection() -> None:
    script = (
        "import muxs, muxs.cli\n"
        "from grpc_health.v1 import health_pb2\n"
        "from grpc_reflection.v1alpha import reflection_pb2\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
