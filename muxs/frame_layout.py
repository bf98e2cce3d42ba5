"""HTTP/2's frame header (RFC 9113, section 4.1) and the flags both sides read in it: the
server's flood budgets (``muxs.server.budgets``) and the frames ``muxs._internals`` writes and
reads without h2."""

from __future__ import annotations

import struct

#: A frame header: its length (a 16-bit high part, then its low byte), type, flags and stream
#: id (with the reserved bit, which a reader masks off).
FRAME_HEADER = struct.Struct(">HBBBL")
#: END_STREAM on DATA and HEADERS; ACK on SETTINGS and PING.
END_STREAM = ACK = 0x1
PADDED = 0x8
