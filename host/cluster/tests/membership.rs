//! Membership and node-id leases against a real nats-server with JetStream
//! (`deploy/dev/nats up`, or $GUILDHALL_TEST_NATS). In CI (or with GUILDHALL_REQUIRE_NATS=1)
//! a missing server fails these tests; elsewhere they print why and pass vacuously.
//!
//! Each test uses a bucket of its own, so they run in parallel on one server.

use std::time::Duration;

use guildhall_bus::NatsBus;
use guildhall_cluster::membership::{members, open_bucket};
use guildhall_cluster::{ClusterError, Heartbeat, Lease, MembershipConfig, NodeInfo, Ring};

fn nats_url() -> String {
    std::env::var("GUILDHALL_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_NATS").is_some()
}

async fn client(name: &str) -> Option<async_nats::Client> {
    match NatsBus::connect(&nats_url(), name).await {
        Ok(bus) => Some(bus.client().clone()),
        Err(e) if required() => panic!("no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url()),
        Err(e) => {
            eprintln!("SKIPPED: no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url());
            None
        }
    }
}

fn config(test: &str, lease: Duration) -> MembershipConfig {
    MembershipConfig { bucket: format!("gh_test_{}_{test}", std::process::id()), lease }
}

fn info(advertise: &str) -> NodeInfo {
    NodeInfo { node: 0, advertise: advertise.into(), started_unix_ms: 0, draining: false, incarnation: 0 }
}

async fn until<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_hosts_never_hold_the_same_node_id() {
    let Some(nats) = client("membership-ids").await else { return };
    let config = config("ids", Duration::from_secs(30));
    let bucket = open_bucket(&nats, &config).await.unwrap();

    let first = Lease::acquire(bucket.clone(), Some(5), info("10.0.0.1:8080")).await.unwrap();
    assert_eq!(first.node(), 5);
    match Lease::acquire(bucket.clone(), Some(5), info("10.0.0.2:8080")).await {
        Err(ClusterError::NodeIdTaken { node: 5, holder }) => assert_eq!(holder, "10.0.0.1:8080"),
        other => panic!("a second holder of id 5: {:?}", other.map(|l| l.node())),
    }
    assert!(matches!(
        Lease::acquire(bucket.clone(), Some(1024), info("x")).await,
        Err(ClusterError::NodeIdOutOfRange(1024))
    ));

    // Without an id, hosts starting at once take distinct free ones, lowest first.
    let starting: Vec<_> = (0..4)
        .map(|i| {
            let bucket = bucket.clone();
            tokio::spawn(async move { Lease::acquire(bucket, None, info(&format!("10.0.1.{i}:8080"))).await })
        })
        .collect();
    let mut ids = Vec::new();
    for s in starting {
        ids.push(s.await.unwrap().unwrap().node());
    }
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3]);
    let listed = members(&bucket).await.unwrap();
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 5]);

    // Leaving frees the id at once.
    first.release().await.unwrap();
    assert_eq!(Lease::acquire(bucket.clone(), Some(5), info("10.0.0.2:8080")).await.unwrap().node(), 5);
}

#[tokio::test]
async fn a_dead_node_leaves_the_view_within_its_lease_and_cannot_come_back_silently() {
    let Some(nats) = client("membership-expiry").await else { return };
    let lease_time = Duration::from_millis(1500);
    let config = config("expiry", lease_time);
    let bucket = open_bucket(&nats, &config).await.unwrap();
    let period = lease_time / 3;

    let alive = Heartbeat::start(Lease::acquire(bucket.clone(), None, info("a")).await.unwrap(), period, clock())
        .await
        .unwrap();
    let mut stalled = Lease::acquire(bucket.clone(), None, info("b")).await.unwrap();
    let (alive_id, stalled_id) = (0, stalled.node());
    assert_eq!(stalled_id, 1);
    let mut view = alive.view();
    until("both are in the view", Duration::from_secs(5), async || {
        (view.borrow_and_update().ring == Ring::new([alive_id, stalled_id])).then_some(())
    })
    .await;

    // The stalled node stops renewing (a kill -9, a long pause): it drops out on its own.
    let started = std::time::Instant::now();
    until("the stalled node leaves the view", Duration::from_secs(10), async || {
        (view.borrow_and_update().ring == Ring::new([alive_id])).then_some(())
    })
    .await;
    let detected = started.elapsed();
    assert!(detected <= lease_time + period * 2 + Duration::from_millis(500), "detected after {detected:?}");
    assert!(!*alive.lost().borrow(), "renewing kept the live node in");

    // Waking up, it finds its lease gone even though nobody took the id.
    assert!(matches!(stalled.renew().await, Err(ClusterError::LeaseLost(1))));
    // Another host can now take the id; the stale one still cannot renew.
    let successor = Lease::acquire(bucket.clone(), Some(stalled_id), info("c")).await.unwrap();
    assert!(matches!(stalled.renew().await, Err(ClusterError::LeaseLost(1))));
    drop(successor);
    let lease = alive.stop().await;
    lease.release().await.unwrap();
}

