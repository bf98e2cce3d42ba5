"""grpcio peers: classic ``_pb2`` modules compiled from proto/ at test time."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from muxs.codegen import grpcio_stubs


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(muxs_pb2, muxs_pb2_grpc)`` as grpcio's own code generator writes them."""
    out = grpcio_stubs(tmp_path_factory.mktemp("grpcio_stubs"))
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
