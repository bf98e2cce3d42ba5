"""Regenerate ``generated/`` from ``proto/``, or check that it is fresh.

``python -m tools.codegen`` (from the repository's root) rewrites ``generated/muxs_api`` with
betterproto2's protoc plugin (messages, async grpclib client stubs and server bases, and
``py.typed`` so that type checkers read the package where it is installed) and writes the
descriptor set that the reflection service serves; and the same for the test suite's example of a
user's own service (``tests/example/orders.proto`` into ``tests/example/orders_api``, used by the
README's embedding example). ``python -m tools.codegen --check`` exits 1 when either committed
output is stale. Needs the ``codegen`` extra (betterproto2-compiler,
grpcio-tools, and ruff, which the compiler formats its output with: all pinned).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PROTO_DIR = PROJECT / "proto"
GENERATED_DIR = PROJECT / "generated"
PACKAGE = "muxs_api"
DESCRIPTOR_SET = "muxs.binpb"
EXAMPLE_DIR = PROJECT / "tests" / "example"
EXAMPLE_PACKAGE, EXAMPLE_DESCRIPTOR_SET = "orders_api", "orders.binpb"
#: What is generated: (proto directory, where the package goes, package, descriptor set).
TREES = (
    (PROTO_DIR, GENERATED_DIR, PACKAGE, DESCRIPTOR_SET),
    (EXAMPLE_DIR, EXAMPLE_DIR, EXAMPLE_PACKAGE, EXAMPLE_DESCRIPTOR_SET),
)
#: betterproto2-compiler's options: async grpclib client stubs (muxs.SyncClient is muxs's
#: own, so no grpcio stubs) and async grpclib server bases.
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"


def generate(
    out_root: Path,
    proto_dir: Path = PROTO_DIR,
    package: str = PACKAGE,
    descriptor_set: str = DESCRIPTOR_SET,
) -> Path:
    """Write the package generated from ``proto_dir`` under ``out_root``; return its directory."""
    package_dir = out_root / package
    package_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.glob("*.proto"))
    env = dict(os.environ)
    # protoc finds betterproto2's plugin, and the plugin finds ruff, on PATH: both live
    # beside this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_betterproto2_out={package_dir}",
            f"--python_betterproto2_opt={PLUGIN_OPTIONS}",
            f"--descriptor_set_out={package_dir / descriptor_set}",
            "--include_imports",
            *protos,
        ],
        cwd=proto_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # the plugin lists every file it writes on stderr: only errors
        raise SystemExit(f"protoc failed:\n{done.stderr}")
    return package_dir


def grpcio_stubs(out: Path) -> Path:
    """Write grpcio's classic ``muxs_pb2``/``muxs_pb2_grpc`` into ``out`` and return it (for
    the interop tests and the benchmark's grpcio servers; never committed)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "muxs.proto"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def _files(root: Path) -> set[Path]:
    return {
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def stale_files(committed: Path, fresh: Path) -> list[str]:
    """Names of files that differ between two generated trees (empty when equal)."""
    committed_files, fresh_files = _files(committed), _files(fresh)
    differing = committed_files ^ fresh_files
    differing |= {
        p
        for p in committed_files & fresh_files
        if not filecmp.cmp(committed / p, fresh / p, shallow=False)
    }
    return sorted(str(p) for p in differing)


def check() -> list[str]:
    """Regenerate into a temporary directory and list what differs from the committed trees."""
    stale = []
    for proto_dir, out_root, package, descriptor_set in TREES:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp), proto_dir, package, descriptor_set)
            stale += [f"{package}/{name}" for name in stale_files(out_root / package, fresh)]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.codegen", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if generated/ is stale against proto/"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        if stale:
            print(
                "generated code is stale against its proto (run `python -m tools.codegen`): "
                + ", ".join(stale),
                file=sys.stderr,
            )
            return 1
        print("generated code is fresh")
        return 0
    for proto_dir, out_root, package, descriptor_set in TREES:
        shutil.rmtree(out_root / package, ignore_errors=True)
        generate(out_root, proto_dir, package, descriptor_set)
        print(f"wrote {out_root / package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
