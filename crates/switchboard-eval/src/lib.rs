//! Switchboard's evaluation harness: a dataset of cases in; routing accuracy, per-agent precision
//! and recall, a confusion matrix, tool trajectories, answer checks, governance outcomes,
//! retrieval recall@k, latency and LLM tokens out; reports as JSON, Markdown and self-contained
//! HTML; and a regression gate against a baseline report.
//!
//! Cases run in-process through a loaded [`Runtime`](switchboard_runtime::Runtime), each as its
//! development identity, so every hop is governed exactly as in production:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use switchboard_eval::{Evaluator, Report, RunOptions, case};
//! use switchboard_runtime::{Runtime, demo};
//!
//! let data = demo::data_dir();
//! demo::prepare(&data)?;
//! let evaluator = Arc::new(Evaluator::new(Runtime::load(&demo::source(&data)).await?)?);
//! let cases = case::load("eval/demo/cases.jsonl".as_ref())?;
//! evaluator.validate(&cases).map_err(|e| format!("{e:?}"))?;
//! let results = evaluator.run_dataset(cases, &RunOptions::default(), |_, _| {}).await?;
//! let report = Report::new("demo".into(), "built-in demo".into(), evaluator.router_name(), results,
//!                          evaluator.recall_k(), 0.0, 4);
//! println!("{}", switchboard_eval::report::summary_table(&report));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod case;
pub mod check;
pub mod gate;
pub mod judge;
pub mod metrics;
mod observe;
pub mod report;
pub mod result;
mod runner;

pub use case::{Case, Expect, Outcome};
pub use gate::Regression;
pub use metrics::{Metrics, Summary};
pub use report::Report;
pub use result::CaseResult;
pub use runner::{DEFAULT_RECALL_K, Evaluator, RunOptions, default_concurrency, kept_results, read_results};
