//! Running cases in-process through a [`Runtime`]: one case, or a whole dataset concurrently,
//! each finished case appended to a results file so an interrupted run can resume.

use crate::case::{Case, LineError};
use crate::check;
use crate::judge::Judge;
use crate::observe;
use crate::result::{CaseResult, Checks, StepSummary};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use switchboard_core::{Error, Result, RouteDecision};
use switchboard_runtime::config::ModelPrice;
use switchboard_runtime::{RunRequest, RunStatus, Runtime};

/// Longest answer kept in a result; reports need the gist, not megabytes of table.
const MAX_ANSWER_CHARS: usize = 4000;
/// Default k of retrieval recall@k.
pub const DEFAULT_RECALL_K: usize = 5;

/// How a dataset is run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cases in flight at once.
    pub concurrency: usize,
    /// Where each finished case's result is appended as a JSON line.
    pub results_file: Option<PathBuf>,
    /// Keep the results already in `results_file` and run only the cases missing there.
    pub resume: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { concurrency: default_concurrency(), results_file: None, resume: false }
    }
}

/// Twice the cores, at least 4: a case mostly waits on hops, SQLite and the store's writer.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
}

/// Runs cases against one loaded runtime. Cheap to share: wrap it in an `Arc` to run a dataset.
pub struct Evaluator {
    runtime: Runtime,
    judge: Option<Judge>,
    prices: BTreeMap<String, ModelPrice>,
    recall_k: usize,
    users: Vec<String>,
    agents: HashSet<String>,
}

impl Evaluator {
    /// Wraps a loaded runtime; reads `[eval]` (prices, judge, recall_k) from its configuration.
    pub fn new(runtime: Runtime) -> Result<Self> {
        let judge = Judge::from_runtime(&runtime)?;
        let cfg = &runtime.config.config;
        let recall_k = cfg.eval.recall_k.unwrap_or(DEFAULT_RECALL_K);
        if recall_k == 0 {
            return Err(Error::config("eval.recall_k: must be at least 1"));
        }
        let prices = cfg.eval.prices.clone();
        let users = cfg.identity.dev_users.iter().map(|u| u.email.clone()).collect();
        let agents = runtime.config.agents.iter().map(|a| a.name.clone()).collect();
        Ok(Self { runtime, judge, prices, recall_k, users, agents })
    }

    /// The runtime the cases run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The k of retrieval recall@k.
    pub fn recall_k(&self) -> usize {
        self.recall_k
    }

    /// The router, as reports name it: its kind and threshold.
    pub fn router_name(&self) -> String {
        let router = &self.runtime.config.config.router;
        let kind = format!("{:?}", router.kind).to_lowercase();
        match router.threshold {
            Some(t) => format!("{kind} (threshold {t})"),
            None => format!("{kind} (default threshold)"),
        }
    }

