//! Configuration validation: every problem is reported, each with its file and field.

use std::path::{Path, PathBuf};
use switchboard_runtime::Runtime;
use switchboard_runtime::config::{ConfigErrors, ConfigSource};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(main: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("agents")).expect("agents dir");
        std::fs::create_dir_all(dir.path().join("docs")).expect("docs dir");
        std::fs::write(
            dir.path().join("docs/handbook.md"),
            "# Handbook\n\nThe hotel limit is $250 per night.\n",
        )
        .expect("doc");
        std::fs::write(dir.path().join("switchboard.toml"), main).expect("main");
        Self { dir }
    }

    fn agent(&self, file: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join("agents").join(file), text).expect("agent file");
        self
    }

    fn knowledge_agent(&self, name: &str) -> &Self {
        self.agent(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nkind = \"knowledge\"\ndescription = \"Docs {name}.\"\n[knowledge]\npath = \"docs\"\n"
            ),
        )
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("switchboard.toml")
    }

    fn validate(&self) -> Result<switchboard_runtime::config::LoadedConfig, ConfigErrors> {
        Runtime::validate(&ConfigSource::File(self.path()))
    }

    fn problems(&self) -> Vec<String> {
        match self.validate() {
            Ok(_) => panic!("expected configuration problems in {}", self.dir.path().display()),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }
}

const MAIN: &str = "data_dir = \".\"\n";

