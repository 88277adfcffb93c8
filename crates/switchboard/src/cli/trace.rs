//! `switchboard trace`: the span tree of one request.

use super::millis;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use switchboard_core::{Error, Result, SpanRecord, SpanStatus};

/// Prints the spans of `request_id` as a tree.
pub async fn run(request_id: &str, config: Option<&Path>, as_json: bool) -> Result<ExitCode> {
    let store = super::store(config).await?;
    let spans = store.spans(request_id).await?;
    if spans.is_empty() {
        return Err(Error::not_found(format!("no spans recorded for request {request_id}")));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&spans).map_err(|e| Error::internal(e.to_string()))?);
    } else {
        print!("{}", render_tree(&spans));
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders spans as an indented tree with durations, children in start order.
pub fn render_tree(spans: &[SpanRecord]) -> String {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<Option<&str>, Vec<&SpanRecord>> = HashMap::new();
    for s in spans {
        // A span whose parent is not in this request (e.g. an incoming traceparent) is a root here.
        let parent = s.parent_id.as_deref().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_unix_nano);
    }
    let mut out = String::new();
    fn walk(
        out: &mut String,
        children: &HashMap<Option<&str>, Vec<&SpanRecord>>,
        parent: Option<&str>,
        prefix: &str,
    ) {
        let Some(list) = children.get(&parent) else { return };
        for (i, s) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let branch = if parent.is_none() {
                ""
            } else if last {
                "└─ "
            } else {
                "├─ "
            };
            let status = match s.status {
                SpanStatus::Ok => "ok".to_string(),
                SpanStatus::Error => format!("error: {}", s.status_message.as_deref().unwrap_or("")),
            };
            out.push_str(&format!(
                "{prefix}{branch}{} [{}] {:.1} ms {status}\n",
                s.name,
                s.kind.as_str(),
                millis(s.start_unix_nano, s.end_unix_nano)
            ));
            let next = if parent.is_none() {
                String::new()
            } else if last {
                format!("{prefix}   ")
            } else {
                format!("{prefix}│  ")
            };
            walk(out, children, Some(&s.span_id), &next);
        }
    }
    walk(&mut out, &children, None, "");
    out
}
