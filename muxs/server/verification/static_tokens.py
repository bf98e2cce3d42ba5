"""Static API tokens: a TOML file of SHA-256 digests (it holds no secret), checked in constant time.

[[token]]
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
subject = "ci"
scopes = ["greeter", "files:read"]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import tomllib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxs.auth.identity import Identity
from muxs.auth.scopes import SCOPES
from muxs.errors import ConfigError

TOKEN_PREFIX = "muxs_"
OPTION = "auth_tokens"


def digest(token: str) -> str:
    """The lowercase hex SHA-256 of ``token``, as the tokens file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(subject: str, scopes: Iterable[str]) -> tuple[str, str]:
    """A fresh random token and the ``[[token]]`` entry that grants it ``scopes``."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = "\n".join(
        [
            "[[token]]",
            f'sha256 = "{digest(token)}"',
            f"subject = {json.dumps(subject)}",
            f"scopes = {json.dumps(list(scopes))}",
        ]
    )
    return token, entry


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    identity: Identity


class StaticTokens:
    """The tokens of one file; ``verify`` finds a token's identity without early exit."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def load(cls, path: Path, known_scopes: Collection[str] = SCOPES) -> StaticTokens:
        """Read and check the file (a scope not in ``known_scopes``, muxs's and the hosted
        services', is an error); any problem is a ``ConfigError`` naming the entry."""
        try:
            with path.open("rb") as file:
                document = tomllib.load(file)
        except OSError as exc:
            raise ConfigError(OPTION, f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(OPTION, f"{path} is not valid TOML: {exc}") from None
        unknown = set(document) - {"token"}
        if unknown:
            raise ConfigError(OPTION, f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        tables = document.get("token", [])
        if not isinstance(tables, list) or not tables:
            raise ConfigError(OPTION, f"{path} has no [[token]] entry")
        entries = []
        for number, table in enumerate(tables, 1):
            try:
                entries.append(_parse_entry(table, known_scopes))
            except ValueError as exc:
                raise ConfigError(OPTION, f"{path}: token {number}: {exc}") from None
        return cls(entries)

    def verify(self, token: str) -> Identity | None:
        """The identity ``token`` grants, or None if it is not one of these tokens."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, presented):
                found = entry.identity
        return found


def _parse_entry(table: Any, known_scopes: Collection[str]) -> _Entry:
    if not isinstance(table, dict):
        raise ValueError("is not a table")
    unknown = set(table) - {"sha256", "subject", "scopes"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    hexdigest = table.get("sha256")
    if (
        not isinstance(hexdigest, str)
        or len(hexdigest) != 64
        or not set(hexdigest) <= set(string.hexdigits)
    ):
        raise ValueError("sha256 must be the 64-digit hex SHA-256 of the token")
    subject = table.get("subject")
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject must be a non-empty string")
    scopes = table.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise ValueError("scopes must be a list of strings")
    unknown_scopes = set(scopes) - set(known_scopes)
    if unknown_scopes:
        raise ValueError(
            f"unknown scope(s) {', '.join(sorted(unknown_scopes))} "
            f"(known: {', '.join(known_scopes)})"
        )
    return _Entry(bytes.fromhex(hexdigest), Identity(subject=subject, scopes=frozenset(scopes)))
