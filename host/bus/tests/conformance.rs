//! One suite, two buses: the in-process bus and the NATS bus (a real nats-server from
//! `deploy/dev/nats up`, or $GUILDHALL_TEST_NATS) must behave alike.
//!
//! In CI (or with GUILDHALL_REQUIRE_NATS=1) a missing server fails the NATS tests; on a
//! developer machine without one they print why and pass vacuously.

use std::time::Duration;

use bytes::Bytes;
use guildhall_bus::{Bus, BusError, LocalBus, NatsBus, Subscription};

const WAIT: Duration = Duration::from_secs(5);

fn nats_url() -> String {
    std::env::var("GUILDHALL_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_NATS").is_some()
}

async fn nats() -> Option<NatsBus> {
    match NatsBus::connect(&nats_url(), "guildhall-bus-tests").await {
        Ok(bus) => Some(bus),
        Err(e) if required() => panic!("no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url()),
        Err(e) => {
            eprintln!("SKIPPED: no NATS server at {}: {e} (run deploy/dev/nats up)", nats_url());
            None
        }
    }
}

/// Subjects unique to one run, so that tests sharing a server never see each other.
fn scope(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("test.{}.{}.{name}", std::process::id(), N.fetch_add(1, Relaxed))
}

async fn next(sub: &mut Subscription) -> guildhall_bus::Message {
    tokio::time::timeout(WAIT, sub.next()).await.expect("a message in time").expect("subscription open")
}

/// Nothing more arrives for a while (at-most-once buses cannot prove absence faster).
async fn quiet(sub: &mut Subscription) {
    let more = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(more.is_err(), "unexpected message: {more:?}", more = more.ok().flatten().map(|m| m.subject));
}

async fn publish_subscribe_and_wildcards(bus: &dyn Bus) {
    let root = scope("ps");
    let mut exact = bus.subscribe(&format!("{root}.guild.1.events")).await.unwrap();
    let mut one_token = bus.subscribe(&format!("{root}.guild.*.events")).await.unwrap();
    let mut tail = bus.subscribe(&format!("{root}.guild.>")).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish(&format!("{root}.guild.1.events"), Bytes::from_static(b"one")).await.unwrap();
    bus.publish(&format!("{root}.guild.2.events"), Bytes::from_static(b"two")).await.unwrap();
    bus.publish(&format!("{root}.guild.2.members.x"), Bytes::from_static(b"deep")).await.unwrap();
    bus.flush().await.unwrap();

    assert_eq!(next(&mut exact).await.payload, "one");
    quiet(&mut exact).await;
    let got: Vec<_> = [next(&mut one_token).await, next(&mut one_token).await].map(|m| m.payload).into();
    assert_eq!(got, ["one", "two"]);
    quiet(&mut one_token).await;
    let m = [next(&mut tail).await, next(&mut tail).await, next(&mut tail).await];
    assert_eq!(m.map(|m| m.subject.rsplit('.').next().unwrap().to_owned()), ["events", "events", "x"]);
    assert_eq!(exact.dropped(), 0);
}

async fn one_publisher_keeps_its_order(bus: &dyn Bus) {
    let subject = scope("order");
    let mut sub = bus.subscribe(&subject).await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..1000u32 {
        bus.publish(&subject, Bytes::from(i.to_be_bytes().to_vec())).await.unwrap();
    }
    bus.flush().await.unwrap();
    for i in 0..1000u32 {
        assert_eq!(next(&mut sub).await.payload.as_ref(), i.to_be_bytes());
    }
}

async fn requests_get_answers_or_fail_fast(bus: &dyn Bus) {
    let subject = scope("echo");
    let mut server = bus.subscribe(&subject).await.unwrap();
    bus.flush().await.unwrap();
    let answering = async {
        let request = next(&mut server).await;
        let reply = request.reply.expect("a request carries its reply subject");
        let mut answer = b"echo: ".to_vec();
        answer.extend_from_slice(&request.payload);
        bus.publish(&reply, Bytes::from(answer)).await.unwrap();
        bus.flush().await.unwrap();
    };
    let (answer, ()) = tokio::join!(bus.request(&subject, Bytes::from_static(b"hi"), WAIT), answering);
    assert_eq!(answer.unwrap(), "echo: hi");

    // Nobody listens: refused at once, not after the timeout.
    let started = std::time::Instant::now();
    let nobody = bus.request(&scope("nobody"), Bytes::new(), Duration::from_secs(10)).await;
    assert_eq!(nobody, Err(BusError::NoResponders(nobody_subject(&nobody))));
    assert!(started.elapsed() < Duration::from_secs(2), "no-responders took {:?}", started.elapsed());

    // Someone listens and never answers: the timeout.
    let silent = scope("silent");
    let _listener = bus.subscribe(&silent).await.unwrap();
    bus.flush().await.unwrap();
    let timed_out = bus.request(&silent, Bytes::new(), Duration::from_millis(300)).await;
    assert_eq!(timed_out, Err(BusError::TimedOut(silent)));
}

fn nobody_subject(result: &Result<Bytes, BusError>) -> String {
    match result {
        Err(BusError::NoResponders(s)) => s.clone(),
        other => panic!("expected no responders, got {other:?}"),
    }
}

async fn a_dropped_subscription_receives_nothing(bus: &dyn Bus) {
    let subject = scope("gone");
    let sub = bus.subscribe(&subject).await.unwrap();
    bus.flush().await.unwrap();
    drop(sub);
    // Unsubscribing is asynchronous on NATS; once it took effect nobody is there.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match bus.request(&subject, Bytes::new(), Duration::from_millis(200)).await {
            Err(BusError::NoResponders(_)) => break,
            other => assert!(std::time::Instant::now() < deadline, "still subscribed: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bad_input_is_refused(bus: &dyn Bus) {
    for subject in ["", "a..b", "a b", "a.*", "a.>"] {
        let refused = bus.publish(subject, Bytes::new()).await;
        assert_eq!(refused, Err(BusError::InvalidSubject(subject.to_owned())), "publish {subject:?}");
    }
    assert!(matches!(bus.subscribe("a.>.b").await, Err(BusError::InvalidSubject(_))));
    let max = bus.max_payload();
    assert!(max >= 64 * 1024, "a bus carries at least 64 KiB ({max})");
    let too_big = bus.publish(&scope("big"), Bytes::from(vec![0u8; max + 1])).await;
    assert_eq!(too_big, Err(BusError::TooLarge { size: max + 1, max }));
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&guildhall_bus::LocalBus::new()).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(bus) = super::nats().await {
                        super::$name(&bus).await;
                    }
                }
            )*
        }
    };
}

suite!(
    publish_subscribe_and_wildcards,
    one_publisher_keeps_its_order,
    requests_get_answers_or_fail_fast,
    a_dropped_subscription_receives_nothing,
    bad_input_is_refused,
);

#[tokio::test]
async fn a_slow_local_subscriber_loses_messages_and_never_blocks_the_publisher() {
    let bus = LocalBus::new();
    let mut slow = bus.subscribe("slow.consumer").await.unwrap();
    let total = guildhall_bus::SUBSCRIPTION_CAPACITY + 100;
    let started = std::time::Instant::now();
    for _ in 0..total {
        bus.publish("slow.consumer", Bytes::from_static(b"x")).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(slow.dropped(), 100);
    let mut received = 0;
    while tokio::time::timeout(Duration::from_millis(50), slow.next()).await.is_ok() {
        received += 1;
    }
    assert_eq!(received, guildhall_bus::SUBSCRIPTION_CAPACITY);
}
