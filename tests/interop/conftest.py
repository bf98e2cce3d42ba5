"""Fixtures of the interop tests."""

from __future__ import annotations

import pytest

from muxs import compression


@pytest.fixture
def compressed_replies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every reply message the server compressed, in order."""
    sizes: list[int] = []

    real = compression.frame

    def counting(body: bytes | memoryview, encoding: str) -> bytes:
        framed = real(body, encoding)
        if framed[0]:
            sizes.append(len(body))
        return framed

    monkeypatch.setattr(compression, "frame", counting)
    return sizes
