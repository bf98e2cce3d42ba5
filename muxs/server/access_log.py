"""Access logs: one INFO line per call on the ``muxs.access_log`` logger.

The line says which method, who called (peer, and the authenticated subject when there
is one), the status, how long it took and how many messages went each way. It never
contains metadata (so never a token) nor message contents (so never file contents).
The fields are also attached to the record as ``record.fields``, for the JSON format.
"""

from __future__ import annotations

import logging

from muxs.server.context import CallContext
from muxs.server.hooks import CallObserver

# Named, not __name__: operators filter on it (tests/server/test_access_log.py pins it).
log = logging.getLogger("muxs.access_log")


def access_fields(call: CallContext) -> dict[str, object]:
    """What the access log says about a finished call."""
    assert call.status is not None
    fields: dict[str, object] = {"method": call.path, "peer": call.peer}
    if call.subject is not None:
        fields["subject"] = call.subject
    fields.update(
        status=call.status.name,
        code=call.status.value,
        duration_ms=round(call.duration * 1000, 3),
        messages_in=call.received,
        messages_out=call.sent,
    )
    return fields


class AccessLog(CallObserver):
    """Logs every finished call.

    The record is made directly (``makeRecord`` and ``handle``, as ``Logger.info`` does
    after looking up its caller's source line, which an access log does not need): on every
    call, that is a third of a line's cost.
    """

    def finished(self, call: CallContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        fields = access_fields(call)
        subject = f" subject={call.subject}" if call.subject is not None else ""
        text = (
            f"method={fields['method']} peer={call.peer}{subject} status={fields['status']} "
            f"duration_ms={fields['duration_ms']} messages_in={call.received} "
            f"messages_out={call.sent}"
        )
        record = log.makeRecord(
            log.name, logging.INFO, __file__, 0, text, (), None, extra={"fields": fields}
        )
        log.handle(record)
