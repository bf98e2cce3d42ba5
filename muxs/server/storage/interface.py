"""What FileController needs of a file store, and the refusals a store raises.

A store is async and typed; it raises ``StorageError``s, never gRPC errors: the service maps
them to statuses in one place (``muxs.server.services.refusals``). The hierarchy::

    StorageError                a call the store refuses; the client can act on it
    ├── InvalidName             a malformed name                        INVALID_ARGUMENT
    ├── Forbidden               outside the root, a directory, a FIFO   PERMISSION_DENIED
    ├── NotFound                no such file (or parent directory)      NOT_FOUND
    ├── WrongKind               a file where a directory is needed      FAILED_PRECONDITION
    ├── Changed                 changed during the call; retry          ABORTED
    ├── Exhausted               storage full, no descriptor left        RESOURCE_EXHAUSTED
    └── Unavailable             storage read-only or unreachable        UNAVAILABLE

``about_name`` marks a refusal of the name itself (its path rules): the service names the
request field in a ``BadRequest``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """A call the store refuses, with a message for the client."""

    def __init__(self, message: str, *, about_name: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.about_name = about_name


class InvalidName(StorageError):
    """A name that breaks the name rules."""


class Forbidden(StorageError):
    """A name that leads outside the root, or to something that is not a regular file."""


class NotFound(StorageError):
    """No such file, or no such parent directory."""


class WrongKind(StorageError):
    """A file where a directory is needed (or the reverse, for a parent)."""


class Changed(StorageError):
    """What the call found changed while it ran; a retry may succeed."""


class Exhausted(StorageError):
    """The storage is full, or the server has no file descriptor left."""


class Unavailable(StorageError):
    """The storage is read-only or cannot be reached."""


@dataclass(frozen=True)
class Entry:
    """A regular file or a directory (whose size is 0)."""

    size: int
    mtime: float
    is_dir: bool


class Reader(Protocol):
    """A file opened for reading: its size and mtime when opened, and its bytes."""

    @property
    def size(self) -> int: ...

    @property
    def mtime(self) -> float: ...

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes from the current position."""
        ...

    def chunks(self, size: int, sendable: Callable[[], int | None]) -> AsyncIterator[bytes]:
        """The rest of the file in chunks of ``size`` bytes (the last may be shorter), read
        ahead no further than ``sendable()`` bytes (None: no limit) allow."""
        ...

    async def aclose(self) -> None: ...


class Replacement(Protocol):
    """A new version of a file: invisible until ``commit``; ``aclose`` without a commit
    aborts it (nothing of it stays)."""

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the bytes written so far."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the new content visible (and durable) under the name, whole."""
        ...

    async def aclose(self) -> None: ...


class FileStore(Protocol):
    """Files named by client names (``muxs.server.storage.names``), for FileController."""

    @property
    def description(self) -> str:
        """Where the files are, for logs (``root /srv/data``, ``s3://bucket/prefix``)."""
        ...

    async def open_reader(self, name: str) -> Reader: ...

    async def open_replacement(self, name: str, *, create_dirs: bool) -> Replacement: ...

    async def write_bytes(self, name: str, data: bytes, *, create_dirs: bool) -> str:
        """Replace ``name`` with ``data`` at once; return its SHA-256 (hex)."""
        ...

    async def stat(self, name: str) -> Entry:
        """A regular file or a directory (``.`` is the root)."""
        ...

    def list_dir(self, name: str) -> AsyncGenerator[list[tuple[str, Entry]], None]:
        """The entries of a directory (``.`` is the root), in batches."""
        ...

    async def delete(self, name: str) -> None: ...

    async def writable(self) -> bool:
        """Whether a new file can be written now (the FileController's health)."""
        ...

    async def aclose(self) -> None: ...
