//! The wrappers of `guildhall_store::layer` over a real backend: the whole conformance
//! suite passes through a deadline and an idle fault injector (every method is passed on
//! as it is), and injected faults hit only the access they target and end at the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_core::guild::GuildWrite;
use guildhall_core::model::{Channel, Message, User};
use guildhall_core::Snowflake;
use guildhall_store::layer::faults::{Fault, Faults};
use guildhall_store::layer::{Access, Deadline, Layered};
use guildhall_store::{Storage, StoreError};
use guildhall_store_redb::EmbeddedStore;

struct Wrapped {
    store: Layered<Deadline>,
    faults: Arc<Faults>,
    deadline: Arc<Deadline>,
}

fn wrapped(limit: Duration) -> Wrapped {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let backend = Arc::new(EmbeddedStore::open(&dir).expect("open store"));
    let faults = Arc::new(Faults::default());
    let deadline = Arc::new(Deadline::new(limit));
    let faulty = Arc::new(Layered::new(backend, faults.clone()));
    Wrapped { store: Layered::new(faulty, deadline.clone()), faults, deadline }
}

mod through_the_layers {
    guildhall_store::conformance_tests!(Some(super::wrapped(std::time::Duration::from_secs(10)).store));
}

fn create(channel: &Channel, id: u64) -> GuildWrite {
    let author = User::new(Snowflake(7), "u", false);
    GuildWrite::PutMessage(Message::new(Snowflake(id), channel, author, format!("m{id}"), None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_ends_at_the_deadline_and_faults_hit_only_their_access() {
    let Wrapped { store, faults, deadline } = wrapped(Duration::from_millis(200));
    let channel = Channel::text(Snowflake(100), Snowflake(10), "general");
    assert_eq!(store.apply_batch(vec![create(&channel, 1 << 22)]).await, vec![Ok(())]);

    faults.inject(Fault::Hang, Some(Access::Write));
    let started = Instant::now();
    let hung = store.apply_batch(vec![create(&channel, 2 << 22), create(&channel, 3 << 22)]).await;
    assert!(started.elapsed() < Duration::from_secs(2), "the deadline ended it after {:?}", started.elapsed());
    assert_eq!(hung.len(), 2, "every write of the batch is answered");
    assert!(hung.iter().all(|r| matches!(r, Err(StoreError::Unavailable(m)) if m.contains("apply_batch"))));
    assert_eq!(deadline.timeouts(), 1);
    // Reads still pass while writes hang.
    assert!(store.message(channel.id, Snowflake(1 << 22)).await.unwrap().is_some());
    assert!(store.message(channel.id, Snowflake(2 << 22)).await.unwrap().is_none(), "a hung write never landed");

    faults.inject(Fault::Fail, Some(Access::Read));
    assert!(matches!(store.message(channel.id, Snowflake(1 << 22)).await, Err(StoreError::Unavailable(_))));
    assert_eq!(store.apply_batch(vec![create(&channel, 4 << 22)]).await, vec![Ok(())], "writes pass");

    faults.inject(Fault::Delay(Duration::from_millis(20)), None);
    assert!(store.message(channel.id, Snowflake(4 << 22)).await.unwrap().is_some(), "a delay under it only slows");
    faults.inject(Fault::Delay(Duration::from_secs(5)), None);
    assert!(matches!(store.flush().await, Err(StoreError::Unavailable(_))), "a delay past it is a timeout");
    faults.clear();
    assert!(store.flush().await.is_ok());
    assert_eq!((deadline.timeouts(), faults.injected()), (2, 4));
}
