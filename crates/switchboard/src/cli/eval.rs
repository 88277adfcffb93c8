//! `switchboard eval`: runs a dataset of cases in-process, prints a summary table, writes the
//! JSON, Markdown and HTML reports, and gates on a baseline report.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use switchboard_core::{Error, Result};
use switchboard_eval::{CaseResult, Evaluator, Report, RunOptions, case, gate, report};

/// Exit code when the regression gate fails (1 is any other error).
pub const GATE_FAILED: u8 = 4;

/// What `switchboard eval` was asked to do.
pub struct EvalArgs {
    /// The JSONL dataset.
    pub dataset: PathBuf,
    /// switchboard.toml, or the built-in demo.
    pub config: Option<PathBuf>,
    /// Cases in flight at once.
    pub concurrency: Option<usize>,
    /// Where the reports and results.jsonl go.
    pub report_dir: PathBuf,
    /// A report.json to compare with.
    pub baseline: Option<PathBuf>,
    /// Largest allowed drop of any gated metric, in percentage points.
    pub max_regression: f64,
    /// Keep the results already in the report dir and run only the rest.
    pub resume: bool,
}

/// Runs the evaluation.
pub async fn run(args: EvalArgs) -> Result<ExitCode> {
    let cases =
        case::load(&args.dataset).map_err(|e| Error::invalid(e.to_string().trim_end().to_string()))?;
    if args.max_regression.is_nan() || args.max_regression < 0.0 {
        return Err(Error::invalid("--max-regression: must be a number of points, 0 or more"));
    }
    // Read the baseline first: a typo in its path should not cost a whole run.
    let baseline = args.baseline.as_deref().map(Report::read).transpose()?;
    let runtime = super::runtime(args.config.as_deref()).await?;
    let evaluator = Arc::new(Evaluator::new(runtime)?);
    if let Err(errors) = evaluator.validate(&cases) {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        return Err(Error::invalid(format!(
            "{}: {} case{} cannot run with this configuration:\n{}",
            args.dataset.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        )));
    }
    let options = RunOptions {
        concurrency: args.concurrency.unwrap_or_else(switchboard_eval::default_concurrency).max(1),
        results_file: Some(args.report_dir.join("results.jsonl")),
        resume: args.resume,
    };
    if args.resume
        && let Some(path) = options.results_file.as_deref()
    {
        let done = switchboard_eval::kept_results(&cases, path)?.len();
        eprintln!("resuming: {done} of {} cases already done, running {}", cases.len(), cases.len() - done);
    }

    let total = cases.len();
    let started = Instant::now();
    let mut progress = Progress::new(total);
    let results = evaluator.run_dataset(cases, &options, |r, done| progress.update(r, done)).await;
    progress.finish();
    evaluator.runtime().shutdown().await;
    let results = results?;

    let config_label =
        args.config.as_deref().map_or("built-in demo".to_string(), |p| p.display().to_string());
    let report = Report::new(
        args.dataset.display().to_string(),
        config_label,
        evaluator.router_name(),
        results,
        evaluator.recall_k(),
        started.elapsed().as_secs_f64(),
        options.concurrency,
    );
    let written = report.write(&args.report_dir)?;
    println!("{}", report::summary_table(&report));
    println!(
        "reports: {}, {}, {}",
        written.json.display(),
        written.markdown.display(),
        written.html.display()
    );

    if let Some(baseline) = &baseline {
        let regressions = gate::compare(baseline, &report, args.max_regression);
        let path = args.baseline.as_deref().map_or_else(String::new, |p| p.display().to_string());
        if !regressions.is_empty() {
            eprintln!(
                "regression gate failed: {} metric{} fell more than {} points below the baseline {path}:",
                regressions.len(),
                if regressions.len() == 1 { "" } else { "s" },
                args.max_regression
            );
            for r in &regressions {
                eprintln!("  {r}");
            }
            return Ok(ExitCode::from(GATE_FAILED));
        }
        println!(
            "regression gate passed: no metric fell more than {} points below {path}",
            args.max_regression
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; otherwise a plain line every twentieth of the run, so logs of
/// CI jobs stay short.
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    failed: usize,
    step: usize,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} cases · {msg} · eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message("0 failed");
            bar
        });
        Self { bar, total, failed: 0, step: total.div_ceil(20).max(1) }
    }

    fn update(&mut self, result: &CaseResult, done: usize) {
        if !result.passed() {
            self.failed += 1;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(format!("{} failed", self.failed));
            }
            None if done.is_multiple_of(self.step) || done == self.total => {
                eprintln!("eval: {done}/{} cases done, {} failed", self.total, self.failed);
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
