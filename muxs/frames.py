"""A fix to the cost of receiving HTTP/2 DATA frames (hyperframe 6, h2 4).

h2 logs every frame it receives with ``logger.trace("Received frame: %s", repr(frame))``:
the ``repr`` is built even though nothing logs it, and for a DATA frame hyperframe builds
it by copying the whole body and hex-encoding all of it, only to keep the first 10 bytes.
That was a fifth of a WriteStream's server time (docs/PERFORMANCE.md, "File streaming").
Here a DATA frame's ``repr`` hex-encodes just the bytes it shows; the text is unchanged.
Imported by ``muxs.api``, so it applies wherever muxs is used.
"""

from __future__ import annotations

from hyperframe import frame

_SHOWN = 11  # _raw_data_repr shows 10 bytes and "..." when there are more


def _data_body_repr(self: frame.DataFrame) -> str:
    """hyperframe's text for the body (padding length, data, padding), from its head only."""
    if "PADDED" in self.flags:
        head = self.serialize_padding_data() + bytes(self.data[:_SHOWN])
        head = (head + b"\0" * min(self.pad_length, _SHOWN))[:_SHOWN]
    else:
        head = self.data[:_SHOWN]
    return frame._raw_data_repr(bytes(head))


frame.DataFrame._body_repr = _data_body_repr  # type: ignore[method-assign,assignment]