#[tokio::test]
async fn a_node_whose_lease_ran_out_takes_its_id_again_unless_another_node_has() {
    let Some(nats) = client("membership-lost").await else { return };
    let lease_time = Duration::from_millis(1200);
    let bucket = open_bucket(&nats, &config("lost", lease_time)).await.unwrap();

    // Renewing far too slowly: the key expires between two renewals; the next renewal
    // finds it gone, and the node takes the same id again (nobody else wanted it).
    let lease = Lease::acquire(bucket.clone(), None, info("a")).await.unwrap();
    let a = lease.node();
    let heartbeat = Heartbeat::start(lease, lease_time * 2, clock()).await.unwrap();
    let mut rejoined = heartbeat.rejoined();
    tokio::time::timeout(Duration::from_secs(10), rejoined.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    assert!(!*heartbeat.lost().borrow(), "not lost: it took its id again");
    assert_eq!(members(&bucket).await.unwrap().get(&a).map(|m| m.advertise.as_str()), Some("a"));
    drop(heartbeat);

    // This time another node takes the id while it is free: the stalled node is out.
    let lease = Lease::acquire(bucket.clone(), None, info("b")).await.unwrap();
    let b = lease.node();
    let heartbeat = Heartbeat::start(lease, lease_time * 4, clock()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while members(&bucket).await.unwrap().contains_key(&b) {
        assert!(std::time::Instant::now() < deadline, "the stalled lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stalled node may take its id back first (its lease lapses again soon after):
    // the intruder tries until it holds the id.
    let intruder = loop {
        match Lease::acquire(bucket.clone(), Some(b), info("intruder")).await {
            Ok(lease) => break lease,
            Err(ClusterError::NodeIdTaken { .. }) => {
                assert!(std::time::Instant::now() < deadline + Duration::from_secs(10), "never free again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let rejoins_before = *heartbeat.rejoined().borrow();
    let _intruder = Heartbeat::start(intruder, lease_time / 3, clock()).await.unwrap(); // and keeps it
    let mut lost = heartbeat.lost();
    tokio::time::timeout(Duration::from_secs(10), lost.wait_for(|lost| *lost)).await.unwrap().unwrap();
    assert_eq!(*heartbeat.rejoined().borrow(), rejoins_before, "it did not come back under a taken id");
}

#[tokio::test]
async fn draining_nodes_stay_members_but_leave_the_ring() {
    let Some(nats) = client("membership-drain").await else { return };
    let bucket = open_bucket(&nats, &config("drain", Duration::from_secs(30))).await.unwrap();
    let mut a = Lease::acquire(bucket.clone(), None, info("a")).await.unwrap();
    let b = Lease::acquire(bucket.clone(), None, info("b")).await.unwrap();
    a.set_draining().await.unwrap();
    let view = guildhall_cluster::View::new(members(&bucket).await.unwrap());
    assert_eq!(view.members.len(), 2);
    assert!(view.members[&a.node()].draining);
    assert_eq!(view.ring, Ring::new([b.node()]));
    a.release().await.unwrap();
    b.release().await.unwrap();
}

/// The process's clock as these tests see it: tokio's, which runs in real time here.
fn clock() -> std::sync::Arc<dyn guildhall_core::clock::Clock> {
    std::sync::Arc::new(guildhall_runtime::infrastructure::clock::TokioClock::new(1_700_000_000_000))
}
