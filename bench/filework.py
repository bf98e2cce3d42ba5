"""The disk side of ReadStream/WriteStream for the benchmark's own servers.

Does what muxs does per byte (64 KiB reads; writes to a temp file, SHA-256, fsync, rename),
without its path confinement: these servers only ever see the benchmark's file names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 64 * 1024


def _path(root: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a plain file name")
    return root / name


def read_chunks(root: Path, name: str) -> Iterator[bytes]:
    """The bytes of ``root/name`` in chunks of at most ``CHUNK_BYTES``."""
    with _path(root, name).open("rb", buffering=0) as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


class Upload:
    """A file being replaced atomically: ``write`` each chunk, then ``finish``."""

    def __init__(self, root: Path, name: str) -> None:
        self._target = _path(root, name)
        self._temp = root / f".upload-{os.getpid()}-{id(self)}"
        self._file = self._temp.open("wb", buffering=0)
        self._sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha256.update(data)

    def finish(self) -> str:
        """Make the file durable and visible; return its SHA-256 (lowercase hex)."""
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self._target)
        return self._sha256.hexdigest()

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)
