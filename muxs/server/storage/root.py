"""The local backend's root directory: confined path resolution and atomic, durable writes.

Every path a client names goes through ``Root``; nothing else in muxs touches the disk
on a client's behalf. The rules (documented in the README), beside the name rules of
``muxs.server.storage.names``:

- Any call that finds no file descriptor left (EMFILE, ENFILE) is ``Exhausted``.
- A symlink that leads outside the root (an absolute target, or a relative one climbing
  above the root) is ``Forbidden``. Symlinks that stay inside the root are followed.
- The target must be a regular file (``stat`` and ``list_dir`` also take a directory,
  the root included): directories where a file is expected, FIFOs, sockets and devices
  are ``Forbidden``.
- Resolution is race-free: each component is opened relative to an already open
  directory descriptor with ``O_NOFOLLOW``, and symlinks are expanded by this code, not
  by the kernel, so a symlink swapped in mid-call cannot lead a call out of the root.
- A write goes to a temp file in the target's directory, is fsynced, renamed over the
  target and the directory is fsynced: readers see the old or the new file, never a mix.
- The writer holds an advisory lock (``flock``) on its temp file; the start-up sweep removes
  only temp files nobody holds, so a server starting beside another on one root (a second
  replica, a rolling restart) never removes a write in progress.

Methods block; ``muxs.server.storage.local`` runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import logging
import os
import re
import secrets
import stat
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from muxs.server.storage.interface import (
    Changed,
    Exhausted,
    Forbidden,
    InvalidName,
    NotFound,
    StorageError,
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

log = logging.getLogger(__name__)

_TEMP_TOKEN_BYTES = 8
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # the most buffers one writev takes
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + f"[0-9a-f]{{{2 * _TEMP_TOKEN_BYTES}}}")
MAX_SYMLINKS = 40
#: How long the start-up sweep for stale temp files may take at most.
SWEEP_SECONDS = 10.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: How many fresh temp names a writer tries when a sweep takes the one it just created.
_TEMP_ATTEMPTS = 3


def _require_regular(mode: int, name: str) -> None:
    if stat.S_ISDIR(mode):
        raise Forbidden(f"{shown(name)} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise Forbidden(f"{shown(name)} is not a regular file")


def _require_file(target: _Target, name: str) -> None:
    if target.mode is None:
        raise NotFound(f"{shown(name)} does not exist")
    _require_regular(target.mode, name)


def _require_file_or_dir(target: _Target, name: str) -> os.stat_result:
    if target.st is None:
        raise NotFound(f"{shown(name)} does not exist")
    if not stat.S_ISDIR(target.st.st_mode):
        _require_regular(target.st.st_mode, name)
    return target.st


def _refuse_if_changed(exc: OSError, name: str) -> None:
    """An entry checked a moment ago is gone or became a symlink: a concurrent change."""
    if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
        raise Changed(f"{shown(name)} changed during the call; retry")


@contextlib.contextmanager
def _os_errors(name: str) -> Iterator[None]:
    """Turn the OS errors a client can act on into statuses; the rest stay internal."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Exhausted("the server's storage is full") from None
        if exc.errno == errno.EROFS:
            raise Unavailable("the server's storage is read-only") from None
        if exc.errno == errno.EACCES:
            raise Forbidden(f"the server may not access {shown(name)}") from None
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise Exhausted("the server has no file descriptor left; retry later") from None
        raise


