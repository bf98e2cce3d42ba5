"""The name rules every store applies to a client's name, the same on every backend.

Names are relative to the root and ``/``-separated; empty components and ``.`` are ignored,
except that a name ending in ``/`` (or ``/.``) names a directory, as in POSIX: a file's name
with one is refused (``parse_file_name``), and a call that takes a directory refuses it for a
file (``WrongKind``, POSIX's ENOTDIR) instead of taking the file. Absolute names, empty names,
NUL bytes, names over the OS limits and names whose last component starts with the reserved
temp prefix are refused (``InvalidName``), ``..`` that climbs above the root too
(``Forbidden``), and a name more than ``MAX_DEPTH`` directories deep (``Exhausted``: resolving
it on a disk holds a descriptor per directory).
"""

from __future__ import annotations

from typing import NoReturn

from muxs.server.storage.interface import Exhausted, Forbidden, InvalidName, WrongKind

TEMP_PREFIX = ".muxs-tmp-"
NAME_MAX = 255
PATH_MAX = 4095
#: How many directories deep a name may lead.
MAX_DEPTH = 256


def shown(name: str) -> str:
    """A client's name as it may appear in a message: never huge."""
    return name if len(name) <= 80 else name[:77] + "..."


def parse_name(name: str) -> list[str]:
    """Split a client's name into components below the root, refusing malformed names."""
    if not name:
        raise InvalidName("filename is empty", about_name=True)
    if "\0" in name:
        raise InvalidName("filename contains a NUL byte", about_name=True)
    if name.startswith("/"):
        raise InvalidName(
            f"{shown(name)} is absolute; names are relative to the server's root", about_name=True
        )
    if len(name.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise InvalidName(f"filename is longer than {PATH_MAX} bytes", about_name=True)
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise Forbidden(f"{shown(name)} leads outside the root", about_name=True)
            parts.pop()
            continue
        if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise InvalidName(
                f"a component of the filename is over {NAME_MAX} bytes", about_name=True
            )
        parts.append(part)
    return parts


def refuse_reserved(part: str) -> None:
    """Refuse a last component that names one of muxs's own temp files."""
    if part.startswith(TEMP_PREFIX):
        raise InvalidName(
            f"names starting with {TEMP_PREFIX!r} are reserved for muxs", about_name=True
        )


def refuse_too_deep(name: str, depth: int) -> None:
    """Refuse a name whose file lies more than ``MAX_DEPTH`` directories deep."""
    if depth > MAX_DEPTH:
        raise Exhausted(f"{shown(name)} is more than {MAX_DEPTH} directories deep")


def names_directory(name: str) -> bool:
    """Whether ``name`` ends in ``/`` (or ``/.``): then it names a directory, never a file."""
    return name.endswith(("/", "/."))


def parse_file_name(name: str) -> list[str]:
    """``parse_name`` for a name that must name a file: one ending in ``/`` is refused."""
    parts = parse_name(name)
    if names_directory(name):
        raise InvalidName(
            f"{shown(name)} ends in '/', which names a directory; a file's name does not",
            about_name=True,
        )
    return parts


def refuse_file_for_directory(name: str) -> NoReturn:
    """Refuse a file found where ``name`` (ending in ``/``) asks for a directory."""
    raise WrongKind(f"{shown(name)} ends in '/' but is a file, not a directory")
