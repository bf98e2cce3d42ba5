"""Listening on a Unix domain socket (``muxs serve --uds PATH``).

The socket file is created with the access ``uds_access`` allows (never wider, even for an
instant: the umask covers the bind), a stale one (left by a server that crashed: nothing
accepts on it) is replaced, and anything else at the path is refused: a regular file, or
the socket of a server that still runs. On a clean stop the file is removed, unless another
server has replaced it meanwhile.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: ``uds_access``: who may connect, as the socket file's mode.
ACCESS_MODES = {"owner": 0o600, "group": 0o660, "anyone": 0o666}


@dataclass(frozen=True)
class UnixListener:
    """A listening-ready socket bound to ``path``, and the file it made there."""

    sock: socket.socket
    path: Path
    _file: tuple[int, int]  # (st_dev, st_ino) of the socket file bound

    def remove(self) -> None:
        """Remove the socket file, if it is still the one bound (not a later server's)."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (now.st_dev, now.st_ino) == self._file:
            self.path.unlink(missing_ok=True)


def bind_unix(path: Path, access: str) -> UnixListener:
    """A stream socket bound to ``path`` with the mode of ``access``, ready to listen.

    Raises ``FileExistsError`` if the path is not a socket, or ``OSError`` (EADDRINUSE) if a
    server still accepts on it.
    """
    path = path.absolute()
    _replace_stale(path)
    mode = ACCESS_MODES[access]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{path}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(umask)
    made = os.lstat(path)
    return UnixListener(sock, path, (made.st_dev, made.st_ino))


def _replace_stale(path: Path) -> None:
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket: not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(5)
    try:
        probe.connect(os.fspath(path))
    except ConnectionRefusedError:  # nothing listens: a crashed server's
        path.unlink(missing_ok=True)
        log.info("replaced the stale socket %s (no server listened on it)", path)
        return
    except PermissionError:
        raise PermissionError(
            errno.EACCES, f"{path} is a socket this user may not connect to: not replacing it"
        ) from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is the socket of a server that is running")


def socket_path(sock: socket.socket) -> Path | None:
    """The absolute path a Unix socket is bound to; None for another socket (or an unnamed
    or abstract one)."""
    if sock.family != socket.AF_UNIX:
        return None
    name = sock.getsockname()
    return Path(name).absolute() if isinstance(name, str) and name else None


def describe_unix_peer(sock: socket.socket | None) -> str:
    """``unix:pid=…,uid=…`` of the process at the other end of ``sock`` (Linux's SO_PEERCRED),
    or ``unix`` where the kernel does not say."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return "unix"
    try:
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "unix"
    pid, uid, _ = struct.unpack("3i", credentials)
    return f"unix:pid={pid},uid={uid}"