def _read_link(part: str, dir_fd: int, name: str) -> str | None:
    """The target of the symlink ``part``, or None if it is gone or no longer a symlink
    (changed since it was looked at: the caller looks again)."""
    with _os_errors(name):
        try:
            return os.readlink(part, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not a symlink
                raise
            return None


def _count_link(links: int, name: str) -> int:
    if links >= MAX_SYMLINKS:
        raise InvalidName(f"{shown(name)}: too many levels of symlinks", about_name=True)
    return links + 1


class _Target:
    """Where a name resolved to: an open directory and an entry in it, never a symlink.

    ``st`` is the entry's ``lstat`` (None if it does not exist). The entry ``.`` is the
    directory itself.
    """

    def __init__(self, dir_fd: int, entry: str, st: os.stat_result | None) -> None:
        self.dir_fd = dir_fd
        self.entry = entry
        self.st = st

    @property
    def mode(self) -> int | None:
        return self.st.st_mode if self.st is not None else None

    def open(self, name: str, flags: int) -> int:
        """The entry, opened with ``flags``; one that changed since it was resolved is
        ``Changed`` (``name`` is the client's, for the refusals)."""
        try:
            with _os_errors(name):
                return os.open(self.entry, flags, dir_fd=self.dir_fd)
        except OSError as exc:
            _refuse_if_changed(exc, name)
            raise

    def close(self) -> None:
        os.close(self.dir_fd)


def _create_locked_temp(dir_fd: int, mode: int) -> tuple[str, int]:
    """A new temp file in ``dir_fd``, locked for as long as it is open: (its name, its fd).

    A sweep may take a temp file between its creation and its lock (it holds the lock while
    it unlinks): then the lock is refused or the file has no link left, and a fresh name
    is tried.
    """
    for _ in range(_TEMP_ATTEMPTS):
        name = TEMP_PREFIX + secrets.token_hex(_TEMP_TOKEN_BYTES)
        fd = os.open(name, _CREATE_FLAGS, mode, dir_fd=dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink:
                return name, fd
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise Unavailable("the server could not create a temp file; retry")


def _remove_if_unused(name: str, dir_fd: int) -> bool:
    """Unlink the temp file ``name`` unless a writer holds its lock; whether it was."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, PermissionError):
        return False  # gone, or not ours to judge: left alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
    return True


def _write_all(fd: int, parts: tuple[bytes, ...]) -> None:
    """Write ``parts`` to ``fd`` in order, ``_IOV_MAX`` at a time, whatever each writev takes."""
    pending: list[bytes | memoryview] = list(parts)
    first = 0  # the first part not written in full
    while first < len(pending):
        written = os.writev(fd, pending[first : first + _IOV_MAX])
        while first < len(pending) and written >= len(pending[first]):
            written -= len(pending[first])
            first += 1
        if written:
            pending[first] = memoryview(pending[first])[written:]


class AtomicFile:
    """A new version of a file, written to a temp file and swapped in by ``commit``.

    Use as a context manager: leaving it without ``commit`` discards the temp file.
    """

    def __init__(self, target: _Target, name: str) -> None:
        self._target = target
        self._name = name
        mode = stat.S_IMODE(target.mode) if target.mode is not None else 0o644
        with _os_errors(name):
            self._temp, fd = _create_locked_temp(target.dir_fd, mode)
        self._fd: int | None = fd
        self.size = 0
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of everything written so far."""
        return self._hash.hexdigest()

    def write(self, *parts: bytes) -> None:
        """Append ``parts``, in order: one ``writev`` (per ``_IOV_MAX`` parts), then each
        part hashed. Not joined: a joined MiB is a fresh allocation whose pages the kernel
        faults in, which cost more than the GIL hand-offs of hashing part by part
        (docs/performance-history.md, "WriteStream, fifth pass")."""
        assert self._fd is not None
        with _os_errors(self._name):
            _write_all(self._fd, parts)
        for part in parts:
            self._hash.update(part)
            self.size += len(part)

    def commit(self) -> None:
        """Make the new content durable and visible under the target name."""
        assert self._fd is not None
        with _os_errors(self._name):
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            try:
                os.rename(
                    self._temp,
                    self._target.entry,
                    src_dir_fd=self._target.dir_fd,
                    dst_dir_fd=self._target.dir_fd,
                )
            except IsADirectoryError:
                raise Forbidden(f"{shown(self._name)} is a directory, not a file") from None
            self._temp = ""
            os.fsync(self._target.dir_fd)

    def close(self) -> None:
        """Discard the new content unless committed; release the target directory."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp, dir_fd=self._target.dir_fd)
            self._temp = ""
        self._target.close()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Listing:
    """The entries of an open directory, read in batches; close when done."""

    def __init__(self, root: Root, name: str, dir_fd: int) -> None:
        self._root = root
        self._name = name
        self._fd = dir_fd  # DirEntry.stat() uses it: open until close()
        try:
            self._scan = os.scandir(dir_fd)
        except BaseException:
            os.close(dir_fd)
            raise

    def take(self, count: int) -> list[tuple[str, os.stat_result]]:
        """Up to ``count`` more entries ``stat`` would describe, each as (name, stat)."""
        batch: list[tuple[str, os.stat_result]] = []
        for entry in self._scan:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    st = self._root.stat(f"{self._name}/{entry.name}")
            except (FileNotFoundError, StorageError):  # gone, or a link stat refuses
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                batch.append((entry.name, st))
                if len(batch) == count:
                    break
        return batch

    def close(self) -> None:
        self._scan.close()
        os.close(self._fd)


@dataclass
class Sweep:
    """What ``Root.remove_stale_temp_files`` did."""

    removed: int = 0
    #: Temp files left in place: a writer holds them (another server on the same root), or
    #: they could not be opened to check.
    kept: int = 0
    #: False when part of the root was not searched: the time ran out, or a directory
    #: could not be opened or read (no descriptor left, no permission).
    complete: bool = True


def _sweep_dir(fd: int, sweep: Sweep, deadline: float) -> list[str]:
    """Remove the unused temp files of the directory ``fd``; return its subdirectories."""
    subdirs = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if time.monotonic() >= deadline:
                    sweep.complete = False
                    break
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                elif _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    if _remove_if_unused(entry.name, fd):
                        sweep.removed += 1
                    else:
                        sweep.kept += 1
    except OSError as exc:
        log.warning("cannot search a directory for stale temp files: %s", exc.strerror)
        sweep.complete = False
    return subdirs


def _open_subdir(parent: int, name: str, sweep: Sweep) -> int | None:
    """The subdirectory ``name`` of ``parent`` (None if it is gone or cannot be opened)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        return None  # removed or replaced since it was listed
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # a symlink swapped in: not followed, not searched
            log.warning("cannot search a directory for stale temp files: %s", exc.strerror)
            sweep.complete = False
        return None


class Root:
    """A directory that confines every name a client gives."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path.resolve()
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._fd)

    def writable(self) -> bool:
        """Whether a new file can be created (and removed) in the root's path (the directory
        there now: one removed and made again counts)."""
        probe = self.path / f"{TEMP_PREFIX}health-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, _CREATE_FLAGS, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            log.debug("root %s is not writable: %s", self.path, exc)
            return False
        return True

    def remove_stale_temp_files(self, seconds: float = SWEEP_SECONDS) -> Sweep:
        """Delete temp files left by a muxs process that died mid-write, for at most
        ``seconds``.

        Only muxs's own: regular files named exactly as ``AtomicFile`` names them, that no
        writer holds (a server beside this one on the same root keeps its writes). The
        walk is a loop, not a recursion (a tree of any depth), opens each directory below
        its parent's descriptor without following symlinks, and keeps a parent's
        descriptor only while it has subdirectories left: a chain of directories costs
        two descriptors, however deep.
        """
        deadline = time.monotonic() + seconds
        sweep = Sweep()
        root = os.dup(self._fd)
        pending = [(root, _sweep_dir(root, sweep, deadline))]
        try:
            while pending and sweep.complete:
                parent, subdirs = pending[-1]
                if not subdirs:
                    os.close(pending.pop()[0])
                    continue
                if time.monotonic() >= deadline:
                    sweep.complete = False
                    break
                child = _open_subdir(parent, subdirs.pop(), sweep)
                if not subdirs:  # the last one: the parent is done with
                    os.close(pending.pop()[0])
                if child is not None:
                    pending.append((child, _sweep_dir(child, sweep, deadline)))
        finally:
            for fd, _ in pending:
                os.close(fd)
        return sweep

    def open_reader(self, name: str) -> io.BufferedReader:
        """A regular file, opened for reading; the caller closes it."""
        target = self._resolve(name, create_dirs=False)
        try:
            _require_file(target, name)
            fd = target.open(name, _READ_FLAGS)
        finally:
            target.close()
        file = os.fdopen(fd, "rb")
        try:
            _require_regular(os.fstat(fd).st_mode, name)
        except BaseException:
            file.close()
            raise
        return file

    def open_for_replace(self, name: str, *, create_dirs: bool = True) -> AtomicFile:
        """Start replacing ``name`` (creating parent directories if allowed); see ``AtomicFile``."""
        target = self._resolve(name, create_dirs=create_dirs)
        try:
            if target.mode is not None:
                _require_regular(target.mode, name)
            return AtomicFile(target, name)
        except BaseException:
            target.close()
            raise

    def write_bytes(self, name: str, data: bytes, *, create_dirs: bool = True) -> str:
        """Atomically and durably replace ``name`` with ``data``; return its SHA-256 (hex)."""
        with self.open_for_replace(name, create_dirs=create_dirs) as new:
            new.write(data)
            new.commit()
            return new.sha256

    def stat(self, name: str) -> os.stat_result:
        """What a regular file or a directory is (``.`` is the root)."""
        target = self._resolve(name, create_dirs=False, directory_ok=True)
        try:
            st = _require_file_or_dir(target, name)
        finally:
            target.close()
        if names_directory(name) and not stat.S_ISDIR(st.st_mode):
            refuse_file_for_directory(name)
        return st

    def list_dir(self, name: str) -> Listing:
        """The entries of a directory (``.`` is the root) that ``stat`` would describe.

        Symlinks are resolved as any name is; entries ``stat`` refuses (links leading out
        or nowhere, FIFOs, sockets, devices) and muxs's temp files are left out. The order
        is the directory's.
        """
        target = self._resolve(name, create_dirs=False, directory_ok=True)
        try:
            if not stat.S_ISDIR(_require_file_or_dir(target, name).st_mode):
                if names_directory(name):
                    refuse_file_for_directory(name)
                raise WrongKind(f"{shown(name)} is a file, not a directory")
            fd = target.open(name, _DIR_FLAGS)
        finally:
            target.close()
        with _os_errors(name):
            return Listing(self, name, fd)

    def delete(self, name: str) -> None:
        """Durably remove a regular file."""
        target = self._resolve(name, create_dirs=False)
        try:
            _require_file(target, name)
            with _os_errors(name):
                try:
                    os.unlink(target.entry, dir_fd=target.dir_fd)
                except FileNotFoundError:
                    raise NotFound(f"{shown(name)} does not exist") from None
                except IsADirectoryError:
                    raise Forbidden(f"{shown(name)} is a directory, not a file") from None
                os.fsync(target.dir_fd)
        finally:
            target.close()

    def _resolve(self, name: str, *, create_dirs: bool, directory_ok: bool = False) -> _Target:
        """Walk ``name`` from the root with directory descriptors, expanding symlinks.

        The entry of the returned target is not a symlink and, when it exists, its ``st``
        is set. A name that ends on a directory it walked through (the root, ``a/b/..``)
        is refused unless ``directory_ok``: then the entry is ``.``. The caller closes
        the target.
        """
        pending = deque(parse_name(name) if directory_ok else parse_file_name(name))
        with _os_errors(name):
            stack = [os.dup(self._fd)]
        links = 0
        try:
            while True:
                if not pending:
                    if not directory_ok:
                        raise Forbidden(f"{shown(name)} is a directory, not a file")
                    dir_fd = stack.pop()
                    return _Target(dir_fd, ".", os.fstat(dir_fd))
                part = pending.popleft()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) == 1:
                        raise Forbidden(f"{shown(name)} leads outside the root", about_name=True)
                    os.close(stack.pop())
                    continue
                dir_fd = stack[-1]
                with _os_errors(name):
                    try:
                        st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    links = _count_link(links, name)
                    link = _read_link(part, dir_fd, name)
                    if link is None:  # no longer a symlink since the stat: look again
                        pending.appendleft(part)
                        continue
                    if link.startswith("/"):
                        raise Forbidden(f"{shown(name)} leads outside the root", about_name=True)
                    pending.extendleft(reversed(link.split("/")))
                    continue
                if not any(p not in ("", ".") for p in pending):
                    refuse_reserved(part)
                    return _Target(stack.pop(), part, st)
                refuse_too_deep(name, len(stack))
                fd = self._open_dir(dir_fd, part, name, create=create_dirs and st is None)
                if fd is None:  # became a symlink since the stat: look again
                    links = _count_link(links, name)
                    pending.appendleft(part)
                    continue
                stack.append(fd)
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _open_dir(dir_fd: int, part: str, name: str, *, create: bool) -> int | None:
        """Open a directory below ``dir_fd`` without following a symlink (None if it is one)."""
        with _os_errors(name):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=dir_fd)
                    os.fsync(dir_fd)
            try:
                return os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                raise NotFound(f"a parent directory of {shown(name)} does not exist") from None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            try:
                if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    return None
            except FileNotFoundError:
                return None  # gone since the open: look again
            raise WrongKind(f"a parent of {shown(name)} is not a directory")
