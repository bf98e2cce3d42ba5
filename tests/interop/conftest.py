"""Fixtures of the interop tests."""

from __future__ import annotations

import pytest

from muxs import compression
from muxs.server import limits


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The encoding of every request message the server inflates, in order."""
    seen: list[str] = []

    def counting(data: bytes, encoding: str, limit: int) -> bytes:
        seen.append(encoding)
        return compression.inflate(data, encoding, limit)

    monkeypatch.setattr(limits, "inflate", counting)
    return seen
