"""How a client command reports a failed call: the status line, then the details.

The first line is ``muxs COMMAND: STATUS: message``; each ``google.rpc`` detail the
server sent follows on its own indented line (which field was wrong, which limit was
hit, when to retry). Everything the server wrote is escaped before it reaches the
terminal, so a hostile server cannot move the cursor or hide text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from muxs.cli._logging import escaped
from muxs.errors import RpcError, StatusCode

DEADLINE_HINT = "  (the call's deadline ran out: --timeout SECONDS gives it longer; 0: none)"


def describe(command: str, error: RpcError) -> str:
    """The lines ``muxs COMMAND`` prints to stderr for ``error``."""
    lines = [f"muxs {command}: {escaped(str(error))}"]
    for detail in error.details:
        lines.extend("  " + escaped(line) for line in _detail_lines(detail, error.message))
    if error.status is StatusCode.DEADLINE_EXCEEDED:
        lines.append(DEADLINE_HINT)
    return "\n".join(lines)


def _detail_lines(detail: Any, message: str) -> Iterator[str]:
    """One line per fact of a ``google.rpc`` detail that the ``message`` does not already
    say; nothing for one muxs cannot show."""
    kind = type(detail).__name__
    if kind == "BadRequest":
        for violation in detail.field_violations:
            said = violation.description == message
            yield (
                f"field: {violation.field}"
                if said
                else f"{violation.field}: {violation.description}"
            )
    elif kind == "QuotaFailure":
        for violation in detail.violations:
            yield f"limit {violation.subject}: {violation.description}"
    elif kind == "PreconditionFailure":
        for violation in detail.violations:
            yield f"precondition {violation.type} {violation.subject}: {violation.description}"
    elif kind == "ErrorInfo":
        yield f"reason: {detail.reason}" + (f" ({detail.domain})" if detail.domain else "")
    elif kind == "RetryInfo":
        delay = detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9
        yield f"retry after {delay:g} s"
    elif kind == "ResourceInfo":
        yield f"resource {detail.resource_type} {detail.resource_name}: {detail.description}"
    elif kind == "Help":
        for link in detail.links:
            yield f"help: {link.description} {link.url}".replace("  ", " ")
    elif kind == "LocalizedMessage":
        yield detail.message
