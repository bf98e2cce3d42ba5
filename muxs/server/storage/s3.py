"""The S3 backend: files as objects of an S3-compatible bucket, through obstore.

A name goes through the same name rules as on a disk (``muxs.server.storage.names``) and
becomes the key ``prefix + a/b/c``. What differs from a disk (the README says it too):

- There are no symlinks, FIFOs or devices; a "directory" is a prefix that some key has
  (it exists while a file is under it, its size and mtime are 0), and a key may be a file
  and a directory's prefix at once. ``create_dirs`` off refuses a write whose parent prefix
  holds no file.
- A file's mtime is its upload time.
- A write is invisible until it is complete: WriteStream is a multipart upload holding at
  most ``s3_parts_in_flight`` parts of ``s3_part_bytes`` in flight, plus the part being
  filled and one handed over; it is completed only by ``commit`` and aborted otherwise
  (no object, no multipart upload left). A file smaller than a part is one PUT.
- Stat is a HEAD (then a one-key listing for a directory); List a delimiter listing; Read
  a streamed GET. Delete is a HEAD then a DELETE: NOT_FOUND when the HEAD finds no object,
  though two Deletes of one file at once may both succeed (S3's DELETE is idempotent).
- Anything the store answers unexpectedly (it cannot be reached, refuses the credentials,
  the bucket is missing) is ``Unavailable``; the detail is logged, never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import (
    BaseError,
    InvalidPathError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from muxs.server.storage.interface import (
    Entry,
    Forbidden,
    InvalidName,
    NotFound,
    Unavailable,
    WrongKind,
)
from muxs.server.storage.names import (
    TEMP_PREFIX,
    names_directory,
    parse_file_name,
    parse_name,
    refuse_file_for_directory,
    refuse_reserved,
    refuse_too_deep,
    shown,
)
from muxs.server.storage.s3_location import S3Location
from muxs.threads import run_blocking

if TYPE_CHECKING:
    from obstore import GetResult
    from obstore.store import ClientConfig, S3Config

    from muxs.server.settings import ServerSettings

log = logging.getLogger(__name__)

#: S3's longest key, in bytes.
MAX_KEY_BYTES = 1024
#: Entries a List reply is built from at a time.
LIST_BATCH = 256
#: How long a request may be retried, and how often, before the call is UNAVAILABLE.
RETRY_SECONDS = 15
MAX_RETRIES = 3
CONNECT_SECONDS = 5
_NOT_FOUND = (NotFoundError, FileNotFoundError)
_REFUSED = (PermissionDeniedError, UnauthenticatedError)


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """Turn the store's failures into ``Unavailable`` (logged: a client cannot fix them)."""
    try:
        yield
    except (InvalidPathError, ValueError):  # obstore refuses a key it cannot parse
        raise InvalidName(f"{shown(what)} is not a valid S3 key", about_name=True) from None
    except _REFUSED as exc:
        log.warning("S3 refused the credentials for %s: %s", shown(what), exc)
        raise Unavailable("the server's storage refused its credentials") from None
    except (BaseError, OSError) as exc:
        if isinstance(exc, _NOT_FOUND):
            raise
        log.warning("S3 call for %s failed: %s", shown(what), exc)
        raise Unavailable("the server's storage cannot be reached; retry later") from None


def _entry(meta: obstore.ObjectMeta) -> Entry:
    return Entry(size=meta["size"], mtime=meta["last_modified"].timestamp(), is_dir=False)


DIRECTORY = Entry(size=0, mtime=0.0, is_dir=True)


class S3Reader:
    """An object's bytes, streamed as they arrive (a chunk or two in memory at once)."""

    def __init__(self, result: GetResult) -> None:
        self._result = result
        self.size = result.meta["size"]
        self.mtime = result.meta["last_modified"].timestamp()
        self._name = result.meta["path"]

    async def read(self, limit: int) -> bytes:
        data = bytearray()
        pieces = self.chunks(limit, lambda: None)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                data += piece
                if len(data) >= limit:
                    break
        return bytes(data[:limit])

    async def chunks(
        self, size: int, sendable: Callable[[], int | None]
    ) -> AsyncGenerator[bytes, None]:
        """Pieces as they arrive, cut to ``size`` (``sendable`` is not needed: nothing is
        read ahead of what is sent)."""
        pending = b""
        with _store_errors(self._name):
            async for piece in self._result.stream(min_chunk_size=size):
                data = pending + piece if pending else piece
                start = 0
                while len(data) - start >= size:
                    yield data[start : start + size]
                    start += size
                pending = data[start:]
        if pending:
            yield pending

    async def aclose(self) -> None:
        """Nothing to do: the response is dropped with the reader."""


