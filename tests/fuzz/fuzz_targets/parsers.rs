//! The text parsers of ids, rate limits and emoji, and the JSON shapes clients send: any
//! input is refused cleanly or round-trips.
#![no_main]

use std::str::FromStr;

use guildhall_core::model::Emoji;
use guildhall_core::ratelimit::Rate;
use guildhall_core::Snowflake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = Snowflake::from_str(text) {
        assert_eq!(id.to_string(), text, "one text per id");
        // The parts of an id are within their widths whatever the value.
        assert!(id.worker() <= guildhall_core::snowflake::MAX_WORKER);
        assert!(id.datacenter() <= guildhall_core::snowflake::MAX_DATACENTER);
        let _ = (id.bucket(), id.iso_timestamp());
    }
    if let Ok(rate) = Rate::from_str(text) {
        assert_eq!(Rate::from_str(&rate.to_string()).ok(), Some(rate), "{text:?}");
    }
    if let Ok(emoji) = Emoji::parse(text) {
        assert_eq!(Emoji::parse(&emoji.name).ok(), Some(emoji.clone()), "{text:?}");
        assert!(emoji.name.chars().count() <= guildhall_core::model::MAX_EMOJI_CHARS);
    }
    // Bodies: a message, a channel, a guild, as JSON from anyone.
    let _ = serde_json::from_slice::<guildhall_core::model::Message>(data);
    let _ = serde_json::from_slice::<guildhall_core::model::Channel>(data);
    let _ = serde_json::from_slice::<guildhall_core::model::Guild>(data);
});
