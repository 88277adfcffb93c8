//! The `[mcp]` table: how the server is reached, which of its tools the agent may use, and the
//! limits of each request.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_core::{AgentSpec, Error, Result};

/// Results larger than this are cut, with a note, unless `max_result_bytes` says otherwise.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1024 * 1024;

/// How the MCP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP through the agent's connection. `url` is absolute, a path joined onto the
    /// connection's `base_url`, or `None` for the `base_url` itself.
    Http {
        /// As written in the table.
        url: Option<String>,
    },
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables set for it, on top of the few it inherits (see [`super::McpAgent`]).
        env: BTreeMap<String, String>,
        /// Its working directory, resolved against the agent file's directory.
        cwd: Option<PathBuf>,
    },
}

/// The checked `[mcp]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How the server is reached.
    pub transport: Transport,
    /// The tools the agent may use; `None` allows every tool the server lists.
    pub tools: Option<Vec<String>>,
    /// The longest any one MCP request may take, on top of the hop's own timeout.
    pub timeout: Option<Duration>,
    /// Tool results longer than this (in bytes of text) are truncated, with a note.
    pub max_result_bytes: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_result_bytes: Option<usize>,
}

impl Settings {
    /// Reads and checks the `[mcp]` table of `spec`. Errors name the field (`mcp.url: …`).
    ///
    /// With no `url` and no `command`, an agent that names a connection talks streamable HTTP to
    /// the connection's `base_url`; one that names none has no transport, which is an error.
    pub fn from_spec(spec: &AgentSpec, base_dir: &Path) -> Result<Settings> {
        // A missing table is an empty one: an agent naming a connection needs nothing else.
        let table: Table =
            if spec.settings.is_null() { Table::default() } else { crate::kind_settings(spec)? };
        let transport = match (table.url, table.command) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "mcp.command: set either `url` (streamable HTTP) or `command` (stdio), not both",
                ));
            }
            (url, None) => {
                for (field, given) in [
                    ("args", table.args.is_some()),
                    ("env", table.env.is_some()),
                    ("cwd", table.cwd.is_some()),
                ] {
                    if given {
                        return Err(Error::config(format!(
                            "mcp.{field}: only a stdio server (`command`) takes `{field}`"
                        )));
                    }
                }
                if url.is_none() && spec.connection.is_none() {
                    return Err(Error::config(
                        "mcp.url: an mcp agent has no transport: set `url` (streamable HTTP, through \
                         the agent's `connection`) or `command` (a stdio server)",
                    ));
                }
                if let Some(u) = &url
                    && u.trim().is_empty()
                {
                    return Err(Error::config("mcp.url: is empty"));
                }
                if spec.connection.is_none() {
                    return Err(Error::config(
                        "mcp.url: an MCP server over HTTP is reached only through a connection: \
                         name one with `connection = \"…\"`",
                    ));
                }
                Transport::Http { url }
            }
            (None, Some(command)) => {
                if command.trim().is_empty() {
                    return Err(Error::config("mcp.command: is empty"));
                }
                let env = table.env.unwrap_or_default();
                if let Some(bad) = env.keys().find(|k| k.is_empty() || k.contains('=') || k.contains('\0')) {
                    return Err(Error::config(format!("mcp.env: `{bad}` is not a variable name")));
                }
                Transport::Stdio {
                    command,
                    args: table.args.unwrap_or_default(),
                    env,
                    cwd: table.cwd.map(|c| if c.is_absolute() { c } else { base_dir.join(c) }),
                }
            }
        };
        if let Some(tools) = &table.tools {
            if tools.is_empty() {
                return Err(Error::config(
                    "mcp.tools: is empty, which allows no tool; leave it out to allow every tool",
                ));
            }
            if let Some(blank) = tools.iter().find(|t| t.trim().is_empty()) {
                return Err(Error::config(format!("mcp.tools: `{blank}` is not a tool name")));
            }
        }
        if table.timeout_ms == Some(0) {
            return Err(Error::config("mcp.timeout_ms: must be greater than 0"));
        }
        let max_result_bytes = table.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT_BYTES);
        if max_result_bytes == 0 {
            return Err(Error::config("mcp.max_result_bytes: must be greater than 0"));
        }
        Ok(Settings {
            transport,
            tools: table.tools,
            timeout: table.timeout_ms.map(Duration::from_millis),
            max_result_bytes,
        })
    }

    /// Whether the allow-list lets the agent use `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        self.tools.as_ref().is_none_or(|list| list.iter().any(|t| t == tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_core::{AgentKind, CredentialSpec};

    fn spec(settings: serde_json::Value, connection: Option<&str>) -> AgentSpec {
        AgentSpec {
            name: "everything".into(),
            kind: AgentKind::Mcp,
            description: "d".into(),
            examples: vec![],
            credential: CredentialSpec::default(),
            allowed_roles: None,
            timeout_ms: None,
            connection: connection.map(str::to_string),
            settings,
            tool_roles: None,
            guardrails: None,
        }
    }

    fn err(settings: serde_json::Value, connection: Option<&str>) -> String {
        Settings::from_spec(&spec(settings, connection), Path::new("/agents")).expect_err("invalid").message
    }

    #[test]
    fn exactly_one_transport() {
        let e = err(json!({}), None);
        assert!(e.starts_with("mcp.url:") && e.contains("no transport"), "{e}");
        let e = err(serde_json::Value::Null, None);
        assert!(e.starts_with("mcp.url:") && e.contains("no transport"), "{e}");
        let e = err(json!({"url": "/mcp", "command": "node"}), Some("c"));
        assert!(e.starts_with("mcp.command:") && e.contains("not both"), "{e}");
        let e = err(json!({"url": "http://x/mcp"}), None);
        assert!(e.starts_with("mcp.url:") && e.contains("connection"), "{e}");
        let e = err(json!({"args": ["x"]}), Some("c"));
        assert!(e.starts_with("mcp.args:"), "{e}");

        let http = Settings::from_spec(&spec(serde_json::Value::Null, Some("c")), Path::new("/a"))
            .expect("base_url");
        assert_eq!(http.transport, Transport::Http { url: None });
        assert_eq!(http.max_result_bytes, DEFAULT_MAX_RESULT_BYTES);
        let stdio = Settings::from_spec(
            &spec(
                json!({"command": "node", "args": ["s.js", "stdio"], "env": {"A": "1"}, "cwd": "srv"}),
                None,
            ),
            Path::new("/agents"),
        )
        .expect("stdio");
        let Transport::Stdio { command, args, env, cwd } = stdio.transport else { panic!("stdio") };
        assert_eq!((command.as_str(), args.len(), env["A"].as_str()), ("node", 2, "1"));
        assert_eq!(cwd, Some(PathBuf::from("/agents/srv")));
    }

    #[test]
    fn fields_are_checked_and_named() {
        let e = err(json!({"command": "node", "tools": []}), None);
        assert!(e.starts_with("mcp.tools:"), "{e}");
        let e = err(json!({"command": "node", "timeout_ms": 0}), None);
        assert!(e.starts_with("mcp.timeout_ms:"), "{e}");
        let e = err(json!({"command": "node", "max_result_bytes": 0}), None);
        assert!(e.starts_with("mcp.max_result_bytes:"), "{e}");
        let e = err(json!({"command": "node", "env": {"A=B": "x"}}), None);
        assert!(e.starts_with("mcp.env:"), "{e}");
        let e = err(json!({"command": "node", "colour": "blue"}), None);
        assert!(e.starts_with("mcp:") && e.contains("colour"), "{e}");
        let s = Settings::from_spec(
            &spec(json!({"command": "node", "tools": ["echo"], "timeout_ms": 50}), None),
            Path::new("/"),
        )
        .expect("valid");
        assert!(s.allows("echo") && !s.allows("get-env"));
        assert_eq!(s.timeout, Some(Duration::from_millis(50)));
    }
}
