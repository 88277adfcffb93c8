//! USE CONNECTION grant scenarios every backend must pass; the backend test files call them with
//! their own stores.

use switchboard_core::{ErrorKind, unix_nanos_now};
use switchboard_store::{ConnectionGrant, Store};

fn now_ms() -> u64 {
    unix_nanos_now() / 1_000_000
}

/// `(connection, principal, granted_by)` of the active grants, in the store's order.
pub async fn held(store: &dyn Store, connection: Option<&str>) -> Vec<(String, String, String)> {
    store
        .connection_grants(connection)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.connection, g.principal, g.granted_by))
        .collect()
}

fn triples(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter().map(|(c, p, b)| (c.to_string(), p.to_string(), b.to_string())).collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Grant, revoke and list, with their return values and the version counter.
pub async fn grant_revoke_and_list_round_trip(store: &dyn Store) {
    assert!(store.connection_grants(None).await.unwrap().is_empty());
    let v0 = store.grants_version().await.unwrap();

    let before = now_ms();
    assert!(store.grant_connection("warehouse", "alice@example.com", "admin@example.com").await.unwrap());
    let after = now_ms();
    let v1 = store.grants_version().await.unwrap();
    assert!(v1 > v0, "a new grant bumps the version ({v0} -> {v1})");

    assert!(!store.grant_connection("warehouse", "alice@example.com", "other@example.com").await.unwrap());
    assert_eq!(store.grants_version().await.unwrap(), v1, "re-granting a held grant changes nothing");

    let grants = store.connection_grants(Some("warehouse")).await.unwrap();
    assert_eq!(grants.len(), 1);
    let ConnectionGrant { connection, principal, granted_by, granted_unix_ms } = &grants[0];
    assert_eq!((connection.as_str(), principal.as_str()), ("warehouse", "alice@example.com"));
    assert_eq!(granted_by, "admin@example.com", "the first grantor is kept");
    assert!((before..=after).contains(granted_unix_ms), "{before} <= {granted_unix_ms} <= {after}");

    // Byte order, as in SQLite: upper case sorts before lower case whatever the collation.
    assert!(store.grant_connection("warehouse", "sales", "config").await.unwrap());
    assert!(store.grant_connection("warehouse", "Zed@example.com", "config").await.unwrap());
    assert!(store.grant_connection("tickets_mcp", "alice@example.com", "cli:root").await.unwrap());
    // Names are data, bound as parameters.
    let tricky = "x'); DROP TABLE connection_grants; --";
    assert!(store.grant_connection("tickets_mcp", tricky, "cli:root").await.unwrap());
    assert_eq!(
        held(store, None).await,
        triples(&[
            ("tickets_mcp", "alice@example.com", "cli:root"),
            ("tickets_mcp", tricky, "cli:root"),
            ("warehouse", "Zed@example.com", "config"),
            ("warehouse", "alice@example.com", "admin@example.com"),
            ("warehouse", "sales", "config"),
        ])
    );
    assert_eq!(held(store, Some("tickets_mcp")).await.len(), 2);
    assert!(held(store, Some("nope")).await.is_empty());

    let v2 = store.grants_version().await.unwrap();
    assert!(store.revoke_connection("warehouse", "alice@example.com", "admin@example.com").await.unwrap());
    let v3 = store.grants_version().await.unwrap();
    assert!(v3 > v2, "a revoke bumps the version ({v2} -> {v3})");
    assert!(!store.revoke_connection("warehouse", "alice@example.com", "admin@example.com").await.unwrap());
    assert!(!store.revoke_connection("warehouse", "nobody", "admin@example.com").await.unwrap());
    assert_eq!(store.grants_version().await.unwrap(), v3, "revoking nothing changes nothing");
    assert_eq!(
        held(store, Some("warehouse")).await,
        triples(&[("warehouse", "Zed@example.com", "config"), ("warehouse", "sales", "config")])
    );
    assert_eq!(held(store, Some("tickets_mcp")).await.len(), 2, "other connections keep their grants");

    // A later grant re-activates the revoked pair, under the new grantor.
    assert!(store.grant_connection("warehouse", "alice@example.com", "boss@example.com").await.unwrap());
    assert!(store.grants_version().await.unwrap() > v3);
    assert!(held(store, Some("warehouse")).await.contains(&(
        "warehouse".into(),
        "alice@example.com".into(),
        "boss@example.com".into()
    )));
}

/// Empty names are refused before anything is written.
pub async fn invalid_names_are_refused(store: &dyn Store) {
    let v0 = store.grants_version().await.unwrap();
    let refusals = [
        store.grant_connection("", "alice", "admin").await,
        store.grant_connection("warehouse", "", "admin").await,
        store.grant_connection("warehouse", "alice", "").await,
        store.revoke_connection(" ", "alice", "admin").await,
        store.revoke_connection("warehouse", "", "admin").await,
    ];
    for result in refusals {
        let e = result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("must not be empty"), "{}", e.message);
    }
    let e = store.seed_connection_grants("warehouse", &names(&["alice", ""]), "config").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("principal must not be empty"), "{}", e.message);
    let e = store.seed_connection_grants("", &[], "config").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);

    assert!(store.connection_grants(None).await.unwrap().is_empty(), "a refused seed writes nothing");
    assert_eq!(store.grants_version().await.unwrap(), v0);
}

