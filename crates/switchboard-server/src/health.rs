//! `GET /health`: checks every dependency and reports each one; 200 when all are up, 503 when
//! any is down. Unauthenticated, for load balancers and orchestrators.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde_json::{Map, Value, json};
use std::time::Duration;
use switchboard_core::{Error, Result};

/// How long one check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `check` with the timeout, as a `{"status": ..}` object.
async fn probe(check: impl Future<Output = Result<()>>) -> Value {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => json!({"status": "ok"}),
        Ok(Err(e)) => json!({"status": "error", "message": e.message}),
        Err(_) => {
            json!({"status": "error", "message": format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())})
        }
    }
}

/// Whether the LLM endpoint accepts connections. Only a TCP connect: nothing is sent, so no
/// credential is used and no caller is involved, which is why this probe is not a hop.
async fn llm_reachable(base_url: &str) -> Result<()> {
    let uri: Uri = base_url.parse().map_err(|e| Error::config(format!("llm.base_url is not a URL: {e}")))?;
    let host = uri.host().ok_or_else(|| Error::config("llm.base_url has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    tokio::net::TcpStream::connect((host, port))
        .await
        .map(drop)
        .map_err(|e| Error::upstream(format!("cannot connect to {host}:{port}: {e}")))
}

/// The handler.
pub(crate) async fn handler(State(state): State<AppState>) -> Response {
    let runtime = &state.runtime;
    let store = probe(runtime.store.health());
    let llm = async {
        match &runtime.config.config.llm {
            Some(llm) => Some(probe(llm_reachable(&llm.base_url)).await),
            None => None,
        }
    };
    let agents = join_all(runtime.supervisor.agents().map(|agent| async move {
        let mut check = probe(agent.health()).await;
        if let Some(state) = agent.state() {
            check["state"] = json!(state);
        }
        (agent.spec().name.clone(), check)
    }));
    let (store, llm, agents) = tokio::join!(store, llm, agents);

    let up = |v: &Value| v["status"] == "ok";
    let healthy = up(&store) && llm.as_ref().is_none_or(up) && agents.iter().all(|(_, v)| up(v));
    let mut agent_checks = Map::new();
    for (name, check) in agents {
        agent_checks.insert(name, check);
    }
    // An open circuit is reported, not counted as down: the breaker exists so that the service
    // keeps answering (fast failures, LLM fallbacks) while one upstream is out.
    let mut circuits = Map::new();
    for c in runtime.resilience.circuits() {
        let mut entry = json!({"state": c.state.as_str(), "consecutive_failures": c.failures});
        if let Some(wait) = c.retry_in {
            entry["retry_in_ms"] = json!(wait.as_millis() as u64);
        }
        circuits.insert(c.upstream, entry);
    }
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "model": runtime.supervisor.name(),
        "checks": {
            "store": store,
            "llm": llm.unwrap_or_else(|| json!({"status": "not_configured"})),
            "agents": agent_checks,
            "circuits": circuits,
        },
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
