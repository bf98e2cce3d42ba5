"""The path-attack corpus every FileController call is tested with, by the SDK and by grpcio.

``plant`` lays out a root full of traps beside an ``outside`` directory holding a secret;
each ``Attack`` is a name and the status a call reading it must answer. ``expected``
gives the status per call: writes of a harmless name that does not exist yet succeed
(inside the root), and List takes "" as the root.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from muxs import StatusCode
from muxs.server.storage import TEMP_PREFIX

READS = ("Read", "ReadStream", "Stat", "Delete", "List")
WRITES = ("Write", "WriteStream")
CALLS = READS + WRITES

INVALID = StatusCode.INVALID_ARGUMENT
DENIED = StatusCode.PERMISSION_DENIED
MISSING = StatusCode.NOT_FOUND


@dataclass(frozen=True)
class Attack:
    id: str
    name: str
    status: StatusCode

    def expected(self, call: str) -> StatusCode | None:
        """The status ``call`` must answer with, or None for success."""
        if call in WRITES and self.status is MISSING:
            return None
        return self.status

    def expectations(self) -> dict[str, str]:
        """What each call must answer (a status name, or "OK"), reads before writes."""
        return {
            call: getattr(self.expected(call), "name", "OK")
            for call in CALLS
            if not (call == "List" and self.name == "")  # List("") lists the root
        }


CORPUS = [
    Attack("empty", "", INVALID),
    Attack("absolute", "/etc/passwd", INVALID),
    Attack("double-slash absolute", "//etc/passwd", INVALID),
    Attack("slash", "/", INVALID),
    Attack("NUL", "a\0b", INVALID),
    Attack("NUL after dotdot", "..\0/secret", INVALID),
    Attack("component over 255 bytes", "x" * 256, INVALID),
    Attack("component over 255 UTF-8 bytes", "é" * 128, INVALID),
    Attack("name over 4095 bytes", "a/" * 2100, INVALID),
    Attack("reserved temp name", f"{TEMP_PREFIX}0123", INVALID),
    Attack("symlink loop", "loop", INVALID),
    Attack("dotdot", "..", DENIED),
    Attack("dotdot slash", "../", DENIED),
    Attack("dotdot file", "../outside/secret", DENIED),
    Attack("dotdot doubled slashes", "..//outside//secret", DENIED),
    Attack("dot dotdot", "./../outside/secret", DENIED),
    Attack("down then up twice", "sub/../../outside/secret", DENIED),
    Attack("down dot up", "sub/./../../outside/secret", DENIED),
    Attack("up through root name", "../root/../outside/secret", DENIED),
    Attack("zigzag", "sub/../sub/../../outside/secret", DENIED),
    Attack("absolute symlink to file", "abs_file", DENIED),
    Attack("relative symlink to file", "rel_file", DENIED),
    Attack("absolute symlink as parent", "abs_dir/secret", DENIED),
    Attack("relative symlink as parent", "rel_dir/secret", DENIED),
    Attack("new file under escaping parent", "rel_dir/new", DENIED),
    Attack("symlink chain out", "chain", DENIED),
    Attack("symlink in, then out", "in_then_out", DENIED),
    Attack("symlink to root's parent", "up/outside/secret", DENIED),
    Attack("FIFO", "pipe", DENIED),
    Attack("character device", "null", DENIED),
    Attack("socket", "sock", DENIED),
    Attack("file as parent", "file/x", StatusCode.FAILED_PRECONDITION),
    Attack("three dots", ".../outside/secret", MISSING),
    Attack("percent-encoded dotdot", "%2e%2e/outside/secret", MISSING),
    Attack("backslash dotdot", "..\\outside\\secret", MISSING),
    Attack("fullwidth dotdot", "\uff0e\uff0e/outside/secret", MISSING),
    Attack("one-dot leader pair", "\u2025/outside/secret", MISSING),
    Attack("NFD spelling of an NFC name", "cafe\u0301.txt", MISSING),
]


def plant(root: Path) -> Path:
    """Lay out the traps in ``root``; return the ``outside`` directory next to it."""
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "sub").mkdir()
    (root / "file").write_text("a file")
    (root / "caf\u00e9.txt").write_text("NFC")
    (root / "loop").symlink_to("loop")
    (root / "abs_file").symlink_to(outside / "secret")
    (root / "rel_file").symlink_to("../outside/secret")
    (root / "abs_dir").symlink_to(outside)
    (root / "rel_dir").symlink_to("../outside")
    (root / "chain").symlink_to("chain2")
    (root / "chain2").symlink_to("sub/../../outside/secret")
    (root / "in_then_out").symlink_to("sub/../rel_file")
    (root / "up").symlink_to("..")
    os.mkfifo(root / "pipe")
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as sock:
        cwd = os.getcwd()
        os.chdir(root)  # AF_UNIX paths are short: bind relative to the root
        try:
            sock.bind("sock")
        finally:
            os.chdir(cwd)
    return outside


def snapshot(top: Path) -> dict[str, bytes | str]:
    """Every entry below ``top`` (symlinks not followed): content, link target or kind."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(top):
        for entry in dirs + files:
            path = Path(dirpath, entry)
            key = str(path.relative_to(top))
            if path.is_symlink():
                seen[key] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[key] = path.read_bytes()
            else:
                seen[key] = stat.filemode(path.lstat().st_mode)[0]
    return seen
