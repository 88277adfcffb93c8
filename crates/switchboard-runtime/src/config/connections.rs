//! Validation of `[[connections]]` and of the agents that name one. Problems carry the file,
//! the field and, where it can be found, the line.

use super::Problem;
use super::files::{ConfigFile, Files};
use super::model::{Config, valid_name};
use switchboard_core::{AgentKind, AgentSpec, ConnectionAuth, ConnectionSpec};

/// The 1-based line of `key = …` inside the `index`-th `[[table]]` of `text`, for messages.
fn line_in_array_table(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let mut seen = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            if line == header {
                seen = Some(seen.map_or(0, |i| i + 1));
            } else if seen == Some(index) {
                break;
            }
            continue;
        }
        let written = line.split('=').next().unwrap_or("").trim();
        if seen == Some(index) && written == key {
            return Some(n + 1);
        }
    }
    None
}

/// The 1-based line of the top-level `key = …` of an agent file.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| l.split('=').next().unwrap_or("").trim() == key)
        .map(|n| n + 1)
}

fn with_line(message: String, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{message} (line {line})"),
        None => message,
    }
}

/// Connections: names, URLs and authentication settings, and the agents that name them.
pub(super) fn check_connections(config: &Config, files: &Files, problems: &mut Vec<Problem>) {
    let main = &files.main;
    for (i, c) in config.connections.iter().enumerate() {
        let problem = |problems: &mut Vec<Problem>, key: &str, message: String| {
            let line = line_in_array_table(&main.text, "connections", i, key)
                .or_else(|| line_in_array_table(&main.text, "connections", i, "name"));
            problems.push(Problem {
                file: main.label.clone(),
                field: format!("connections[{i}].{key}"),
                message: with_line(message, line),
            });
        };
        if !valid_name(&c.name) {
            problem(
                problems,
                "name",
                format!(
                    "`{}` is not a valid connection name: use 1-64 of a-z, 0-9, _ and -, starting with a letter",
                    c.name
                ),
            );
        }
        if config.connections[..i].iter().any(|p| p.name == c.name) {
            problem(
                problems,
                "name",
                format!("connection name `{}` is already used (names are unique)", c.name),
            );
        }
        if let Some(raw) = &c.base_url {
            match switchboard_govern::reqwest::Url::parse(raw) {
                Err(e) => problem(problems, "base_url", format!("`{raw}` is not a URL: {e}")),
                Ok(url) => {
                    let host = url.host_str().unwrap_or_default().to_string();
                    if url.scheme() != "https" && !c.allow_insecure_loopback {
                        problem(
                            problems,
                            "base_url",
                            format!(
                                "`{raw}` is not https; only https is allowed (set allow_insecure_loopback = true for a development server on loopback)"
                            ),
                        );
                    } else if let Err(e) = switchboard_govern::Connection::new(
                        ConnectionSpec { auth: ConnectionAuth::None, ..c.clone() },
                        None,
                    ) {
                        problem(
                            problems,
                            "base_url",
                            format!(
                                "{} (host `{host}`)",
                                e.message.trim_start_matches(&format!("connection `{}`: ", c.name))
                            ),
                        );
                    }
                }
            }
        }
        let needs = |field: &str, present: bool, problems: &mut Vec<Problem>| {
            if !present {
                problem(problems, field, format!("auth = \"{}\" needs `{field}`", c.auth.as_str()));
            }
        };
        match c.auth {
            ConnectionAuth::Bearer => needs("secret", c.secret.is_some(), problems),
            ConnectionAuth::OauthM2m => {
                needs("token_url", c.token_url.is_some(), problems);
                needs("client_id", c.client_id.is_some(), problems);
                needs("client_secret", c.client_secret.is_some(), problems);
            }
            ConnectionAuth::OauthPerUser => {
                for (field, value) in [
                    ("authorize_url", &c.authorize_url),
                    ("token_url", &c.token_url),
                    ("redirect_url", &c.redirect_url),
                ] {
                    needs(field, value.is_some(), problems);
                    // The same rules the client applies at start-up, with the same words.
                    if let Some(message) =
                        value.as_deref().and_then(|raw| switchboard_auth::endpoint_url(c, field, raw).err())
                    {
                        problem(problems, field, message);
                    }
                }
                needs("client_id", c.client_id.is_some(), problems);
                needs("client_secret", c.client_secret.is_some(), problems);
                needs("encryption_key", c.encryption_key.is_some(), problems);
            }
            ConnectionAuth::Caller | ConnectionAuth::None => {}
        }
        if c.auth != ConnectionAuth::OauthPerUser {
            let stray = [
                ("authorize_url", c.authorize_url.is_some()),
                ("redirect_url", c.redirect_url.is_some()),
                ("encryption_key", c.encryption_key.is_some()),
            ];
            for (field, _) in stray.iter().filter(|(_, present)| *present) {
                problem(
                    problems,
                    field,
                    format!(
                        "`{field}` is only used with auth = \"oauth_per_user\", not \"{}\"",
                        c.auth.as_str()
                    ),
                );
            }
        }
        if c.secret.is_some() && c.auth != ConnectionAuth::Bearer {
            problem(
                problems,
                "secret",
                format!("a secret is only used with auth = \"bearer\", not \"{}\"", c.auth.as_str()),
            );
        }
        if c.grants.iter().any(|g| g.trim().is_empty()) {
            problem(problems, "grants", "a grant names no principal".into());
        }
    }
    if let Some(name) = &config.demo.tickets_connection
        && !config.connections.iter().any(|c| &c.name == name)
    {
        problems.push(Problem {
            file: main.label.clone(),
            field: "demo.tickets_connection".into(),
            message: format!("names connection `{name}`, which is not declared in [[connections]]"),
        });
    }
}

/// The agent's `connection`: declared, and present where the kind needs one.
pub(super) fn check_agent_connection(
    agent: &AgentSpec,
    file: &ConfigFile,
    config: &Config,
    main_label: &str,
    problems: &mut Vec<Problem>,
) {
    let line = line_of_key(&file.text, "connection");
    let declared = agent.connection.as_ref().and_then(|n| config.connections.iter().find(|c| &c.name == n));
    if let Some(connection) = declared
        && agent.kind == AgentKind::Mcp
        && connection.base_url.is_none()
        && agent.settings.get("url").is_none()
        && agent.settings.get("command").is_none()
    {
        problems.push(Problem {
            file: file.label.clone(),
            field: "mcp".into(),
            message: format!(
                "an mcp agent has no transport: its connection `{}` has no base_url; set `url` (streamable HTTP) or `command` (a stdio server)",
                connection.name
            ),
        });
    }
    match &agent.connection {
        Some(name) if !config.connections.iter().any(|c| &c.name == name) => problems.push(Problem {
            file: file.label.clone(),
            field: "connection".into(),
            message: with_line(
                format!("connection `{name}` is not declared; add it as [[connections]] in {main_label}"),
                line,
            ),
        }),
        None if agent.kind == AgentKind::Mcp
            || (agent.kind == AgentKind::Tool && agent.settings.get("http").is_some()) =>
        {
            problems.push(Problem {
                file: file.label.clone(),
                field: "connection".into(),
                message: format!(
                    "{} agents reach the outside only through a named connection: add connection = \"NAME\" and declare it as [[connections]] in {main_label}",
                    if agent.kind == AgentKind::Mcp { "mcp" } else { "HTTP tool" },
                ),
            })
        }
        _ => {}
    }
}