fn label(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

#[test]
fn a_valid_configuration_loads_with_defaults() {
    let f = Fixture::new(MAIN);
    f.knowledge_agent("handbook");
    let loaded = f.validate().expect("valid");
    assert_eq!(loaded.agents.len(), 1);
    assert_eq!(loaded.agents[0].name, "handbook");
    assert_eq!(loaded.agents[0].timeout_ms, Some(15_000), "the supervisor default fills in the timeout");
    assert_eq!(loaded.config.supervisor.max_hops, 32);
}

#[test]
fn twenty_one_agents_exceed_the_limit_of_twenty() {
    let f = Fixture::new(MAIN);
    for i in 0..21 {
        f.knowledge_agent(&format!("docs{i:02}"));
    }
    let problems = f.problems();
    assert!(problems.iter().any(|p| p.contains("21 agents") && p.contains("limit of 20")), "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.starts_with(&label(f.dir.path(), "agents"))),
        "names the folder: {problems:#?}"
    );

    let g = Fixture::new(MAIN);
    for i in 0..20 {
        g.knowledge_agent(&format!("docs{i:02}"));
    }
    assert_eq!(g.validate().expect("twenty is allowed").agents.len(), 20);
}

#[test]
fn every_problem_is_reported_with_file_and_field() {
    let f = Fixture::new("[router]\nkind = \"llm\"\nthreshold = 2.0\n[supervisor]\nmax_hops = 0\n");
    f.agent("bad_field.toml", "name = \"x\"\nkind = \"knowledge\"\ndescription = \"d\"\ncolour = \"red\"\n");
    f.agent(
        "manual.toml",
        "name = \"m\"\nkind = \"knowledge\"\ndescription = \"d\"\n[credential]\nmode = \"manual\"\n[knowledge]\npath = \"docs\"\n",
    );
    f.agent(
        "inline.toml",
        "name = \"i\"\nkind = \"knowledge\"\ndescription = \"d\"\n[credential]\nmode = \"manual\"\nsecret = \"sk-live-123\"\n[knowledge]\npath = \"docs\"\n",
    );
    f.agent("wrong_table.toml", "name = \"w\"\nkind = \"knowledge\"\ndescription = \"d\"\n[genie]\ndatabase = \"x.db\"\n[knowledge]\npath = \"docs\"\n");
    f.agent(
        "missing_docs.toml",
        "name = \"n\"\nkind = \"knowledge\"\ndescription = \"d\"\n[knowledge]\npath = \"nowhere\"\n",
    );
    f.agent(
        "dup1.toml",
        "name = \"same\"\nkind = \"knowledge\"\ndescription = \"d\"\n[knowledge]\npath = \"docs\"\n",
    );
    f.agent(
        "dup2.toml",
        "name = \"same\"\nkind = \"knowledge\"\ndescription = \"d\"\n[knowledge]\npath = \"docs\"\n",
    );
    f.agent("kind.toml", "name = \"k\"\nkind = \"oracle\"\ndescription = \"d\"\n");
    let problems = f.problems();
    let has = |file: &str, needle: &str| {
        let file = label(f.dir.path(), file);
        problems.iter().any(|p| p.starts_with(&file) && p.contains(needle))
    };
    assert!(has("switchboard.toml", "router.kind: the llm router needs an [llm] section"), "{problems:#?}");
    assert!(has("switchboard.toml", "router.threshold"), "{problems:#?}");
    assert!(has("switchboard.toml", "supervisor.max_hops"), "{problems:#?}");
    assert!(has("agents/bad_field.toml", "unknown field `colour`"), "{problems:#?}");
    assert!(has("agents/bad_field.toml", "line 4"), "{problems:#?}");
    assert!(
        has("agents/manual.toml", "credential.secret: manual credentials need a secret source"),
        "{problems:#?}"
    );
    assert!(has("agents/inline.toml", "inline secrets are not allowed"), "{problems:#?}");
    assert!(
        !problems.iter().any(|p| p.contains("sk-live-123")),
        "the inline secret is not echoed: {problems:#?}"
    );
    assert!(
        has("agents/wrong_table.toml", "genie: a `[genie]` table does not belong to a `knowledge` agent"),
        "{problems:#?}"
    );
    assert!(has("agents/missing_docs.toml", "knowledge"), "{problems:#?}");
    assert!(has("agents/dup2.toml", "name: agent name `same` is already used"), "{problems:#?}");
    assert!(has("agents/kind.toml", "unknown variant `oracle`"), "{problems:#?}");
}

#[test]
fn a_shortlist_is_only_for_the_llm_router() {
    let f = Fixture::new("[router]\nshortlist = 3\n");
    f.knowledge_agent("docs");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    assert!(
        problems.iter().any(|p| p.starts_with(&file) && p.contains("router.shortlist: only the llm router")),
        "{problems:#?}"
    );
    let negative = Fixture::new("[router]\nkind = \"llm\"\nshortlist = -1\n");
    assert!(negative.problems().iter().any(|p| p.contains("shortlist")), "{:#?}", negative.problems());
}

#[test]
fn an_unreadable_config_file_is_a_clear_problem() {
    let problems =
        match Runtime::validate(&ConfigSource::File(PathBuf::from("/nonexistent/switchboard.toml"))) {
            Ok(_) => panic!("must fail"),
            Err(e) => e.to_string(),
        };
    assert!(problems.contains("/nonexistent/switchboard.toml: cannot be read"), "{problems}");
}

#[test]
fn the_builtin_demo_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    switchboard_runtime::demo::prepare(dir.path()).expect("demo data");
    let loaded =
        Runtime::validate(&switchboard_runtime::demo::source(dir.path())).expect("the demo is valid");
    let mut names: Vec<&str> = loaded.agents.iter().map(|a| a.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["audit", "deal_desk", "policies", "sales", "tickets"]);
    assert_eq!(loaded.config.connections.len(), 1, "the tickets_mcp connection");
    assert_eq!(loaded.config.identity.dev_users.len(), 6);
}

