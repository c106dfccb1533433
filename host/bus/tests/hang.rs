//! The NATS server hangs (the development server frozen with SIGSTOP: the connection
//! stays open and nothing answers): a flush, which waits for the server, gives up at the
//! bus's deadline instead of waiting until the client notices the dead connection
//! (minutes); publishes made meanwhile are buffered and delivered once the server goes on.
//!
//! This freezes the shared server, so it is the only test in its binary. Without a server
//! it fails in CI (or with GUILDHALL_REQUIRE_NATS=1) and passes vacuously elsewhere.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use guildhall_bus::{Bus, BusError, NatsBus};

fn nats(action: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dev/nats");
    let status = Command::new(script).arg(action).status().expect("run deploy/dev/nats");
    assert!(status.success(), "deploy/dev/nats {action} failed");
}

/// Lets the server go on however the test ends.
struct Frozen;

impl Drop for Frozen {
    fn drop(&mut self) {
        nats("resume");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_publishes_and_the_bus_recovers() {
    let url = std::env::var("GUILDHALL_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let required = std::env::var_os("CI").is_some() || std::env::var_os("GUILDHALL_REQUIRE_NATS").is_some();
    let bus = match NatsBus::connect(&url, "guildhall-hang-test").await {
        Ok(bus) => bus,
        Err(e) if required => panic!("no NATS server at {url}: {e} (run deploy/dev/nats up)"),
        Err(e) => return eprintln!("SKIPPED: no NATS server at {url}: {e}"),
    };
    let subject = format!("test.hang.{}", std::process::id());
    let mut sub = bus.subscribe(&subject).await.unwrap();
    bus.publish(&subject, Bytes::from_static(b"before")).await.unwrap();
    bus.flush().await.unwrap();
    assert_eq!(&tokio::time::timeout(WAIT, sub.next()).await.unwrap().unwrap().payload[..], b"before");

    nats("pause");
    let frozen = Frozen;
    // Nobody listens here: publishes fill the socket, then the client's buffer, then wait.
    let nowhere = format!("{subject}.nowhere");
    let payload = Bytes::from(vec![0u8; 64 * 1024]);
    let mut timed_out = None;
    for i in 0..8192 {
        let started = Instant::now();
        match bus.publish(&nowhere, payload.clone()).await {
            Ok(()) => {}
            Err(e) => {
                timed_out = Some((i, e, started.elapsed()));
                break;
            }
        }
    }
    let (published, error, took) = timed_out.expect("a publish to a hung server gives up");
    assert!(matches!(error, BusError::TimedOut(_)), "{error:?}");
    assert!(took < Duration::from_secs(8), "the publish gave up after {took:?}");
    eprintln!("{published} publishes of 64 KiB were buffered; the next gave up after {took:?}");
    drop(frozen);

    // The server goes on and the same connection carries messages again.
    let recovered = Instant::now();
    loop {
        let sent = bus.publish(&subject, Bytes::from_static(b"after")).await;
        if sent.is_ok() {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
                assert_eq!(&m.payload[..], b"after");
                break;
            }
        }
        assert!(recovered.elapsed() < Duration::from_secs(30), "no recovery: {sent:?}");
    }
}

const WAIT: Duration = Duration::from_secs(5);
