"""``python -m bench.turn_cost``: what one turn's feed costs h2, for ``TURN_BYTES``'s weights.

A turn feeds a connection's backlog up to ``TURN_BYTES`` of work
(``muxs.server.budgets.FrameScanner.take_turn``): control frames count every byte, an
upload's DATA payload a ``DATA_BYTES_PER_WORK``th. This times h2 receiving a turn of each as
the server feeds it (``muxs._internals.receive_data_directly``, which takes DATA frames on
open streams past h2's frame objects), in-process, best of 15: a turn of DATA should cost no
more than a turn of control frames.
"""

from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.events
import hpack
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, SettingsFrame

from muxs._internals import receive_data_directly
from muxs.server.budgets import DATA_BYTES_PER_WORK, DATA_FRAME_WORK, PREFACE
from muxs.server.limits import TURN_BYTES

_REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/muxs.FileController/WriteStream"),
    (":authority", "bench"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def _serving() -> h2.connection.H2Connection:
    """A server connection with stream 1 open and windows that never close."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    connection.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    connection.increment_flow_control_window(2**31 - 1 - 65535)
    headers = HeadersFrame(1, hpack.Encoder().encode(_REQUEST), flags=["END_HEADERS"])
    acked = SettingsFrame(0, flags=["ACK"])
    connection.receive_data(PREFACE + SettingsFrame(0).serialize() + acked.serialize())
    connection.receive_data(headers.serialize())
    connection.data_to_send()
    return connection


def _milliseconds(piece: bytes) -> float:
    """h2 receiving ``piece`` as the server feeds it (and each DATA frame acknowledged, as
    grpclib does), best of 15."""
    best = float("inf")
    for _ in range(15):
        connection = _serving()
        began = time.perf_counter()
        for event in receive_data_directly(connection, piece):
            if isinstance(event, h2.events.DataReceived):
                connection.acknowledge_received_data(event.flow_controlled_length, 1)
        connection.data_to_send()
        best = min(best, time.perf_counter() - began)
    return best * 1000


def main() -> None:
    ping = PingFrame(0, b"12345678").serialize()
    pings = ping * (TURN_BYTES // len(ping))
    frame = DataFrame(1, b"x" * 16384).serialize()
    uploads = frame * (TURN_BYTES // (DATA_FRAME_WORK + 16384 // DATA_BYTES_PER_WORK))
    print(f"a turn of PINGs ({len(pings):,} bytes): {_milliseconds(pings):.2f} ms")
    print(f"a turn of 16 KiB DATA frames ({len(uploads):,} bytes): {_milliseconds(uploads):.2f} ms")


if __name__ == "__main__":
    main()
