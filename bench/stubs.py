"""grpcio's ``muxs_pb2``/``muxs_pb2_grpc``, compiled from proto/ at run time."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[1] / "proto"


def compile_stubs(out: Path) -> Path:
    """Write the grpcio modules for proto/muxs.proto into ``out``; return ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "muxs.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / 'muxs.proto'} (exit {code})")
    return out


def load_stubs(directory: Path) -> tuple[ModuleType, ModuleType]:
    """``(muxs_pb2, muxs_pb2_grpc)`` from a directory ``compile_stubs`` wrote."""
    sys.path.insert(0, str(directory))
    return importlib.import_module("muxs_pb2"), importlib.import_module("muxs_pb2_grpc")
