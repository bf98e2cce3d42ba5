"""Encoded sizes of the replies a handler must fit in one message before it builds them."""

from __future__ import annotations


def text_reply_length(text_bytes: int) -> int:
    """The encoded size of a reply whose one set field is a text of ``text_bytes`` in field 1
    (HelloReply's ``message``, Content's ``text``): the tag, the length (a varint), the text."""
    return 1 + max(1, (text_bytes.bit_length() + 6) // 7) + text_bytes
