//! The gateway session state machine fed arbitrary client frames (any bytes as a text
//! payload: JSON or not, any opcode and shape) between the runtime's own inputs, at
//! arbitrary times. It must never panic, and its invariants hold after every step.
#![no_main]

use arbitrary::Arbitrary;
use guildhall_core::gateway::DispatchPrefix;
use guildhall_core::session::{Effect, Input, Phase, Session, SessionConfig};
use guildhall_core::Snowflake;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Step {
    /// A client text frame: raw bytes, or a frame with a chosen opcode and raw `d`.
    Text(Vec<u8>),
    Frame {
        op: u8,
        d: String,
    },
    Binary,
    Malformed,
    /// Time passes (ms).
    Tick(u32),
    /// The runtime's answer to an IDENTIFY.
    Authenticated(bool),
    Dispatch,
    Disconnected,
    ClientClosed(Option<u16>),
    ResumeRejected(bool),
    Overflowed,
    Drain,
}

fuzz_target!(|steps: Vec<Step>| {
    let config = SessionConfig::default();
    let mut session = Session::new(config.clone());
    let mut now = 1_700_000_000_000u64;
    session.handle(Input::Opened { now_ms: now });
    let event = DispatchPrefix::encode("MESSAGE_CREATE", &serde_json::json!({ "content": "hi" }));
    for step in steps.into_iter().take(512) {
        let seq_before = session.seq();
        let frame;
        let input = match &step {
            Step::Text(bytes) => Input::ClientText { payload: bytes, now_ms: now },
            Step::Frame { op, d } => {
                frame = format!(r#"{{"op":{op},"d":{d}}}"#).into_bytes();
                Input::ClientText { payload: &frame, now_ms: now }
            }
            Step::Binary => Input::ClientBinary { now_ms: now },
            Step::Malformed => Input::ClientMalformed { reason: "malformed" },
            Step::Tick(ms) => {
                now += u64::from(*ms);
                Input::Tick { now_ms: now }
            }
            Step::Authenticated(true) => Input::Authenticated {
                user_id: Snowflake(42),
                session_id: "s".into(),
                ready: DispatchPrefix::encode("READY", &serde_json::json!({})),
            },
            Step::Authenticated(false) => Input::AuthenticationFailed,
            Step::Dispatch => Input::Dispatch(&event),
            Step::Disconnected => Input::Disconnected { now_ms: now },
            Step::ClientClosed(code) => Input::ClientClosed { code: *code, now_ms: now },
            Step::ResumeRejected(invalid_seq) => Input::ResumeRejected { invalid_seq: *invalid_seq },
            Step::Overflowed => Input::Overflowed,
            Step::Drain => Input::Drain { now_ms: now },
        };
        let terminated_before = session.phase() == Phase::Terminated;
        let user_before = session.user_id();
        let effects = session.handle(input);
        // A terminated session does nothing more.
        assert!(!terminated_before || effects.is_empty(), "{step:?} after termination: {effects:?}");
        // Sequence numbers only grow, by at most one per step; the replay stays bounded.
        assert!(session.seq() >= seq_before && session.seq() <= seq_before + 1);
        assert!(session.replay_len() <= config.replay_max_events);
        for effect in &effects {
            if let Effect::Close { code, .. } = effect {
                assert!((1000..5000).contains(code), "close code {code}");
            }
            if let Effect::Send(frame) = effect {
                let text: serde_json::Value = serde_json::from_slice(frame).expect("frames sent are JSON");
                assert!(text.get("op").is_some(), "{text}");
            }
        }
        // Only the runtime's answer authenticates a session, never a client's frame.
        if matches!(step, Step::Text(_) | Step::Frame { .. }) {
            assert!(user_before.is_some() || session.user_id().is_none(), "{step:?} authenticated the session");
        }
    }
});
