"""grpcio peers: classic ``_pb2`` modules compiled from proto/ at test time."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(muxs_pb2, muxs_pb2_grpc)`` as grpcio's own code generator writes them."""
    out = tmp_path_factory.mktemp("grpcio_stubs")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "muxs.proto"),
        ]
    )
    assert code == 0
    sys.path.insert(0, str(out))
    try:
        modules: list[ModuleType] = [
            importlib.import_module("muxs_pb2"),
            importlib.import_module("muxs_pb2_grpc"),
        ]
        yield modules[0], modules[1]
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("muxs_pb2", None)
        sys.modules.pop("muxs_pb2_grpc", None)
