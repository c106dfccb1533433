//! The embedded (redb) backend against the storage conformance suite.

use guildhall_store_redb::EmbeddedStore;

async fn open() -> EmbeddedStore {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    EmbeddedStore::open(&dir).expect("open store")
}

guildhall_store::conformance_tests!(Some(open().await));
