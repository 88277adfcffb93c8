//! Declarative configuration: `switchboard.toml`, one TOML per sub-agent in `agents/`, and
//! templates in `prompts/`. Loading validates everything and reports every problem with its file
//! and field, rather than stopping at the first.

mod connections;
mod files;
mod limits;
mod model;
mod resilience;

pub use files::{ConfigFile, ConfigSource};
pub use limits::{DEFAULT_REDIS_PREFIX, rules as limit_rules};
pub use model::{
    AgentFile, Config, DemoConfig, DevClient, DevUser, EvalConfig, IdentityConfig, JudgeConfig, LimitsConfig,
    LlmConfig, MAX_PAYLOAD_LOG_BYTES, ModelPrice, PayloadLogConfig, RouterConfig, RouterKind, ServerConfig,
    StoreConfig, StoreKind, SupervisorConfig,
};
pub use resilience::{LlmFallback, LlmSplit, ResilienceConfig, ResilienceOverride};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_core::{AgentKind, AgentSpec, MAX_AGENTS};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user knows it (e.g. `agents/sales.toml`).
    pub file: String,
    /// The field (dotted path), or empty when the problem is with the file as a whole.
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Every problem found while loading.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} configuration problem{}:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// `switchboard.toml`.
    pub config: Config,
    /// The sub-agents, in file-name order.
    pub agents: Vec<Arc<AgentSpec>>,
    /// Templates by file name (e.g. `router.j2`).
    pub prompts: Vec<(String, String)>,
    /// Where relative paths in agent settings resolve.
    pub base_dir: PathBuf,
    /// Where the store and indexes live.
    pub data_dir: PathBuf,
}

/// Checks the kind-specific settings of an agent; the runtime supplies one per kind it can build.
pub type SettingsCheck = fn(&AgentSpec, &Path) -> switchboard_core::Result<()>;

/// Loads and validates a configuration. `check_settings` validates each agent's kind table (so
/// that `validate` catches a missing database file, not the first request).
pub fn load(source: &ConfigSource, check_settings: SettingsCheck) -> Result<LoadedConfig, ConfigErrors> {
    let mut problems = Vec::new();
    let files = source.read(&mut problems);
    let Some(files) = files else { return Err(ConfigErrors(problems)) };

    let config = model::parse_main(&files.main, &mut problems);
    let base_dir = files.base_dir.clone();
    let data_dir = config.as_ref().map(|c| c.resolve_data_dir(&base_dir)).unwrap_or_else(|| base_dir.clone());

    let agents_label = format!("{}/", files.agents_dir_label);
    if files.agents.len() > MAX_AGENTS {
        problems.push(Problem {
            file: agents_label.clone(),
            field: String::new(),
            message: format!(
                "{} agents are declared; a supervisor routes across at most {MAX_AGENTS} (the limit of {MAX_AGENTS} sub-agents)",
                files.agents.len()
            ),
        });
    }
    if files.agents.is_empty() {
        problems.push(Problem {
            file: agents_label,
            field: String::new(),
            message: "no agents are declared".into(),
        });
    }

    let default_timeout = config.as_ref().map(|c| c.supervisor.agent_timeout_ms);
    let mut agents: Vec<Arc<AgentSpec>> = Vec::new();
    for file in &files.agents {
        let Some(mut spec) = model::parse_agent(file, &mut problems) else { continue };
        if let Some(config) = &config {
            connections::check_agent_connection(&spec, file, config, &files.main.label, &mut problems);
        }
        if spec.timeout_ms.is_none() {
            spec.timeout_ms = default_timeout;
        }
        if let Some(prev) = agents.iter().find(|a| a.name == spec.name) {
            problems.push(Problem {
                file: file.label.clone(),
                field: "name".into(),
                message: format!("agent name `{}` is already used (names are unique)", prev.name),
            });
            continue;
        }
        if let Err(e) = check_settings(&spec, &base_dir) {
            // Kind errors already name their table and field (`genie.views: …`).
            problems.push(Problem { file: file.label.clone(), field: String::new(), message: e.message });
        }
        agents.push(Arc::new(spec));
    }

    if let Some(config) = &config {
        model::check_cross(config, &files, &agents, &mut problems);
    }
    let prompts: Vec<(String, String)> =
        files.prompts.iter().map(|p| (p.name.clone(), p.text.clone())).collect();
    let mut env = minijinja::Environment::new();
    for p in &files.prompts {
        if let Err(e) = env.add_template_owned(p.name.clone(), p.text.clone()) {
            problems.push(Problem {
                file: p.label.clone(),
                field: String::new(),
                message: format!("template does not parse: {e}"),
            });
        }
    }

    match config {
        Some(config) if problems.is_empty() => {
            Ok(LoadedConfig { config, agents, prompts, base_dir, data_dir })
        }
        _ => Err(ConfigErrors(problems)),
    }
}

/// The kinds this build can construct, for messages.
pub const BUILDABLE_KINDS: &[AgentKind] = &[
    AgentKind::Knowledge,
    AgentKind::Genie,
    AgentKind::Tool,
    AgentKind::Mcp,
    AgentKind::Endpoint,
    AgentKind::Supervisor,
];