/// Seeding grants only principals never granted or revoked on the connection before.
pub async fn seed_grants_only_never_seen_principals(store: &dyn Store) {
    let v0 = store.grants_version().await.unwrap();
    store.seed_connection_grants("warehouse", &names(&["bob", "alice"]), "config").await.unwrap();
    let v1 = store.grants_version().await.unwrap();
    assert!(v1 > v0);
    assert_eq!(
        held(store, Some("warehouse")).await,
        triples(&[("warehouse", "alice", "config"), ("warehouse", "bob", "config")])
    );
    let alice_granted = store.connection_grants(Some("warehouse")).await.unwrap()[0].granted_unix_ms;

    // Seeding the same configuration again (a restart) changes nothing.
    store.seed_connection_grants("warehouse", &names(&["alice", "bob"]), "config").await.unwrap();
    store.seed_connection_grants("warehouse", &[], "config").await.unwrap();
    assert_eq!(store.grants_version().await.unwrap(), v1, "a seed that adds nothing changes nothing");

    assert!(store.revoke_connection("warehouse", "bob", "admin").await.unwrap());
    assert!(store.grant_connection("warehouse", "carol", "admin").await.unwrap());
    // Revoked before configuration ever granted it: the administrator's "no" sticks too.
    assert!(!store.revoke_connection("warehouse", "eve", "admin").await.unwrap());
    let v2 = store.grants_version().await.unwrap();

    store
        .seed_connection_grants(
            "warehouse",
            &names(&["alice", "bob", "carol", "dave", "dave", "eve"]),
            "config",
        )
        .await
        .unwrap();
    assert!(store.grants_version().await.unwrap() > v2, "dave is new");
    assert_eq!(
        held(store, Some("warehouse")).await,
        triples(&[
            ("warehouse", "alice", "config"),
            ("warehouse", "carol", "admin"),
            ("warehouse", "dave", "config"),
        ]),
        "bob and eve stay revoked, carol keeps her grantor, dave is added once"
    );
    assert_eq!(
        store.connection_grants(Some("warehouse")).await.unwrap()[0].granted_unix_ms,
        alice_granted,
        "an existing grant is left untouched"
    );

    // Revocations are per connection.
    store.seed_connection_grants("tickets_mcp", &names(&["bob"]), "config").await.unwrap();
    assert_eq!(held(store, Some("tickets_mcp")).await, triples(&[("tickets_mcp", "bob", "config")]));
}

/// Two stores on one database (two processes, or two replicas) see each other's changes.
pub async fn stores_sharing_a_database_see_each_others_grants(a: &dyn Store, b: &dyn Store) {
    let a0 = a.grants_version().await.unwrap();
    let b0 = b.grants_version().await.unwrap();
    assert_eq!(a0, b0, "one counter, in the database");

    assert!(a.grant_connection("warehouse", "alice", "cli:root").await.unwrap());
    let b1 = b.grants_version().await.unwrap();
    assert!(b1 > b0, "b sees a's grant through the version");
    assert_eq!(held(b, None).await, triples(&[("warehouse", "alice", "cli:root")]));
    assert!(!b.grant_connection("warehouse", "alice", "cli:root").await.unwrap(), "already held, via a");

    assert!(b.revoke_connection("warehouse", "alice", "admin").await.unwrap());
    let a2 = a.grants_version().await.unwrap();
    assert!(a2 > b1, "a sees b's revoke through the version");
    assert!(held(a, None).await.is_empty());
    assert_eq!(a2, b.grants_version().await.unwrap());
}
