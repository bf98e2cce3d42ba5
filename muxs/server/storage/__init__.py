"""FileController's file stores: the interface, the local root and the S3 backend.

- ``interface``: the ``FileStore`` protocol and the ``StorageError`` refusals.
- ``names``: the name rules every backend applies.
- ``root`` and ``local``: a confined local directory (the default).
- ``s3``: an S3-compatible bucket (the ``s3`` extra).
- ``auto``: the store the settings name.
"""

from muxs.server.storage.auto import open_store
from muxs.server.storage.interface import (
    Changed,
    Entry,
    Exhausted,
    FileStore,
    Forbidden,
    InvalidName,
    NotFound,
    Reader,
    Replacement,
    StorageError,
    Unavailable,
    WrongKind,
)
from muxs.server.storage.local import LocalRoot
from muxs.server.storage.names import MAX_DEPTH, TEMP_PREFIX, parse_name, shown
from muxs.server.storage.root import SWEEP_SECONDS, AtomicFile, Root, Sweep

__all__ = [
    "MAX_DEPTH",
    "SWEEP_SECONDS",
    "TEMP_PREFIX",
    "AtomicFile",
    "Changed",
    "Entry",
    "Exhausted",
    "FileStore",
    "Forbidden",
    "InvalidName",
    "LocalRoot",
    "NotFound",
    "Reader",
    "Replacement",
    "Root",
    "StorageError",
    "Sweep",
    "Unavailable",
    "WrongKind",
    "open_store",
    "parse_name",
    "shown",
]
