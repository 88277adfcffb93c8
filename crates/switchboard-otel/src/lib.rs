//! OTLP/HTTP export of Switchboard spans.
//!
//! [`OtlpSink`] wraps the sink spans and audit rows already go to (normally the store): it
//! forwards everything unchanged and additionally sends spans to an OpenTelemetry backend (a
//! collector, MLflow, Arize Phoenix, ...) over OTLP/HTTP, using the official `opentelemetry-otlp`
//! exporter. Spans keep their W3C trace and span ids and parent links, MLflow's
//! `mlflow.spanType`, the GenAI `gen_ai.*` attributes and the caller's email and role, under a
//! resource whose `service.name` is `OTEL_SERVICE_NAME` (default `switchboard`).
//!
//! Export is configured with the standard `OTEL_EXPORTER_OTLP_*` variables
//! ([`OtlpSink::from_env`], [`OtlpConfig::from_vars`]) and never slows the request path down:
//! spans are queued for a background worker and dropped from export (not from the store) when
//! the queue is full.

mod config;
mod convert;
mod sink;

pub use config::{OtlpConfig, OtlpProtocol};
pub use sink::OtlpSink;