#[test]
fn connections_and_the_agents_that_use_them_are_validated_with_file_field_and_line() {
    let main = r#"data_dir = "."

[[connections]]
name = "jira"
base_url = "http://jira.example.com/rest"

[[connections]]
name = "github"
base_url = "https://api.github.com"
auth = "bearer"

[[connections]]
name = "local_dev"
base_url = "http://127.0.0.1:9000/mcp"
allow_insecure_loopback = true

[[connections]]
name = "local_tools"
description = "Governs local stdio MCP servers; no URL of its own."
"#;
    let f = Fixture::new(main);
    f.knowledge_agent("docs");
    f.agent(
        "issues.toml",
        "name = \"issues\"\nkind = \"mcp\"\ndescription = \"Issues.\"\nconnection = \"gitlab\"\n[mcp]\nurl = \"/mcp\"\n",
    );
    f.agent("orphan.toml", "name = \"orphan\"\nkind = \"mcp\"\ndescription = \"No connection.\"\n[mcp]\nurl = \"https://x.example.com/mcp\"\n");
    f.agent("bare.toml", "name = \"bare\"\nkind = \"mcp\"\ndescription = \"No transport.\"\nconnection = \"local_tools\"\n[mcp]\n");
    let main_label = label(f.dir.path(), "switchboard.toml");
    let problems = f.problems();
    let expect = |needle: &str| {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "no problem containing {needle:?} in {problems:#?}"
        );
    };
    // A non-HTTPS base URL without the loopback setting: file, field and line.
    expect(&format!("{main_label}: connections[0].base_url: `http://jira.example.com/rest` is not https"));
    expect("(line 5)");
    // Bearer auth without its secret.
    expect(&format!("{main_label}: connections[1].secret: auth = \"bearer\" needs `secret`"));
    // An agent naming an undeclared connection, with its line.
    expect(&format!(
        "{}: connection: connection `gitlab` is not declared",
        label(f.dir.path(), "agents/issues.toml")
    ));
    expect("(line 4)");
    // An mcp agent with no connection, and one with no transport.
    expect(&format!(
        "{}: connection: mcp agents reach the outside only through a named connection",
        label(f.dir.path(), "agents/orphan.toml")
    ));
    let bare = label(f.dir.path(), "agents/bare.toml");
    assert!(
        problems.iter().any(|p| p.starts_with(&bare) && p.contains("mcp") && p.contains("transport")),
        "no transport problem for {bare} in {problems:#?}"
    );
}

#[test]
fn server_hardening_settings_have_safe_defaults_and_are_checked() {
    let f = Fixture::new(MAIN);
    f.knowledge_agent("handbook");
    let server = f.validate().expect("valid").config.server;
    assert_eq!(server.header_read_timeout_ms, 10_000);
    assert_eq!(server.body_read_timeout_ms, 30_000);
    assert_eq!(server.keep_alive_timeout_ms, 60_000);
    assert_eq!(server.max_connections, 1024);
    assert_eq!(server.max_connections_per_ip, 256);
    assert_eq!(server.shutdown_timeout_ms, 30_000);
    assert!(server.health_token.is_none() && server.metrics_token.is_none(), "open by default");

    let f = Fixture::new(
        "data_dir = \".\"\n[server]\nheader_read_timeout_ms = 0\nkeep_alive_timeout_ms = 0\n\
         max_connections = 10\nmax_connections_per_ip = 20\nshutdown_timeout_ms = 0\n\
         health_token = \"env:SB_HEALTH\"\n",
    );
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("server.header_read_timeout_ms: must be greater than 0"), "{problems:#?}");
    assert!(has("server.keep_alive_timeout_ms: must be greater than 0"), "{problems:#?}");
    assert!(has("server.shutdown_timeout_ms: must be greater than 0"), "{problems:#?}");
    assert!(
        has("server.max_connections_per_ip: must not exceed server.max_connections (10)"),
        "{problems:#?}"
    );
    assert!(!has("server.body_read_timeout_ms"), "{problems:#?}");

    // Probe tokens are secret references, never inline secrets.
    let f = Fixture::new("data_dir = \".\"\n[server]\nmetrics_token = \"hunter2\"\n");
    f.knowledge_agent("handbook");
    let problems = f.problems();
    assert!(problems.iter().any(|p| p.contains("inline secrets are not allowed")), "{problems:#?}");
}

