"""grpcio's ``muxs_pb2``/``muxs_pb2_grpc``, compiled from proto/ at run time."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def load_stubs(directory: Path) -> tuple[ModuleType, ModuleType]:
    """``(muxs_pb2, muxs_pb2_grpc)`` from a directory ``tools.codegen.grpcio_stubs`` wrote."""
    sys.path.insert(0, str(directory))
    return importlib.import_module("muxs_pb2"), importlib.import_module("muxs_pb2_grpc")
