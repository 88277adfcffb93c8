//! `switchboard chat`.

use super::millis;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result};
use switchboard_runtime::{RunRequest, RunStatus};

/// Asks one question as `as_user` and prints the result.
pub async fn run(
    question: &str,
    as_user: Option<&str>,
    config: Option<&Path>,
    as_json: bool,
    thread_id: Option<String>,
) -> Result<ExitCode> {
    if question.trim().is_empty() {
        return Err(Error::invalid("the question is empty"));
    }
    let runtime = super::runtime(config).await?;
    let email = as_user.ok_or_else(|| {
        let known: Vec<&str> =
            runtime.config.config.identity.dev_users.iter().map(|u| u.email.as_str()).collect();
        Error::invalid(format!("say who is asking with --as EMAIL (known identities: {})", known.join(", ")))
    })?;
    let caller = runtime.dev_caller(email).await?;
    let role = caller.primary_role().to_string();
    let ctx = runtime.context(caller);
    let cancel = ctx.cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let response = runtime
        .supervisor
        .run(&ctx, RunRequest { question: question.to_string(), thread_id, ..Default::default() })
        .await;
    ctrl_c.abort();
    runtime.shutdown().await;
    let spans = runtime.store.spans(&response.request_id).await?;

    if as_json {
        let spans: Vec<_> = spans
            .iter()
            .map(|s| {
                json!({
                    "span_id": s.span_id, "parent_id": s.parent_id, "name": s.name, "kind": s.kind,
                    "agent": s.agent, "start_unix_nano": s.start_unix_nano, "end_unix_nano": s.end_unix_nano,
                    "status": s.status, "status_message": s.status_message, "attributes": s.attributes,
                })
            })
            .collect();
        let mut out = serde_json::to_value(&response).map_err(|e| Error::internal(e.to_string()))?;
        out["caller"] = json!({"email": email, "role": role});
        out["spans"] = json!(spans);
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| Error::internal(e.to_string()))?);
    } else {
        println!("{}\n", response.answer.trim_end());
        let total =
            spans.iter().find(|s| s.parent_id.is_none()).map(|s| millis(s.start_unix_nano, s.end_unix_nano));
        println!(
            "── {email} ({role}) · status {} · request {}",
            response.status.as_str(),
            response.request_id
        );
        for step in &response.steps {
            let note = step.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
            println!("   {:<12} {:<7} {:>7} ms{note}", step.agent, step.status, step.duration_ms);
        }
        if let Some(total) = total {
            println!("   total {total:.1} ms · spans: switchboard trace {}", response.request_id);
        }
    }
    Ok(match response.status {
        RunStatus::Ok | RunStatus::Clarify => ExitCode::SUCCESS,
        RunStatus::Denied | RunStatus::Blocked => ExitCode::from(3),
        RunStatus::Error => ExitCode::FAILURE,
    })
}