#[test]
fn limits_and_the_spill_file_are_validated_with_file_and_field() {
    let f = Fixture::new(
        "data_dir = \".\"\n[limits]\nredis = \"rediss://u:hunter2@cache:6380\"\nuser = { qpm = 0 }\n\
         endpoint = { qpm = 100, tpm = 0 }\n[limits.agents]\nnobody = { qpm = 5 }\n\
         [limits.connections]\nnowhere = { qpm = 5 }\n[limits.groups]\nwest_sales = { qpm = 10, rpm = 3 }\n\
         [store]\nspill_max_bytes = 0\n",
    );
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    let has = |needle: &str| problems.iter().any(|p| p.contains(&file) && p.contains(needle));
    // An unknown key inside a rate stops parsing, so the rest is checked on its own below.
    assert!(has("unknown field `rpm`"), "{problems:#?}");
    let f = Fixture::new(
        "data_dir = \".\"\n[limits]\nredis = \"rediss://u:hunter2@cache:6380\"\nuser = { qpm = 0 }\n\
         endpoint = { qpm = 100, tpm = 0 }\n[limits.agents]\nnobody = { qpm = 5 }\n\
         [limits.connections]\nnowhere = { qpm = 5 }\n[store]\nspill_max_bytes = 0\n",
    );
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    let has = |needle: &str| problems.iter().any(|p| p.contains(&file) && p.contains(needle));
    assert!(has("limits.user.qpm: must be at least 1"), "{problems:#?}");
    assert!(has("limits.endpoint.tpm: must be at least 1"), "{problems:#?}");
    assert!(has("limits.agents.nobody: no agent is named `nobody`"), "{problems:#?}");
    assert!(has("limits.connections.nowhere: no connection is named `nowhere`"), "{problems:#?}");
    assert!(has("limits.redis: rediss:// (TLS) is not supported"), "{problems:#?}");
    assert!(has("store.spill_max_bytes: must be at least 1"), "{problems:#?}");
    assert!(problems.iter().all(|p| !p.contains("hunter2")), "the Redis password never shows: {problems:#?}");

    let f = Fixture::new(
        "data_dir = \".\"\n[limits]\nredis = \"env:SB_REDIS\"\nuser = { qpm = 10, tpm = 5000 }\n\
         [limits.users]\n\"dave@example.com\" = { qpm = 100 }\n[limits.agents]\nhandbook = { qpm = 5 }\n",
    );
    f.knowledge_agent("handbook");
    let limits = f.validate().expect("valid").config.limits;
    assert_eq!(limits.user.qpm, Some(10));
    assert_eq!(limits.users["dave@example.com"].qpm, Some(100));
    assert_eq!(limits.agents["handbook"].qpm, Some(5));
}

#[test]
fn the_payload_log_is_off_by_default_and_validated_with_file_and_field() {
    let f = Fixture::new("data_dir = \".\"\n");
    f.knowledge_agent("handbook");
    let log = f.validate().expect("valid").config.payload_log;
    assert!(!log.enabled, "off by default");
    assert_eq!(log.max_bytes, 65536);

    for max_bytes in ["0", "16777217"] {
        let f = Fixture::new(&format!(
            "data_dir = \".\"\n[payload_log]\nenabled = true\nmax_bytes = {max_bytes}\n"
        ));
        f.knowledge_agent("handbook");
        let problems = f.problems();
        let file = label(f.dir.path(), "switchboard.toml");
        let field = format!("{file}: payload_log.max_bytes: must be between 1 and 16777216");
        assert!(problems.iter().any(|p| p.contains(&field)), "{problems:#?}");
    }
    let f = Fixture::new("data_dir = \".\"\n[payload_log]\nenabled = true\nmax_byte = 10\n");
    f.knowledge_agent("handbook");
    assert!(f.problems().iter().any(|p| p.contains("unknown field `max_byte`")), "a typo is refused");
}

