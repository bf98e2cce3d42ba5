"""An OpenTelemetry SDK whose spans stay in memory, for the tracing tests (nothing is exported)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


class Spans:
    """A ``TracerProvider`` (``.provider``) and the spans it has ended."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def ended(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def one(self, kind: SpanKind) -> ReadableSpan:
        """The one ended span of ``kind`` (AssertionError if there are several or none)."""
        (span,) = [s for s in self.ended() if s.kind is kind]
        return span


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    """Whether ``child`` is a direct child of ``parent``, in the same trace."""
    assert child.parent is not None
    assert child.context is not None
    assert parent.context is not None
    same_trace: bool = child.context.trace_id == parent.context.trace_id
    return same_trace and child.parent.span_id == parent.context.span_id
