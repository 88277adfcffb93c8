//! Exporter settings, read from the standard OpenTelemetry environment variables.

use std::fmt;
use std::time::Duration;
use switchboard_core::{Error, Result};

/// The OTLP/HTTP default per the specification.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `OTEL_BSP_MAX_QUEUE_SIZE` default.
const DEFAULT_QUEUE_CAPACITY: usize = 2048;
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` default.
const DEFAULT_MAX_BATCH: usize = 512;
/// `OTEL_BSP_SCHEDULE_DELAY` default.
const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(5);
/// The `service.name` used when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
const DEFAULT_SERVICE_NAME: &str = "switchboard";

/// The OTLP/HTTP encodings this build can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`: binary protobuf bodies (the default).
    HttpProtobuf,
    /// `http/json`: JSON-encoded protobuf bodies.
    HttpJson,
}

impl OtlpProtocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
        }
    }
}

/// Where and how spans are exported. Build it with [`OtlpConfig::new`] or read it from the
/// environment with [`OtlpConfig::from_env`].
///
/// `Debug` prints header names only: header values usually carry API keys.
#[derive(Clone)]
pub struct OtlpConfig {
    /// The full traces URL, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    /// Extra request headers (name, value), e.g. an `authorization` header.
    pub headers: Vec<(String, String)>,
    /// The deadline of one export request, retries included.
    pub timeout: Duration,
    /// The body encoding.
    pub protocol: OtlpProtocol,
    /// Whether request bodies are gzip-compressed.
    pub gzip: bool,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Further resource attributes (from `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    /// How many spans may wait for export; beyond that, spans are dropped from export (never from
    /// the inner sink) and counted.
    pub queue_capacity: usize,
    /// The most spans one export request carries.
    pub max_batch: usize,
    /// How long a partial batch waits for more spans before it is sent anyway.
    pub batch_delay: Duration,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &redact_endpoint(&self.endpoint))
            .field("header_names", &header_names)
            .field("timeout", &self.timeout)
            .field("protocol", &self.protocol)
            .field("gzip", &self.gzip)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("batch_delay", &self.batch_delay)
            .finish()
    }
}

impl OtlpConfig {
    /// Settings for exporting to the full traces URL `endpoint`, with the specification's
    /// defaults for everything else.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            protocol: OtlpProtocol::HttpProtobuf,
            gzip: false,
            service_name: DEFAULT_SERVICE_NAME.into(),
            resource_attributes: Vec::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            batch_delay: DEFAULT_BATCH_DELAY,
        }
    }

    /// Reads the standard variables from the process environment; see [`OtlpConfig::from_vars`].
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the standard variables through `var`. `Ok(None)` means export is off: neither
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`.
    ///
    /// Honoured: `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` (the general one is a base URL that gets
    /// `/v1/traces` appended; the traces one is used verbatim), `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`
    /// (`k=v,k=v`, URL-decoded; traces headers win per name), `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`
    /// (milliseconds), `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` (`http/protobuf` or `http/json`;
    /// `grpc` is refused), `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION` (`gzip` or `none`),
    /// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_SCHEDULE_DELAY`.
    ///
    /// Errors are configuration errors that name the variable, never a header value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        // Unset and empty mean the same, as in the reference SDKs.
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporters) = get("OTEL_TRACES_EXPORTER") {
            let names: Vec<&str> = exporters.split(',').map(str::trim).collect();
            if names.iter().all(|n| n.eq_ignore_ascii_case("none")) {
                return Ok(None);
            }
            if !names.iter().any(|n| n.eq_ignore_ascii_case("otlp")) {
                return Err(Error::config(format!(
                    "OTEL_TRACES_EXPORTER={exporters} is not supported: switchboard exports traces over \
                     OTLP only (use `otlp` or `none`)"
                )));
            }
        }