#[test]
fn guardrails_and_tool_roles_are_validated_with_file_and_field() {
    let f = Fixture::new(
        "data_dir = \".\"\n[guardrails]\npii = { input = \"block\", output = \"scrub\" }\n\
         topics = { block = [\"ok\"] }\n",
    );
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    assert!(
        problems.iter().any(|p| p.contains(&file) && p.contains("unknown variant `scrub`")),
        "{problems:#?}"
    );

    let f = Fixture::new("data_dir = \".\"\n[guardrails]\ntopics = { block = [\"fine\", \"  \"] }\n");
    f.agent(
        "tickets.toml",
        "name = \"tickets\"\nkind = \"knowledge\"\ndescription = \"Docs.\"\n[knowledge]\npath = \"docs\"\n\
         [tool_roles]\nopen_ticket = []\n[guardrails]\ntopics = { block = [\"\"] }\n",
    );
    let problems = f.problems();
    let has = |file: &str, needle: &str| {
        let file = label(f.dir.path(), file);
        problems.iter().any(|p| p.contains(&file) && p.contains(needle))
    };
    assert!(
        has("switchboard.toml", "guardrails.topics.block[1]: a topic must not be empty"),
        "{problems:#?}"
    );
    assert!(has("agents/tickets.toml", "tool_roles.open_ticket: an empty list lets nobody"), "{problems:#?}");
    assert!(
        has("agents/tickets.toml", "guardrails.topics.block[0]: a topic must not be empty"),
        "{problems:#?}"
    );

    let f = Fixture::new(
        "data_dir = \".\"\n[guardrails]\npii = { input = \"mask\", kinds = [\"card_number\", \"ssn\"] }\n",
    );
    f.agent(
        "tickets.toml",
        "name = \"tickets\"\nkind = \"knowledge\"\ndescription = \"Docs.\"\n[knowledge]\npath = \"docs\"\n\
         [tool_roles]\nopen_ticket = [\"managers\"]\n[guardrails]\npii = { output = \"mask\" }\n",
    );
    let loaded = f.validate().expect("valid");
    let tickets = loaded.agents.iter().find(|a| a.name == "tickets").expect("tickets");
    assert_eq!(tickets.tool_roles.as_ref().unwrap()["open_ticket"], ["managers"]);
    assert!(tickets.guardrails.as_ref().is_some_and(|g| g.pii.output == switchboard_core::PiiAction::Mask));
}

#[test]
fn resilience_and_llm_fallbacks_are_validated_with_file_and_field() {
    let f = Fixture::new(
        "data_dir = \".\"\n\
         [resilience]\nmax_attempts = 0\nbase_backoff_ms = 500\nmax_backoff_ms = 100\nbreaker_failures = 3\nbreaker_cool_down_ms = 0\n\
         [llm]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n\
         fallbacks = [{ model = \"a\" }, { model = \"b\", base_url = \"ftp://x\" }, { model = \"\" }]\n\
         split = [{ model = \"m\", weight = 80 }, { model = \"m\", weight = 0 }]\n",
    );
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    let has = |needle: &str| problems.iter().any(|p| p.starts_with(&file) && p.contains(needle));
    for needle in [
        "resilience.max_attempts",
        "resilience.max_backoff_ms",
        "resilience.breaker_cool_down_ms",
        "llm.fallbacks: at most 2",
        "llm.fallbacks[1].base_url",
        "llm.fallbacks[2].model",
        "llm.split[1].model: `m` is listed twice",
        "llm.split[1].weight",
    ] {
        assert!(has(needle), "{needle}: {problems:#?}");
    }
}

#[test]
fn a_resilience_section_loads_with_its_defaults() {
    let f = Fixture::new(
        "data_dir = \".\"\n[resilience]\nmax_attempts = 4\n\
         [llm]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n\
         fallbacks = [{ model = \"alt\" }]\nsplit = [{ model = \"m\", weight = 80 }, { model = \"n\", weight = 20 }]\n",
    );
    f.knowledge_agent("handbook");
    let loaded = f.validate().expect("valid");
    let r = &loaded.config.resilience;
    assert_eq!((r.max_attempts, r.base_backoff_ms, r.breaker_failures), (4, 100, 5));
    let llm = loaded.config.llm.as_ref().expect("llm");
    assert_eq!((llm.fallbacks.len(), llm.split.len()), (1, 2));
}

