"""Received DATA frames: their debug text is as hyperframe wrote it, built from its head only."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, Frame

import muxs.api  # noqa: F401  (applies muxs.frames)


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 16384])
@pytest.mark.parametrize("pad_length", [None, 0, 1, 3, 20])
def test_the_text_is_hyperframes(size: int, pad_length: int | None) -> None:
    frame = DataFrame(1, (bytes(range(256)) * 64)[:size])
    if pad_length is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad_length
    assert frame._body_repr() == Frame._body_repr(frame)  # hyperframe's generic: the whole body
    assert repr(frame).startswith("DataFrame(stream_id=1")


def test_the_body_is_not_serialized_to_build_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = DataFrame(1, b"x" * 16384)

    def refuse() -> bytes:
        raise AssertionError("the whole body was serialized")

    monkeypatch.setattr(frame, "serialize_body", refuse)
    assert frame._body_repr() == "<hex:78787878787878787878...>"