        let endpoint = match (get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), get("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(traces), _) => {
                check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)?;
                traces
            }
            (None, Some(base)) => {
                check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, None) => return Ok(None),
        };

        let mut config = Self::new(endpoint);
        for name in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            if let Some(raw) = get(name) {
                for (key, value) in parse_headers(name, &raw)? {
                    config.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                    config.headers.push((key, value));
                }
            }
        }
        if let Some((name, raw)) =
            first(&get, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        {
            config.timeout = Duration::from_millis(parse_number(name, &raw)?);
        }
        if let Some((name, raw)) =
            first(&get, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        {
            config.protocol = parse_protocol(name, &raw)?;
        }
        if let Some((name, raw)) =
            first(&get, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
        {
            config.gzip = match raw.to_ascii_lowercase().as_str() {
                "gzip" => true,
                "none" => false,
                other => {
                    return Err(Error::config(format!(
                        "{name}={other} is not supported (use `gzip` or `none`)"
                    )));
                }
            };
        }
        if let Some(raw) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &raw)? {
                if key == "service.name" {
                    config.service_name = value;
                } else {
                    config.resource_attributes.retain(|(k, _)| *k != key);
                    config.resource_attributes.push((key, value));
                }
            }
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            config.service_name = name;
        }
        if let Some(raw) = get("OTEL_BSP_MAX_QUEUE_SIZE") {
            config.queue_capacity = positive("OTEL_BSP_MAX_QUEUE_SIZE", &raw)?;
        }
        if let Some(raw) = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            config.max_batch = positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &raw)?;
        }
        // The specification caps the batch at the queue size.
        config.max_batch = config.max_batch.min(config.queue_capacity);
        if let Some(raw) = get("OTEL_BSP_SCHEDULE_DELAY") {
            config.batch_delay = Duration::from_millis(parse_number("OTEL_BSP_SCHEDULE_DELAY", &raw)?);
        }
        Ok(Some(config))
    }

    /// Checks what [`OtlpConfig::from_vars`] checks, for configs built by hand.
    pub(crate) fn validate(&self) -> Result<()> {
        check_endpoint("the OTLP endpoint", &self.endpoint)?;
        if self.queue_capacity == 0 || self.max_batch == 0 {
            return Err(Error::config("OTLP export: the queue capacity and batch size must be at least 1"));
        }
        for (name, _) in &self.headers {
            check_header_name("the OTLP headers", name)?;
        }
        Ok(())
    }
}

/// The first of two variables that is set, with its name.
fn first(
    get: &impl Fn(&str) -> Option<String>,
    a: &'static str,
    b: &'static str,
) -> Option<(&'static str, String)> {
    get(a).map(|v| (a, v)).or_else(|| get(b).map(|v| (b, v)))
}

fn check_endpoint(name: &str, url: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    if host.is_none_or(|h| h.rsplit('@').next().is_none_or(str::is_empty)) {
        return Err(Error::config(format!(
            "{name} must be an http:// or https:// URL with a host, got {}",
            redact_endpoint(url)
        )));
    }
    Ok(())
}

/// `url` without any `user:password@` part, for messages.
pub(crate) fn redact_endpoint(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn parse_protocol(name: &str, raw: &str) -> Result<OtlpProtocol> {
    match raw.to_ascii_lowercase().as_str() {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Ok(OtlpProtocol::HttpJson),
        "grpc" => Err(Error::config(format!(
            "{name}=grpc is not supported: this build exports over OTLP/HTTP; use http/protobuf \
             (collectors listen on port 4318 for it) or http/json"
        ))),
        other => Err(Error::config(format!(
            "{name}={other} is not a known OTLP protocol (use http/protobuf or http/json)"
        ))),
    }
}

fn parse_number(name: &str, raw: &str) -> Result<u64> {
    raw.parse()
        .map_err(|_| Error::config(format!("{name} must be a whole number of milliseconds, got {raw:?}")))
}

fn positive(name: &str, raw: &str) -> Result<usize> {
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::config(format!("{name} must be a positive whole number, got {raw:?}"))),
    }
}

/// Parses `OTEL_EXPORTER_OTLP_*HEADERS`. Messages identify entries by position or name, never by
/// value, since values are credentials.
fn parse_headers(var: &str, raw: &str) -> Result<Vec<(String, String)>> {
    let pairs = parse_pairs(var, raw)?;
    for (name, value) in &pairs {
        check_header_name(var, name)?;
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::config(format!(
                "{var}: the value of header {name} contains control characters"
            )));
        }
    }
    Ok(pairs)
}

fn check_header_name(var: &str, name: &str) -> Result<()> {
    // RFC 9110 token characters.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(Error::config(format!("{var}: {name:?} is not a valid HTTP header name")));
    }
    Ok(())
}

/// Parses the W3C-baggage-like `k=v,k=v` lists of the OpenTelemetry variables, URL-decoding keys
/// and values.
fn parse_pairs(var: &str, raw: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(Error::config(format!("{var}: entry {} is not of the form key=value", i + 1)));
        };
        let key = percent_decode(key.trim()).ok_or_else(|| {
            Error::config(format!("{var}: entry {} has a malformed %-escape in its key", i + 1))
        })?;
        if key.is_empty() {
            return Err(Error::config(format!("{var}: entry {} has an empty key", i + 1)));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| Error::config(format!("{var}: the value of {key} has a malformed %-escape")))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes (UTF-8); `None` for a truncated or non-hex escape or invalid UTF-8.
