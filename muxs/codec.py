"""The server's message codec: a request that is not a valid message is the client's error."""

from __future__ import annotations

import logging
from typing import Any

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

log = logging.getLogger(__name__)


class RequestCodec(ProtoCodec):
    """``ProtoCodec`` that answers undecodable requests (such as a ``string`` field that is
    not UTF-8) with INVALID_ARGUMENT instead of an internal error."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return super().decode(data, message_type)
        except Exception as exc:  # any failure to parse untrusted bytes is malformed input
            log.debug("undecodable %s request: %r", message_type.__name__, exc)
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"the request is not a valid {message_type.__name__} message "
                "(a string field must be UTF-8)",
            ) from None