class UploadAborted(Exception):
    """Raised into the upload's part stream: obstore aborts the multipart upload."""


#: Uploads being aborted after their caller left (kept from garbage collection).
_finishing: set[asyncio.Task[object]] = set()


def _finished(upload: asyncio.Task[object]) -> None:
    _finishing.discard(upload)
    if not upload.cancelled():
        upload.exception()  # retrieved: an aborted upload's error is expected


class S3Replacement:
    """A new version of an object: one PUT if it fits in a part, else a multipart upload
    fed part by part, completed by ``commit``, aborted by ``aclose`` without one."""

    def __init__(self, bucket: S3Bucket, key: str) -> None:
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._parts: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._upload: asyncio.Task[object] | None = None
        self._aborted = False
        self._done = False
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self._bucket.part_bytes:
            part, self._buffer = bytes(self._buffer), bytearray()
            await self._send(part)

    async def commit(self) -> None:
        rest, self._buffer = bytes(self._buffer), bytearray()
        await run_blocking(self._hash.update, rest)
        with _store_errors(self._key):
            if self._upload is None:
                await obstore.put_async(self._bucket.store, self._key, rest, use_multipart=False)
            else:
                await self._hand_over(rest)
                await self._hand_over(None)
                await self._upload
        self._done = True

    async def aclose(self) -> None:
        upload = self._upload
        if self._done or upload is None:
            return
        self._aborted = True
        if self._parts.empty():
            self._parts.put_nowait(None)  # wake the part stream: it sees the abort
        _finishing.add(upload)
        upload.add_done_callback(_finished)
        with contextlib.suppress(Exception):
            await asyncio.shield(upload)

    async def _send(self, part: bytes) -> None:
        await run_blocking(self._hash.update, part)
        if self._upload is None:
            self._upload = asyncio.ensure_future(
                obstore.put_async(
                    self._bucket.store,
                    self._key,
                    self._part_stream(),
                    chunk_size=self._bucket.part_bytes,
                    max_concurrency=self._bucket.parts_in_flight,
                )
            )
        with _store_errors(self._key):
            await self._hand_over(part)

    async def _hand_over(self, part: bytes | None) -> None:
        """Queue ``part`` (None: the end) for the upload, unless the upload failed first."""
        assert self._upload is not None
        put = asyncio.ensure_future(self._parts.put(part))
        try:
            await asyncio.wait({put, self._upload}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
        if not put.done() or put.cancelled():
            await self._upload  # it failed: raise its error

    async def _part_stream(self) -> AsyncIterator[bytes]:
        while True:
            part = await self._parts.get()
            if self._aborted:
                raise UploadAborted
            if part is None:
                return
            yield part


class S3Bucket:
    """The ``FileStore`` of an S3 bucket (and prefix)."""

    def __init__(self, settings: ServerSettings) -> None:
        assert settings.storage is not None
        self.location = S3Location.parse(settings.storage)
        self.part_bytes = settings.s3_part_bytes
        self.parts_in_flight = settings.s3_parts_in_flight
        config: S3Config = {}
        if settings.s3_region is not None:
            config["region"] = settings.s3_region
        if settings.s3_endpoint is not None:
            config["endpoint"] = settings.s3_endpoint
        if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
            config["access_key_id"] = settings.s3_access_key_id
            config["secret_access_key"] = settings.s3_secret_access_key
        client: ClientConfig = {
            "allow_http": (settings.s3_endpoint or "").startswith("http:"),
            "connect_timeout": timedelta(seconds=CONNECT_SECONDS),
        }
        self.store = S3Store(
            self.location.bucket,
            config=config,
            client_options=client,
            retry_config={
                "max_retries": MAX_RETRIES,
                "retry_timeout": timedelta(seconds=RETRY_SECONDS),
            },
        )

    @property
    def description(self) -> str:
        return str(self.location)

    async def open_reader(self, name: str) -> S3Reader:
        key = self._file_key(name)
        try:
            with _store_errors(name):
                return S3Reader(await obstore.get_async(self.store, key))
        except _NOT_FOUND:
            await self._refuse_missing(name, key)
            raise

    async def open_replacement(self, name: str, *, create_dirs: bool) -> S3Replacement:
        key = self._file_key(name)
        await self._check_writable(name, key, create_dirs=create_dirs)
        return S3Replacement(self, key)

    async def write_bytes(self, name: str, data: bytes, *, create_dirs: bool) -> str:
        key = self._file_key(name)
        await self._check_writable(name, key, create_dirs=create_dirs)
        sha256 = await run_blocking(lambda: hashlib.sha256(data).hexdigest())
        with _store_errors(name):
            await obstore.put_async(self.store, key, data, use_multipart=False)
        return sha256

    async def stat(self, name: str) -> Entry:
        parts = parse_name(name)
        if not parts:
            return DIRECTORY
        key = self._key(name, parts)
        if names_directory(name) and await self._is_dir(name, key):
            return DIRECTORY
        try:
            with _store_errors(name):
                found = _entry(await obstore.head_async(self.store, key))
        except _NOT_FOUND:
            if not names_directory(name) and await self._is_dir(name, key):
                return DIRECTORY
            raise NotFound(f"{shown(name)} does not exist") from None
        if names_directory(name):
            refuse_file_for_directory(name)
        return found

    async def list_dir(self, name: str) -> AsyncGenerator[list[tuple[str, Entry]], None]:
        parts = parse_name(name)
        key = self._key(name, parts) if parts else self.location.prefix.rstrip("/")
        with _store_errors(name):
            found = await obstore.list_with_delimiter_async(self.store, key or None)
        if parts and not found["objects"] and not found["common_prefixes"]:
            await self.stat(name)  # NOT_FOUND, or a file: refused below
            raise WrongKind(f"{shown(name)} is a file, not a directory")
        entries = [(prefix.rsplit("/", 1)[-1], DIRECTORY) for prefix in found["common_prefixes"]]
        entries += [(meta["path"].rsplit("/", 1)[-1], _entry(meta)) for meta in found["objects"]]
        entries = [entry for entry in entries if not entry[0].startswith(TEMP_PREFIX)]
        for start in range(0, len(entries), LIST_BATCH):
            yield entries[start : start + LIST_BATCH]

    async def delete(self, name: str) -> None:
        key = self._file_key(name)
        try:
            with _store_errors(name):
                await obstore.head_async(self.store, key)
        except _NOT_FOUND:
            await self._refuse_missing(name, key)
            raise
        with _store_errors(name):
            await obstore.delete_async(self.store, key)

    async def writable(self) -> bool:
        probe = f"{self.location.prefix}{TEMP_PREFIX}health-{secrets.token_hex(4)}"
        try:
            await obstore.put_async(self.store, probe, b"", use_multipart=False)
            await obstore.delete_async(self.store, probe)
        except (BaseError, OSError) as exc:
            log.debug("%s is not writable: %s", self.location, exc)
            return False
        return True

    async def aclose(self) -> None:
        """Nothing to do: obstore's connections close with the store."""

    def _key(self, name: str, parts: list[str]) -> str:
        refuse_reserved(parts[-1])
        refuse_too_deep(name, len(parts) - 1)
        key = self.location.prefix + "/".join(parts)
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise InvalidName(
                f"{shown(name)} is longer than an S3 key may be ({MAX_KEY_BYTES} bytes with the "
                "server's prefix)",
                about_name=True,
            )
        return key

    def _file_key(self, name: str) -> str:
        """The key of a file's name (the root is a directory, not a file)."""
        parts = parse_file_name(name)
        if not parts:
            raise Forbidden(f"{shown(name)} is a directory, not a file")
        return self._key(name, parts)

    async def _is_dir(self, name: str, key: str) -> bool:
        """Whether some key lies below ``key/``."""
        with _store_errors(name):
            async for batch in obstore.list(self.store, key, chunk_size=1):
                return bool(batch)
        return False

    async def _refuse_missing(self, name: str, key: str) -> None:
        """Refuse a file name with no object: a directory's, or nothing's."""
        if await self._is_dir(name, key):
            raise Forbidden(f"{shown(name)} is a directory, not a file")
        raise NotFound(f"{shown(name)} does not exist")

    async def _check_writable(self, name: str, key: str, *, create_dirs: bool) -> None:
        """Refuse to write a directory's name, or (``create_dirs`` off) below a missing one."""
        if await self._is_dir(name, key):
            raise Forbidden(f"{shown(name)} is a directory, not a file")
        parent = key.rpartition("/")[0]
        if (
            not create_dirs
            and len(parent) >= len(self.location.prefix)
            and parent
            and not await self._is_dir(name, parent)
        ):
            raise NotFound(f"a parent directory of {shown(name)} does not exist")
