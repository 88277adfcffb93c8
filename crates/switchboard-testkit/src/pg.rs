//! A real PostgreSQL server for tests, one schema (or database) per test.
//!
//! The server comes from `SWITCHBOARD_TEST_POSTGRES_URL` (URL form), default
//! [`DEFAULT_URL`]. An unreachable server fails the test rather than skipping it: CI provides
//! PostgreSQL, and a silently skipped test would hide a broken backend.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_postgres::{Client, Config, NoTls};

/// The server tests use without `SWITCHBOARD_TEST_POSTGRES_URL`: a local one with trust
/// authentication and a `test` database.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `SWITCHBOARD_TEST_POSTGRES_URL`, or [`DEFAULT_URL`].
pub fn base_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// A connection to `url`, driven on the current runtime; panics, naming the server without its
/// password, when it cannot connect.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} is unreachable ({e}); these tests need a real server: start one or set \
             SWITCHBOARD_TEST_POSTGRES_URL",
            describe(url)
        )
    });
    tokio::spawn(connection);
    client
}

/// `postgres://user@host:port/db`: where `url` points, without its password or options.
fn describe(url: &str) -> String {
    let Ok(config) = url.parse::<Config>() else { return "<invalid PostgreSQL URL>".into() };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or_else(|| ports.first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_string() } else { hosts.join(",") };
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().or(config.get_user()).unwrap_or_default();
    format!("postgres://{user}{hosts}/{db}")
}

/// A schema of its own for one test, dropped (with everything in it) when the test ends, even
/// by panicking. Tests in parallel, or in several processes, never see each other's tables.
#[derive(Debug)]
pub struct TestSchema {
    base: String,
    name: String,
    url: String,
    admin: Client,
}

impl TestSchema {
    /// Creates a uniquely named schema on [`base_url`]'s server.
    pub async fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = base_url();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos();
        let name =
            format!("sb_test_{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&base).await;
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create the test schema");
        admin.batch_execute(&format!("SET search_path TO {name}")).await.expect("use the test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Self { base, name, url, admin }
    }

    /// The URL whose connections see only this schema (its `search_path`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's URL as configured, without this schema's `search_path`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The schema's name (`sb_test_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection of the test's own, with this schema as its `search_path`, to inspect or
    /// change what the code under test wrote.
    pub fn admin(&self) -> &Client {
        &self.admin
    }

    /// The number of rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        self.admin
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("counting {table}: {e}"))
            .get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // The test's runtime may be the one being torn down, so clean up on a runtime of our own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let admin = connect(&base).await;
                // A session left inside a transaction would block the drop forever; fail instead.
                admin.batch_execute("SET lock_timeout = '20s'").await.expect("set lock_timeout");
                if let Err(e) = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await {
                    panic!("dropping test schema {name} failed (a session still holds a lock?): {e:?}");
                }
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("dropping the test schema failed");
        }
    }
}

/// A database of its own for one test, dropped when the test ends (even by panicking). Unlike a
/// [`TestSchema`], a whole database can be made unavailable and available again
/// ([`TestDatabase::set_available`]), which is how the store's outage tests cut PostgreSQL off
/// from the code under test while the server itself keeps running for everyone else.
#[derive(Debug)]
pub struct TestDatabase {
    base: String,
    name: String,
    url: String,
    admin: Client,
}

impl TestDatabase {
    /// Creates a uniquely named database on [`base_url`]'s server.
    pub async fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = base_url();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos();
        let name =
            format!("sb_db_{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&base).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        let url = with_dbname(&base, &name);
        Self { base, name, url, admin }
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`sb_db_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to this database, for the test to inspect what the code under test wrote.
    /// Open it while the database is available.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Makes the database refuse new connections and ends every session on it (`false`), or
    /// accepts connections again (`true`). Clients see what they would in a real outage: their
    /// connections drop and reconnecting fails until it is available again.
    pub async fn set_available(&self, available: bool) {
        self.admin
            .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS {available}", self.name))
            .await
            .expect("ALTER DATABASE … ALLOW_CONNECTIONS");
        if !available {
            self.admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&self.name],
                )
                .await
                .expect("terminate the test database's sessions");
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let admin = connect(&base).await;
                // WITH (FORCE) ends sessions a killed server left behind.
                if let Err(e) =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
                {
                    panic!("dropping test database {name} failed: {e:?}");
                }
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("dropping the test database failed");
        }
    }
}

/// `url` pointing at database `name` instead (query string kept).
fn with_dbname(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    // `scheme://authority/db`: the database is what follows the authority's slash.
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_described_url_never_shows_the_password() {
        assert_eq!(
            super::describe("postgres://sb:hunter2@db.example:6543/audit?sslmode=disable"),
            "postgres://sb@db.example:6543/audit"
        );
        assert_eq!(super::describe("not a url"), "<invalid PostgreSQL URL>");
    }

    #[test]
    fn a_database_url_keeps_everything_but_the_database() {
        assert_eq!(super::with_dbname("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            super::with_dbname("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(super::with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
