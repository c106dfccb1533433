//! Values a plugin hands the host across the WIT boundary, as the host maps them
//! (`guildhall_core::plugin_subjects`, `guildhall_core::text`): pub/sub subjects and
//! subscriptions stay in the plugin's guild (nothing one guild publishes is heard in
//! another; shared subjects only within the operator's grants) and map back to what the
//! plugin named; verdict reasons and searched text are cut at their limits, between
//! characters.
#![no_main]

use arbitrary::Arbitrary;
use guildhall_core::plugin_subjects::{PluginSubjects, Scope, MAX_SUBSCRIPTIONS};
use guildhall_core::subject::{is_pattern, is_subject, matches};
use guildhall_core::text::{prefix_within_bytes, truncate_chars};
use guildhall_core::Snowflake;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    grants: Vec<String>,
    guild: u64,
    other_guild: u64,
    plugin: String,
    subject: String,
    pattern: String,
    subscribe: Vec<String>,
    text: String,
    limit: u16,
}

/// Plugin names as the host accepts them at install.
fn valid_plugin_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fuzz_target!(|input: Input| {
    let limit = usize::from(input.limit);
    let cut = truncate_chars(input.text.clone(), limit);
    assert!(input.text.starts_with(&cut) && cut.chars().count() <= limit);
    assert!(cut.len() == input.text.len() || cut.chars().count() == limit);
    let prefix = prefix_within_bytes(&input.text, limit);
    assert!(input.text.starts_with(prefix) && prefix.len() <= limit);
    assert!(prefix.len() == input.text.len() || prefix.len() + 4 > limit, "the longest such prefix");

    let Ok(subjects) = PluginSubjects::new("c", &input.grants) else { return };
    if !valid_plugin_name(&input.plugin) || input.guild == input.other_guild {
        return;
    }
    let mine = Scope { guild: Snowflake(input.guild), plugin: input.plugin.clone() };
    let theirs = Scope { guild: Snowflake(input.other_guild), plugin: input.plugin.clone() };
    let shared = input.subject.starts_with("shared.");

    if let Ok(bus_subject) = subjects.publish_subject(&mine, &input.subject) {
        assert!(is_subject(&bus_subject), "{bus_subject:?}");
        let named = if shared { input.subject.clone() } else { format!("{}.{}", input.plugin, input.subject) };
        assert_eq!(subjects.relative(&mine, &bus_subject), Some(named), "received as it was named");
        if shared {
            let rest = &input.subject["shared.".len()..];
            assert!(input.grants.iter().any(|g| matches(g, rest)), "shared only as granted: {rest:?}");
        } else {
            assert_eq!(subjects.relative(&theirs, &bus_subject), None, "not another guild's to receive");
            // No subscription another guild's plugin can make hears it.
            if let Ok(their_pattern) = subjects.subscribe_pattern(&theirs, &input.pattern) {
                assert!(!matches(&their_pattern, &bus_subject), "{their_pattern:?} hears {bus_subject:?}");
            }
        }
    }
    if let Ok(pattern) = subjects.subscribe_pattern(&mine, &input.pattern) {
        assert!(is_pattern(&pattern), "{pattern:?}");
        // A shared subscription hears only granted subjects.
        if let Some(rest) = input.subject.strip_prefix("shared.") {
            if matches(&pattern, &format!("c.pubsub.{}", input.subject)) && is_subject(rest) {
                assert!(input.grants.iter().any(|g| matches(g, rest)), "{pattern:?} hears ungranted {rest:?}");
            }
        }
    }
    let config = serde_json::json!({ "subscribe": input.subscribe });
    if let Ok(patterns) = subjects.subscriptions(&mine, &config) {
        assert!(patterns.len() <= MAX_SUBSCRIPTIONS && patterns.iter().all(|p| is_pattern(p)));
    }
});