    /// Checks the cases against this configuration: every `as` is a development identity and
    /// every expected agent exists. Each problem names its line and field.
    pub fn validate(&self, cases: &[Case]) -> std::result::Result<(), Vec<LineError>> {
        let mut errors = Vec::new();
        for case in cases {
            if let Some(user) = &case.as_user
                && !self.users.contains(user)
            {
                errors.push(LineError {
                    line: case.line,
                    field: "as".into(),
                    message: format!(
                        "`{user}` is not a development identity here ({})",
                        self.users.join(", ")
                    ),
                });
            }
            for agent in case.expect.agents.iter().filter(|a| !self.agents.contains(*a)) {
                let mut known: Vec<&String> = self.agents.iter().collect();
                known.sort();
                let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
                errors.push(LineError {
                    line: case.line,
                    field: "expect.agents".into(),
                    message: format!(
                        "`{agent}` is not an agent of this configuration ({})",
                        known.join(", ")
                    ),
                });
            }
        }
        if case_users_missing(&self.users, cases) {
            errors.push(LineError {
                line: 0,
                field: "as".into(),
                message: "cases without `as` run as the first development identity, and none is configured"
                    .into(),
            });
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Runs one case. Never fails: a case that cannot run is a failed result saying why.
    pub async fn run_case(&self, case: &Case) -> CaseResult {
        let email = case.as_user.clone().or_else(|| self.users.first().cloned()).unwrap_or_default();
        let caller = match self.runtime.dev_caller(&email).await {
            Ok(c) => c,
            Err(e) => {
                return CaseResult::failed(case, &email, format!("cannot act as `{email}`: {}", e.message));
            }
        };
        let ctx = self.runtime.context(caller);
        let request = RunRequest {
            question: case.question.clone(),
            history: case.history.iter().map(|t| t.to_message()).collect(),
            ..RunRequest::default()
        };
        let started = Instant::now();
        let response = self.runtime.supervisor.run(&ctx, request).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Spans are written behind a queue; flushing makes this run's readable.
        self.runtime.store.flush().await;
        let spans = match self.runtime.store.spans(&response.request_id).await {
            Ok(spans) => spans,
            Err(e) => {
                tracing::warn!(case = %case.id, error = %e, "spans unavailable; tools and LLM usage not counted");
                Vec::new()
            }
        };

        let mut routed: Vec<String> = Vec::new();
        if let Some(RouteDecision::Agents { calls }) = &response.route {
            for call in calls {
                if !routed.contains(&call.agent) {
                    routed.push(call.agent.clone());
                }
            }
        }
        let status = response.status.as_str().to_string();
        let step_statuses: Vec<(&str, Option<u16>)> =
            response.steps.iter().map(|s| (s.status, s.error_status)).collect();
        let mut cited: Vec<String> = Vec::new();
        for step in &response.steps {
            for c in step.output.iter().flat_map(|o| &o.citations) {
                if !cited.contains(&c.id) {
                    cited.push(c.id.clone());
                }
            }
        }
        let tools = observe::tool_calls(&spans);
        let expect = &case.expect;
        let mut checks = Checks {
            routing: check::routing(
                &expect.agents,
                expect.agents_match,
                expect.outcome,
                &routed,
                response.status == RunStatus::Clarify,
            ),
            outcome: check::outcome(expect.outcome, &status, &step_statuses),
            trajectory: expect.tools.as_ref().map(|t| check::trajectory(&t.calls, t.mode, &tools)),
            ..Checks::default()
        };
        if let Some(a) = &expect.answer {
            let failures = check::answer(a, &response.answer, &cited);
            checks.answer = Some(failures.is_empty());
            checks.answer_failures = failures;
            if !a.cites.is_empty() {
                checks.recall = Some(check::recall_at(self.recall_k, &a.cites, &cited));
            }
            if let (Some(rubric), Some(judge)) = (&a.judge, &self.judge) {
                checks.judge = Some(judge.grade(&ctx, &case.question, &response.answer, rubric).await);
            }
        }
        CaseResult {
            id: case.id.clone(),
            line: case.line,
            tags: case.tags.clone(),
            question: case.question.clone(),
            as_user: email,
            expected_agents: expect.agents.clone(),
            expected_outcome: expect.outcome,
            request_id: response.request_id.clone(),
            outcome: check::observed_outcome(&status, &step_statuses).to_string(),
            status,
            routed,
            answer: response.answer.chars().take(MAX_ANSWER_CHARS).collect(),
            tools,
            cited,
            steps: response
                .steps
                .iter()
                .map(|s| StepSummary {
                    agent: s.agent.clone(),
                    status: s.status.to_string(),
                    error: s.error.clone(),
                })
                .collect(),
            latency_ms,
            llm: observe::llm_usage(&spans, &self.prices),
            checks,
            error: None,
        }
    }

    /// Runs `cases` `options.concurrency` at a time and returns their results in dataset order.
    /// `on_result` sees each result as it finishes (for progress), with the number done so far.
    /// With `results_file`, each result is appended there as it finishes; with `resume`, results
    /// already there for cases of this dataset are kept and those cases are not run again.
    pub async fn run_dataset(
        self: &Arc<Self>,
        cases: Vec<Case>,
        options: &RunOptions,
        mut on_result: impl FnMut(&CaseResult, usize),
    ) -> Result<Vec<CaseResult>> {
        let mut done: HashMap<String, CaseResult> = HashMap::new();
        if options.resume
            && let Some(path) = &options.results_file
        {
            done.extend(kept_results(&cases, path)?.into_iter().map(|r| (r.id.clone(), r)));
        }
        let mut sink = match &options.results_file {
            Some(path) => Some(open_results(path, &done)?),
            None => None,
        };
        let mut finished = done.len();
        let todo: Vec<Case> = cases.into_iter().filter(|c| !done.contains_key(&c.id)).collect();
        let mut stream = futures::stream::iter(todo)
            .map(|case| {
                let evaluator = self.clone();
                async move {
                    let case = Arc::new(case);
                    let task = {
                        let case = case.clone();
                        tokio::spawn(async move { evaluator.run_case(&case).await })
                    };
                    // A panicking case is a failed result, never the end of the run.
                    task.await.unwrap_or_else(|e| {
                        CaseResult::failed(
                            &case,
                            case.as_user.as_deref().unwrap_or(""),
                            format!("the case panicked: {e}"),
                        )
                    })
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        while let Some(result) = stream.next().await {
            if let Some(file) = &mut sink {
                append(file, &result)?;
            }
            finished += 1;
            on_result(&result, finished);
            done.insert(result.id.clone(), result);
        }
        let mut results: Vec<CaseResult> = done.into_values().collect();
        results.sort_by(|a, b| (a.line, &a.id).cmp(&(b.line, &b.id)));
        Ok(results)
    }
}

fn case_users_missing(users: &[String], cases: &[Case]) -> bool {
    users.is_empty() && cases.iter().any(|c| c.as_user.is_none())
}

/// The results in `path` that a resumed run of `cases` keeps: those of a case still in the
/// dataset with the same question (an edited question runs again).
pub fn kept_results(cases: &[Case], path: &Path) -> Result<Vec<CaseResult>> {
    let questions: HashMap<&str, &str> = cases.iter().map(|c| (c.id.as_str(), c.question.as_str())).collect();
    Ok(read_results(path)?
        .into_iter()
        .filter(|r| questions.get(r.id.as_str()) == Some(&r.question.as_str()))
        .collect())
}

/// The results recorded in a results file. A last line cut short by an interruption is ignored;
/// any other unreadable line is an error naming it.
pub fn read_results(path: &Path) -> Result<Vec<CaseResult>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::invalid(format!("cannot read {}: {e}", path.display()))),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CaseResult>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(Error::invalid(format!(
                    "{} line {}: not a case result ({e}); delete the file to start over",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

/// Starts the results file afresh with the results kept from an earlier run, so a line cut
/// short by an interruption does not stay in the middle of it.
fn open_results(path: &Path, kept: &HashMap<String, CaseResult>) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = std::fs::File::create(path)
        .map_err(|e| Error::invalid(format!("cannot open {}: {e}", path.display())))?;
    let mut kept: Vec<&CaseResult> = kept.values().collect();
    kept.sort_by_key(|r| r.line);
    for result in kept {
        append(&mut file, result)?;
    }
    Ok(file)
}

fn append(file: &mut std::fs::File, result: &CaseResult) -> Result<()> {
    let mut line = serde_json::to_string(result).map_err(|e| Error::internal(e.to_string()))?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(|e| Error::invalid(format!("cannot write a result: {e}")))
}
