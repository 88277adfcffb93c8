//! The hop pipeline's overhead: a governed call (span, audit, budget, authorize, credential,
//! timeout) against the same call made directly. The sink discards records, so the figure is the
//! pipeline's own cost, not the store's.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::{
    AgentKind, AgentSpec, AuditRecord, AuthMethod, Caller, CredentialMode, CredentialSpec, HopKind,
    RunContext, SpanRecord, TelemetrySink,
};
use switchboard_govern::{Gateway, HopTarget, layers::StandardCredentials};

struct Discard;
impl TelemetrySink for Discard {
    fn span(&self, span: SpanRecord) {
        black_box(span);
    }
    fn audit(&self, record: AuditRecord) {
        black_box(record);
    }
}

fn spec(mode: CredentialMode) -> Arc<AgentSpec> {
    Arc::new(AgentSpec {
        name: "sales".into(),
        kind: AgentKind::Genie,
        description: "bench".into(),
        examples: vec![],
        credential: CredentialSpec { mode, scopes: vec!["sql".into()], ..Default::default() },
        allowed_roles: Some(vec!["managers".into(), "west_sales".into()]),
        timeout_ms: Some(15_000),
        connection: None,
        settings: serde_json::Value::Null,
        tool_roles: None,
        guardrails: None,
    })
}

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let gateway =
        Gateway::builder(Arc::new(Discard), Arc::new(StandardCredentials::new("switchboard-sp"))).build();
    let caller = Caller::new(
        "carol@example.com",
        "carol@example.com",
        vec!["managers".into()],
        AuthMethod::Development,
    )
    .with_scopes(vec!["sql".into()]);
    let mut ctx = RunContext::new(caller, Duration::from_secs(3600));
    ctx.max_hops = u32::MAX;

    let mut group = c.benchmark_group("hop");
    group.bench_function("direct call (baseline)", |b| {
        b.to_async(&rt).iter(|| async { black_box(async { Ok::<u64, ()>(42) }.await) })
    });
    for (label, mode) in
        [("governed hop, obo", CredentialMode::Obo), ("governed hop, automatic", CredentialMode::Automatic)]
    {
        let agent = spec(mode);
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let v = gateway
                    .hop(&ctx, &agent, HopTarget::new(HopKind::Sql, "deals"), |_grant| async { Ok(42u64) })
                    .await;
                black_box(v)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
