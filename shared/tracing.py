"""W3C trace context (``traceparent``/``tracestate``) carried from a request to its events.

Propagation goes through the OpenTelemetry API. No SDK is installed, so nothing is recorded
here: each hop (a request, an applied event) continues the caller's trace id under a span id
of its own, and hands it on in the outbox row, the Kafka record headers and the database log, so
a tracing back end fed by the services' logs can follow one complaint through all three.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Iterator, Mapping

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_EMPTY = context.Context()
HEADERS = ("traceparent", "tracestate")


def _hop(parent: trace.SpanContext | None) -> trace.Span:
    """A span of this hop: the parent's trace under a new span id, or a new trace."""
    # A new trace id and span id from one read of the system's randomness (every request).
    drawn = int.from_bytes(secrets.token_bytes(24))
    span_id = (drawn & 0xFFFF_FFFF_FFFF_FFFF) or 1
    trace_id = parent.trace_id if parent is not None and parent.is_valid else (
        (drawn >> 64) or 1)
    flags = parent.trace_flags if parent is not None and parent.is_valid else (
        trace.TraceFlags(trace.TraceFlags.SAMPLED))
    state = parent.trace_state if parent is not None and parent.is_valid else None
    return trace.NonRecordingSpan(trace.SpanContext(
        trace_id=trace_id, span_id=span_id, is_remote=False,
        trace_flags=flags, trace_state=state))


@contextlib.contextmanager
def continued(carrier: Mapping[str, str] | None) -> Iterator[trace.SpanContext]:
    """Runs the block as a hop of the trace in ``carrier`` (a new trace when there is none)."""
    # Without a carrier there is no parent: an empty context, not the current one.
    parent = trace.get_current_span(
        _PROPAGATOR.extract(dict(carrier)) if carrier else _EMPTY).get_span_context()
    span = _hop(parent)
    token = context.attach(trace.set_span_in_context(span))
    try:
        yield span.get_span_context()
    finally:
        context.detach(token)


def current_carrier() -> dict[str, str] | None:
    """``traceparent`` (and ``tracestate``) of the hop running now; None outside any.

    What the W3C propagator's ``inject`` writes, formatted here without its setter and
    its look-ups: every complaint posted asks for it.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context == trace.INVALID_SPAN_CONTEXT:
        return None
    carrier = {"traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
                              f"{span_context.trace_flags:02x}"}
    if span_context.trace_state:
        carrier["tracestate"] = span_context.trace_state.to_header()
    return carrier


def kafka_headers(carrier: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    return [(name, carrier[name].encode()) for name in HEADERS if carrier and name in carrier]


def from_kafka_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in headers or ():
        if name in HEADERS and isinstance(value, bytes):
            carrier[name] = value.decode("latin-1")
    return carrier


def trace_id_hex(span_context: trace.SpanContext) -> str:
    return trace.format_trace_id(span_context.trace_id)
