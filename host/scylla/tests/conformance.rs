//! The Scylla backend against the storage conformance suite, on a real CQL node
//! (Apache Cassandra from `deploy/dev/cassandra up`, or $GUILDHALL_TEST_CQL).
//!
//! In CI (or with GUILDHALL_REQUIRE_CQL=1) a missing database fails these tests; on a
//! developer machine without one they print why and pass vacuously.

use std::sync::OnceLock;

use guildhall_scylla::{ScyllaConfig, ScyllaStore};

fn cql_node() -> String {
    std::env::var("GUILDHALL_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_CQL").is_some()
}

/// One keyspace per test process; created (with its schema) once, before any test uses it.
fn config() -> Option<ScyllaConfig> {
    static KEYSPACE: OnceLock<Option<String>> = OnceLock::new();
    let ks = KEYSPACE.get_or_init(|| {
        let ks = format!("gh_conformance_{}", std::process::id());
        let config = ScyllaConfig::parse(&format!("scylla://{}/{ks}", cql_node())).expect("url");
        let created = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(ScyllaStore::connect(&config)).map(|_| ())
        })
        .join()
        .expect("schema thread");
        match created {
            Ok(()) => Some(ks),
            Err(e) if required() => panic!("no CQL database at {}: {e} (run deploy/dev/cassandra up)", cql_node()),
            Err(e) => {
                eprintln!("SKIPPED: no CQL database at {}: {e} (run deploy/dev/cassandra up)", cql_node());
                None
            }
        }
    });
    ks.as_ref().map(|ks| ScyllaConfig::parse(&format!("scylla://{}/{ks}", cql_node())).expect("url"))
}

async fn store() -> Option<ScyllaStore> {
    let config = config()?;
    Some(ScyllaStore::connect(&config).await.expect("connect"))
}

guildhall_store::conformance_tests!(store().await);
