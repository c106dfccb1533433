//! Huge guilds (issue 25), over real sockets: `guildhall bench gateway` drives a host it
//! starts itself past what it can deliver, and the host keeps accepting messages. The
//! benchmark is the load generator here, so this test also checks that it runs end to end
//! and reports what it promises.

use std::process::Command;

use guildhall_e2e::binary;
use serde_json::Value;

/// A host saturated by fan-out (1,000 sessions, 150 messages a second: far more deliveries
/// than a debug build on one machine makes) answers every create: the bookkeeping that
/// guards writes (the id reservation) is not starved by the work it guards. Before it had
/// a thread of its own, such a run was answered 503 "cannot generate ids".
#[test]
fn a_host_saturated_by_fan_out_refuses_no_message() {
    let output = Command::new(binary())
        .args(["bench", "gateway", "--json", "--sessions", "1000", "--rate", "150", "--duration", "4"])
        .args(["--warmup", "1", "--senders", "6"])
        .output()
        .expect("the benchmark runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench gateway failed:\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    for key in
        ["deliveries_per_s", "p50_ms", "p99_ms", "p999_ms", "post_p99_ms", "rss_per_session_kib", "writes_per_delivery"]
    {
        assert!(report[key].is_number(), "{key} missing from {report}");
    }
    assert_eq!(report["send_failures"], 0, "creates refused under load: {}", report["first_send_error"]);
    assert_eq!(report["sent"], 600, "{report}");
    // Offered: 150,000 deliveries a second. Delivered well below it: the host was saturated.
    let per_s = report["deliveries_per_s"].as_f64().unwrap();
    assert!(per_s < 0.9 * 150_000.0, "the host kept up ({per_s:.0} deliveries/s): the test shows nothing");
    let (delivered, expected) =
        (report["delivered"].as_u64().unwrap(), report["expected_deliveries"].as_u64().unwrap());
    assert!(delivered > 0 && delivered <= expected, "delivered {delivered} of {expected}");
    let (p50, p99) = (report["p50_ms"].as_f64().unwrap(), report["p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} ms, p99 {p99} ms");
}
