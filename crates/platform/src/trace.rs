//! One trace per trade (DESIGN section 9): the W3C trace context that travels with a trade's
//! messages, in the outbox and in the Kafka records' `traceparent` header.
//!
//! A trade's trace id is its trade id (both are 128 bits), so an SRE who has a trade id has its
//! trace. Every span of the trade descends from one root that no process exports: the trade itself
//! ([`trade_root`]), whose span id is derived from the trade id too. Ingress starts each leg's span
//! under it; every relay and consumer continues the context it was handed. Nothing is done (no span
//! made, no header written) unless traces are exported ([`exported`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

pub const HEADER: &str = "traceparent";

static EXPORTED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (telemetry was set up with an OTLP endpoint).
pub fn exported() -> bool {
    EXPORTED.load(Ordering::Relaxed)
}

pub(crate) fn set_exported() {
    EXPORTED.store(true, Ordering::Relaxed);
}

/// The trade's root: a remote parent with the trade id as trace id.
pub fn trade_root(trade_id: Uuid) -> Context {
    let bytes = trade_id.into_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[8..]);
    // A span id is never all zeroes.
    span[0] |= 1;
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(bytes),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// The root span id of `trade_id`'s trace, as [`trade_root`] makes it (hex).
pub fn trade_root_span_id(trade_id: Uuid) -> String {
    trade_root(trade_id)
        .span()
        .span_context()
        .span_id()
        .to_string()
}

/// `span`'s W3C `traceparent`, when traces are exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !exported() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(HEADER)
}

/// Makes `span` a child of the context `traceparent` names (ignored when it does not parse).
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(HEADER.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of `trade_id`'s root.
pub fn within_trade(span: &tracing::Span, trade_id: Uuid) {
    let _ = span.set_parent(trade_root(trade_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trades_trace_id_is_its_trade_id() {
        let trade = Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let root = trade_root(trade);
        let context = root.span().span_context().clone();
        assert_eq!(context.trace_id().to_string(), trade.simple().to_string());
        assert!(context.is_valid() && context.is_remote() && context.is_sampled());
        assert_eq!(trade_root_span_id(trade), context.span_id().to_string());
        assert_ne!(
            trade_root_span_id(trade),
            trade_root_span_id(Uuid::new_v4()),
            "each trade has its own root"
        );
    }
}
