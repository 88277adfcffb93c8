use crate::guardrails::Direction;
use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;
use switchboard_core::{
    AuditDecision, AuditRecord, Error, ErrorKind, HexId, HopKind, Result, SpanKind, SpanRecord, SpanStatus,
    TelemetrySink, cap_attributes, cap_text, unix_nanos_now,
};

/// Emits one span per hop, named and typed after the OpenTelemetry GenAI conventions and MLflow.
pub struct SpanLayer {
    sink: Arc<dyn TelemetrySink>,
}

impl SpanLayer {
    /// Spans go to `sink`.
    pub fn new(sink: Arc<dyn TelemetrySink>) -> Self {
        Self { sink }
    }
}

fn span_shape(kind: HopKind) -> (&'static str, SpanKind) {
    match kind {
        HopKind::Agent => ("invoke_agent", SpanKind::Agent),
        HopKind::Llm => ("chat", SpanKind::Llm),
        HopKind::Retrieval => ("retrieve", SpanKind::Retriever),
        HopKind::Tool | HopKind::Sql | HopKind::Http | HopKind::Mcp => ("execute_tool", SpanKind::Tool),
        // Grants and revokes are audit rows of their own and never pass the pipeline.
        HopKind::Grant | HopKind::Revoke => ("administer", SpanKind::Chain),
    }
}

#[async_trait]
impl HopLayer for SpanLayer {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let start = hop.ctx.dispatched_unix_nano.unwrap_or_else(unix_nanos_now);
        let result = next.run(hop).await;
        let end = unix_nanos_now();

        let (operation, kind) = span_shape(hop.target.kind);
        let caller = &hop.ctx.caller;
        // Moved, not copied (inputs and outputs can be kilobytes): this layer is the outermost,
        // so every other layer is done with them. They come last, so a call's own value of a key
        // wins, as it would inserted after these.
        let extra = hop.attributes.lock().map(|mut extra| std::mem::take(&mut *extra)).unwrap_or_default();
        // Room for the dozen set here and what a call records (an LLM call: about ten). Pushed
        // in key order, so sorting them below only has the call's own to place.
        let mut pairs: Vec<(String, Value)> = Vec::with_capacity(24);
        pairs.push(("enduser.id".into(), json!(caller.email())));
        pairs.push(("gen_ai.agent.name".into(), json!(hop.agent.name)));
        pairs.push(("gen_ai.operation.name".into(), json!(operation)));
        match hop.target.kind {
            HopKind::Llm => pairs.push(("gen_ai.request.model".into(), json!(hop.target.name))),
            HopKind::Agent => {}
            _ => pairs.push(("gen_ai.tool.name".into(), json!(hop.target.name))),
        }
        pairs.push(("mlflow.spanType".into(), json!(kind.as_str())));
        pairs.push(("switchboard.caller.email".into(), json!(caller.email())));
        pairs.push(("switchboard.caller.role".into(), json!(caller.primary_role())));
        pairs.push(("switchboard.credential.mode".into(), json!(hop.agent.credential.mode.as_str())));
        pairs.push(("switchboard.hop.kind".into(), json!(hop.target.kind.as_str())));
        if let Some(cred) = &hop.credential {
            pairs.push(("switchboard.principal".into(), json!(cred.principal.name)));
        }
        pairs.push(("switchboard.request_id".into(), json!(hop.ctx.request_id.as_str())));
        // The store derives its usage (chargeback) rows from LLM hop spans, so the caller's
        // labels travel with them.
        if let (HopKind::Llm, Some(usage)) = (hop.target.kind, &hop.ctx.usage_context) {
            pairs.push(("switchboard.usage_context".into(), json!(usage.as_ref())));
        }
        pairs.extend(extra);
        // Built at once (one sort, then the tree filled in order; of equal keys the last is
        // kept), which costs about a third less than inserting the pairs one by one.
        let mut attributes: Map<String, Value> = pairs.into_iter().collect();
        // Calls record what they like (inputs, outputs, upstream text); the cap is enforced here,
        // once, rather than trusted to each of them.
        cap_attributes(&mut attributes);
        let parent = hop.ctx.trace.parent_span_id;
        self.sink.span(SpanRecord {
            request_id: hop.ctx.request_id.to_string(),
            trace_id: hop.ctx.trace.trace_id.hex(),
            span_id: hop.span_id.hex(),
            parent_id: (parent != opentelemetry::trace::SpanId::INVALID).then(|| parent.hex()),
            name: format!("{operation} {}", hop.target.name),
            kind,
            agent: Some(hop.agent.name.clone()),
            start_unix_nano: start,
            end_unix_nano: end,
            status: if result.is_ok() { SpanStatus::Ok } else { SpanStatus::Error },
            status_message: result.as_ref().err().map(|e| cap_text(&e.message)),
            attributes,
        });
        result
    }
}

/// Writes one audit row per hop, allowed or not, carrying the caller's email and roles.
pub struct AuditLayer {
    sink: Arc<dyn TelemetrySink>,
}

impl AuditLayer {
    /// Rows go to `sink`.
    pub fn new(sink: Arc<dyn TelemetrySink>) -> Self {
        Self { sink }
    }
}

#[async_trait]
impl HopLayer for AuditLayer {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        let started = Instant::now();
        let result = next.run(hop).await;
        let caller = &hop.ctx.caller;
        // A call that succeeded but whose answer its agent's output guardrail withheld is
        // audited as blocked, naming the category: the caller got a refusal, not the answer.
        let withheld =
            result.as_ref().ok().and_then(|()| output_block(hop)).map(|r| Error::new(ErrorKind::Blocked, r));
        let audited = result.as_ref().err().or(withheld.as_ref());
        let decision = match audited.map(|e| e.kind) {
            None => AuditDecision::Allowed,
            Some(ErrorKind::Denied) => AuditDecision::AccessDenied,
            Some(ErrorKind::RateLimited) => AuditDecision::RateLimited,
            Some(ErrorKind::Blocked) => AuditDecision::Blocked,
            Some(_) => AuditDecision::Error,
        };
        self.sink.audit(AuditRecord {
            request_id: hop.ctx.request_id.to_string(),
            span_id: hop.span_id.hex(),
            ts_unix_ms: unix_nanos_now() / 1_000_000,
            caller_email: caller.email().to_string(),
            caller_roles: caller.groups().join(","),
            acting_for: caller.acting_for().map(str::to_string),
            principal: hop.credential.as_ref().map(|c| c.principal.name.clone()).unwrap_or_default(),
            credential_mode: hop.agent.credential.mode.as_str().to_string(),
            agent: hop.agent.name.clone(),
            hop: hop.target.kind,
            target: hop.target.name.clone(),
            decision,
            error_code: audited.map(|e| e.kind.as_str().to_string()),
            reason: audited.map(|e| e.message.clone()),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        result
    }
}

/// Why the hop's answer was withheld, when its output guardrail blocked it: the category and
/// the kinds found (`pii: card_number`), as the guardrail recorded them on the span; the
/// matched text is never recorded, so it cannot reach the audit row.
fn output_block(hop: &HopCall) -> Option<String> {
    let attrs = hop.attributes.lock().ok()?;
    let verdict = attrs.get(Direction::Output.attribute())?;
    if verdict.get("verdict")?.as_str()? != "blocked" {
        return None;
    }
    let category = verdict.get("category").and_then(|c| c.as_str()).unwrap_or("guardrail");
    let found: Vec<&str> = verdict
        .get("found")
        .and_then(|f| f.as_array())
        .map(|f| f.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    Some(format!("the answer was withheld by an output guardrail: {category} ({})", found.join(", ")))
}