#[test]
fn per_connection_resilience_overrides_are_validated_with_file_and_field() {
    let connection =
        "[[connections]]\nname = \"partner\"\nbase_url = \"https://api.example.com\"\nauth = \"none\"\n";
    let f = Fixture::new(&format!(
        "data_dir = \".\"\n{connection}\
         [resilience]\nmax_attempts = 3\nbase_backoff_ms = 200\n\
         [resilience.connections.partner]\nmax_attempts = 11\nmax_backoff_ms = 100\n\
         [resilience.connections.nowhere]\nmax_attempts = 2\n"
    ));
    f.knowledge_agent("handbook");
    let problems = f.problems();
    let file = label(f.dir.path(), "switchboard.toml");
    let has = |needle: &str| problems.iter().any(|p| p.starts_with(&file) && p.contains(needle));
    for needle in [
        "resilience.connections.partner.max_attempts: must be 1-10",
        // The override's ceiling is checked against the global floor it inherits.
        "resilience.connections.partner.max_backoff_ms: must be at least base_backoff_ms (200)",
        "resilience.connections.nowhere: names connection `nowhere`, which is not declared",
    ] {
        assert!(has(needle), "{needle}: {problems:#?}");
    }
    let f = Fixture::new(&format!(
        "data_dir = \".\"\n{connection}[resilience.connections.partner]\nmax_attempts = 5\nbreaker_failures = 0\nretries = 2\n"
    ));
    f.knowledge_agent("handbook");
    let problems = f.problems();
    assert!(problems.iter().any(|p| p.contains("retries")), "unknown fields are refused: {problems:#?}");

    let f = Fixture::new(&format!(
        "data_dir = \".\"\n{connection}[resilience.connections.partner]\nmax_attempts = 5\nbreaker_failures = 0\n"
    ));
    f.knowledge_agent("handbook");
    let loaded = f.validate().expect("valid");
    let built = loaded.config.resilience.build();
    assert_eq!(built.policy("partner").retry.max_attempts, 5);
    assert!(built.policy("partner").breaker.is_none(), "the partner's breaker is off");
    assert_eq!(built.policy("other").retry.max_attempts, 3, "other upstreams keep the global policy");
    assert!(built.policy("other").breaker.is_some());
}

#[test]
fn per_user_oauth_connections_name_each_missing_or_wrong_setting() {
    let main = r#"data_dir = "."

[[connections]]
name = "drive"
base_url = "https://files.example.com"
auth = "oauth_per_user"
authorize_url = "http://idp.example.com/authorize"
redirect_url = "https://sb.example.com/oauth/done"
client_id = "sb"

[[connections]]
name = "wiki"
base_url = "https://wiki.example.com"
auth = "bearer"
secret = "env:WIKI"
encryption_key = "env:KEY"
"#;
    let f = Fixture::new(main);
    f.knowledge_agent("docs");
    let main_label = label(f.dir.path(), "switchboard.toml");
    let problems = f.problems();
    let expect = |needle: &str| {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "no problem containing {needle:?} in {problems:#?}"
        );
    };
    expect(&format!("{main_label}: connections[0].token_url: auth = \"oauth_per_user\" needs `token_url`"));
    expect(&format!(
        "{main_label}: connections[0].client_secret: auth = \"oauth_per_user\" needs `client_secret`"
    ));
    expect(&format!(
        "{main_label}: connections[0].encryption_key: auth = \"oauth_per_user\" needs `encryption_key`"
    ));
    expect(&format!(
        "{main_label}: connections[0].authorize_url: `http://idp.example.com/authorize` is not https"
    ));
    expect(&format!(
        "{main_label}: connections[0].redirect_url: `https://sb.example.com/oauth/done` must end in /oauth/callback"
    ));
    expect("(line 8)");
    expect(&format!(
        "{main_label}: connections[1].encryption_key: `encryption_key` is only used with auth = \"oauth_per_user\""
    ));
}
