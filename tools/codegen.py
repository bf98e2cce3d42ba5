"""Regenerate ``generated/`` from ``proto/``, or check that it is fresh.

``python -m tools.codegen`` (from the repository's root) rewrites ``generated/muxs_api`` with
betterproto2's protoc plugin (messages, async grpclib client stubs and server bases, and
``py.typed`` so that type checkers read the package where it is installed) and writes the
descriptor set that the reflection service serves. ``python -m tools.codegen --check`` exits 1
when the committed output is stale. Needs the ``codegen`` extra (betterproto2-compiler,
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
#: betterproto2-compiler's options: async grpclib client stubs (muxs.SyncClient is muxs's
#: own, so no grpcio stubs) and async grpclib server bases.
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"


def generate(out_root: Path) -> Path:
    """Write the generated package under ``out_root`` and return its directory."""
    package_dir = out_root / PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("*.proto"))
    env = dict(os.environ)
    # protoc finds betterproto2's plugin, and the plugin finds ruff, on PATH: both live
    # beside this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_betterproto2_out={package_dir}",
            f"--python_betterproto2_opt={PLUGIN_OPTIONS}",
            f"--descriptor_set_out={package_dir / DESCRIPTOR_SET}",
            "--include_imports",
            *protos,
        ],
        cwd=PROTO_DIR,
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
    """Regenerate into a temporary directory and list what differs from generated/."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return stale_files(GENERATED_DIR / PACKAGE, fresh)


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
                "generated/ is stale against proto/ (run `python -m tools.codegen`): "
                + ", ".join(stale),
                file=sys.stderr,
            )
            return 1
        print("generated/ is fresh")
        return 0
    shutil.rmtree(GENERATED_DIR / PACKAGE, ignore_errors=True)
    generate(GENERATED_DIR)
    print(f"wrote {GENERATED_DIR / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