/// `+` stays a plus: these lists are not form-encoded.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtlpConfig::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_set_or_when_disabled() {
        assert!(from(&[]).unwrap().is_none());
        assert!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap().is_none());
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert!(from(&on).unwrap().is_some());
        assert!(from(&[on[0], ("OTEL_SDK_DISABLED", "TRUE")]).unwrap().is_none());
        assert!(from(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap().is_none());
        assert!(from(&[on[0], ("OTEL_TRACES_EXPORTER", "otlp")]).unwrap().is_some());
        let e = from(&[on[0], ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(e.message.contains("OTEL_TRACES_EXPORTER"), "{}", e.message);
    }

    #[test]
    fn base_endpoints_get_the_traces_path_and_signal_endpoints_are_verbatim() {
        for (base, want) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://mlflow.example.com/otlp/", "https://mlflow.example.com/otlp/v1/traces"),
        ] {
            let c = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", base)]).unwrap().unwrap();
            assert_eq!(c.endpoint, want);
        }
        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9999/custom"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://c:9999/custom");
        let e = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]).unwrap_err();
        assert!(e.message.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{}", e.message);
        let e = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@/x")]).unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn defaults_follow_the_specification() {
        let c = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap().unwrap();
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.service_name, "switchboard");
        assert!(c.headers.is_empty() && !c.gzip);
        assert_eq!((c.queue_capacity, c.max_batch, c.batch_delay), (2048, 512, Duration::from_secs(5)));
    }

    #[test]
    fn headers_are_url_decoded_merged_and_never_echoed() {
        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20general, x-mlflow-experiment-id=7,,"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20traces%3D%3D,x-a%20b=c+d"),
        ]);
        let e = c.unwrap_err();
        assert!(e.message.contains("x-a b"), "invalid header names are named: {}", e.message);

        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20general, x-mlflow-experiment-id=7,,"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20traces%3D%3D,x-plus=c+d"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("x-mlflow-experiment-id".to_string(), "7".to_string()),
                ("authorization".to_string(), "Bearer traces==".to_string()),
                ("x-plus".to_string(), "c+d".to_string()),
            ]
        );
        let debug = format!("{c:?}");
        assert!(debug.contains("authorization") && !debug.contains("Bearer"), "{debug}");

        for bad in ["authorization", "authorization=sk-secret%zz", "=sk-secret"] {
            let e = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_HEADERS", bad)])
                .unwrap_err();
            assert!(e.message.starts_with("OTEL_EXPORTER_OTLP_HEADERS"), "{}", e.message);
            assert!(!e.message.contains("sk-secret"), "{}", e.message);
        }
        let e = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=sk-secret%0A"),
        ])
        .unwrap_err();
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
    }

    #[test]
    fn protocol_timeout_compression_and_batching() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let c = from(&[
            base,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, OtlpProtocol::HttpJson);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.gzip);
        assert_eq!((c.queue_capacity, c.max_batch), (100, 100), "batch capped at the queue size");
        assert_eq!(c.batch_delay, Duration::from_millis(250));

        let e = from(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert_eq!(e.kind, switchboard_core::ErrorKind::Config);
        assert!(
            e.message.contains("grpc is not supported") && e.message.contains("OTLP/HTTP"),
            "{}",
            e.message
        );
        assert!(from(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")]).is_err());
        assert!(from(&[base, ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).is_err());
        assert!(from(&[base, ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).is_err());
        assert!(from(&[base, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")]).is_err());
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let c = from(&[
            base,
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=prod%201"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(c.resource_attributes, [("deployment.environment".to_string(), "prod 1".to_string())]);
        let c =
            from(&[base, ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x"), ("OTEL_SERVICE_NAME", "sb-prod")])
                .unwrap()
                .unwrap();
        assert_eq!(c.service_name, "sb-prod");
    }

    #[test]
    fn endpoints_are_redacted_in_messages() {
        assert_eq!(redact_endpoint("https://u:p@h:1/v1/traces"), "https://<redacted>@h:1/v1/traces");
        assert_eq!(redact_endpoint("http://h/a@b"), "http://h/a@b");
    }
}
