"""``muxs.encoding``: every message type decodes to what betterproto's own ``FromString``
makes (``Chunk``'s own encoding has its tests in test_encoding.py)."""

from typing import Any

import betterproto
import hypothesis
import pytest
from hypothesis import strategies as st

from muxs.api import Chunk
from muxs.encoding import MESSAGE_TYPES, blank
from tests.interop.test_message_properties import PROPERTY_SETTINGS, values


def state(message: betterproto.Message) -> list[tuple[str, Any]]:
    return sorted(object.__getattribute__(message, "__dict__").items())


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_a_blank_message_is_the_one_betterproto_makes(cls: type[betterproto.Message]) -> None:
    assert state(blank(cls)) == state(cls())


@pytest.mark.parametrize(
    "cls", [cls for cls in MESSAGE_TYPES if cls is not Chunk], ids=lambda cls: cls.__name__
)
@PROPERTY_SETTINGS
@hypothesis.given(data=st.data())
def test_from_string_reads_what_betterprotos_reads(
    cls: type[betterproto.Message], data: st.DataObject
) -> None:
    encoded = bytes(cls(**data.draw(values(cls))))
    ours, theirs = cls.FromString(encoded), cls().parse(encoded)
    assert repr(state(ours)) == repr(state(theirs))  # repr: NaN == NaN
    assert bytes(ours) == encoded
