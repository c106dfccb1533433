//! The REST API's request decoding (guildhall-api), as the router and the handlers use it:
//! any path, query and body is decoded or refused cleanly, and what decodes keeps its rules.
//! The input is `PATH \n QUERY \n BODY`.
#![no_main]

use guildhall_api::requests::*;
use guildhall_api::{parse_json, path_segments, query_pairs, BodyError};
use guildhall_core::Snowflake;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (path, query, body) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    if let Ok(path) = std::str::from_utf8(path) {
        let segments = path_segments(path);
        assert!(segments.len() <= path.split('/').count());
        for segment in &segments {
            assert!(!segment.is_empty(), "{path:?}");
            if let Ok(id) = segment.parse::<Snowflake>() {
                assert_eq!(&id.to_string(), segment, "one text per id");
            }
        }
    }
    if let Ok(query) = std::str::from_utf8(query) {
        let pairs = query_pairs(query);
        // Decoding what was encoded gives it back.
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        assert_eq!(query_pairs(&encoded), pairs, "{query:?}");
        for (_, value) in &pairs {
            let _ = (value.parse::<Snowflake>(), value.parse::<u32>());
        }
    }
    bodies(body);
});

fn bodies(body: &[u8]) {
    // Refused as not JSON exactly when it is not JSON; as the wrong shape when not an object.
    match (parse_json::<Value>(body), serde_json::from_slice::<Value>(body)) {
        (Ok(v), _) => assert!(v.is_object()),
        (Err(BodyError::NotJson), parsed) => assert!(parsed.is_err()),
        (Err(BodyError::Shape(_)), parsed) => assert!(!parsed.expect("JSON").is_object()),
    }
    let _ = parse_json::<Credentials>(body);
    let _ = parse_json::<OpenDm>(body);
    let _ = parse_json::<CreateApplication>(body);
    let _ = parse_json::<UpdateApplication>(body);
    let _ = parse_json::<Authorize>(body);
    let _ = parse_json::<CreateGuild>(body);
    let _ = parse_json::<UpdateGuild>(body);
    let _ = parse_json::<EditMessage>(body);
    let _ = parse_json::<MemberBody>(body);
    let _ = parse_json::<PluginUpdate>(body);
    if let Ok(channel) = parse_json::<CreateChannel>(body) {
        let _ = channel.kind;
    }
    let _ = parse_json::<InviteOptions>(body);
    let _ = parse_json::<RoleBody>(body);
    if let Ok(message) = parse_json::<CreateMessage>(body) {
        match message.checked_nonce() {
            Ok(Some(Value::String(s))) => assert!(s.chars().count() <= MAX_NONCE_CHARS),
            Ok(Some(Value::Number(n))) => {
                let exact_float = n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0);
                assert!(n.is_i64() || n.is_u64() || exact_float, "{n}");
            }
            Ok(Some(other)) => panic!("a nonce that is neither a string nor a number: {other}"),
            Ok(None) | Err(_) => {}
        }
    }
    // A channel's overwrites keep only the bits the host knows.
    if let Ok(channel) = parse_json::<ChannelBody>(body) {
        for listed in channel.permission_overwrites.into_iter().flatten() {
            let overwrite = listed.bits.into_overwrite(listed.id);
            assert_eq!((overwrite.allow, overwrite.deny), (overwrite.allow.known(), overwrite.deny.known()));
        }
    }
    if let Ok(bits) = parse_json::<OverwriteBits>(body) {
        let overwrite = bits.into_overwrite(Snowflake(1));
        assert_eq!(overwrite.allow, overwrite.allow.known());
    }
}
