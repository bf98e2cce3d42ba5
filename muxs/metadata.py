"""gRPC metadata in the SDK: what a call sends, checked before it goes, and what it received.

``MetadataLike`` is what the SDK takes (a mapping, or pairs when a key repeats): a key is
lowercase ``[0-9a-z_.-]``, not ``grpc-``-prefixed and not one HTTP/2 or gRPC reserves; a
key ending in ``-bin`` carries ``bytes`` (sent base64-encoded), any other key a ``str`` of
printable ASCII. ``checked`` refuses anything else with ``ConfigError`` before the call is
sent (grpclib would raise a bare ``ValueError`` from inside the call).

``Metadata`` is what a call received (its headers or trailers): read-only pairs in the
order they came, ``-bin`` values decoded to ``bytes``. ``CallInfo`` is the optional
out-parameter of every SDK method (``call_info=``) that receives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from muxs.errors import ConfigError, Metadata, StatusCode

__all__ = ["CallInfo", "Metadata", "MetadataLike", "MetadataValue", "checked", "merged"]

MetadataValue: TypeAlias = str | bytes
MetadataLike: TypeAlias = Mapping[str, MetadataValue] | Iterable[tuple[str, MetadataValue]]
Pairs: TypeAlias = list[tuple[str, MetadataValue]]

_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALUE = re.compile(r"[ -~]*")  # printable ASCII and space
_RESERVED = frozenset({"te", "content-type", "user-agent", "host", "connection"})


def _pairs(metadata: MetadataLike) -> Iterable[tuple[str, MetadataValue]]:
    return metadata.items() if isinstance(metadata, Mapping) else metadata


def checked(metadata: MetadataLike | None) -> Pairs:
    """``metadata`` as a list of pairs; ``ConfigError`` (option ``metadata``) if any is invalid."""
    if metadata is None:
        return []
    pairs: Pairs = []
    for pair in _pairs(metadata):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ConfigError("metadata", f"{pair!r} is not a (key, value) pair")
        key, value = pair
        _check(key, value)
        pairs.append((key, value))
    return pairs


def _check(key: str, value: object) -> None:
    if not _KEY.fullmatch(key):
        hint = " (keys are lowercase)" if _KEY.fullmatch(key.lower()) else ""
        raise ConfigError("metadata", f"key {key!r} is not made of 0-9 a-z _ . -{hint}")
    if key.startswith("grpc-") or key in _RESERVED:
        raise ConfigError("metadata", f"key {key!r} is reserved by gRPC or HTTP/2")
    if key.endswith("-bin"):
        if not isinstance(value, bytes):
            raise ConfigError("metadata", f"the value of {key!r} must be bytes (a -bin key)")
    elif not isinstance(value, str):
        raise ConfigError("metadata", f"the value of {key!r} must be str (bytes need a -bin key)")
    elif not _VALUE.fullmatch(value):
        raise ConfigError(
            "metadata",
            f"the value of {key!r} holds a character that is not printable ASCII "
            "(send text as a -bin key's UTF-8 bytes)",
        )


def merged(default: Pairs, call: Pairs) -> Pairs:
    """The client-wide ``default`` with ``call``'s pairs; a key the call gives replaces
    every default value of that key."""
    if not default:
        return call
    given = {key for key, _ in call}
    return [pair for pair in default if pair[0] not in given] + call


@dataclass
class CallInfo:
    """What a call received besides its replies; pass one as ``call_info=`` to any method.

    Filled as the call goes: ``headers`` once the server's initial metadata arrives,
    ``trailers`` and ``status`` when the call ends (with an error too; the ``RpcError``
    carries the same ``headers`` and ``trailers``). With a method that makes several calls
    (``download`` with ``progress``), it describes the one that moves the data.
    """

    headers: Metadata = field(default_factory=Metadata)
    trailers: Metadata = field(default_factory=Metadata)
    #: None until the call has ended.
    status: StatusCode | None = None
