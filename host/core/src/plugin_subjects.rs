//! Plugins' publish/subscribe subjects: as a plugin names them, confined to its guild, and
//! the bus subjects they map to (pure; the runtime's `pubsub` publishes and subscribes).
//!
//! A plugin publishes under its own name in its guild's namespace and may listen to the
//! whole namespace of its guild (what its guild's plugins publish), never another guild's:
//!
//! | plugin `quiz` of guild `G` | bus subject |
//! | --- | --- |
//! | publishes `scores.top` | `{cluster}.pubsub.g{G}.quiz.scores.top` |
//! | subscribes `quiz.>` (or `*.scores.*`, `>`) | `{cluster}.pubsub.g{G}.quiz.>` |
//! | publishes or subscribes `shared.alerts.x`, if the operator granted `alerts.>` | `{cluster}.pubsub.shared.alerts.x` |
//!
//! Received messages carry the subject as the plugin would subscribe to it
//! (`quiz.scores.top`, `shared.alerts.x`).

use crate::model::GuildId;
use crate::subject::matches;

/// Tokens in a plugin's subject, its length, and the plugin's subscriptions.
pub const MAX_TOKENS: usize = 8;
pub const MAX_SUBJECT_BYTES: usize = 128;
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// The configuration key whose list of patterns a plugin subscribes to.
pub const SUBSCRIBE_KEY: &str = "subscribe";
const SHARED: &str = "shared";

/// Where plugins' subjects live on the bus and what the operator shares.
#[derive(Debug, Clone)]
pub struct PluginSubjects {
    /// `{cluster}.pubsub`.
    prefix: String,
    /// Patterns (without `shared.`) every plugin may publish and subscribe to.
    shared: Vec<String>,
}

/// One plugin's place: its guild and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub guild: GuildId,
    pub plugin: String,
}

fn valid_token(token: &str, wildcards: bool) -> bool {
    (wildcards && (token == "*" || token == ">"))
        || (!token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// A subject (or, with `wildcards`, a pattern) as plugins write them.
fn check(subject: &str, wildcards: bool) -> Result<Vec<&str>, String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if subject.len() > MAX_SUBJECT_BYTES || tokens.len() > MAX_TOKENS {
        return Err(format!("subject {subject:?}: at most {MAX_TOKENS} tokens and {MAX_SUBJECT_BYTES} bytes"));
    }
    if !tokens.iter().all(|t| valid_token(t, wildcards)) {
        let what = if wildcards { ", '*' or a final '>'" } else { "" };
        return Err(format!("subject {subject:?}: tokens of letters, digits, '-' and '_'{what}, separated by dots"));
    }
    if tokens.iter().position(|t| *t == ">").is_some_and(|i| i + 1 != tokens.len()) {
        return Err(format!("subject {subject:?}: '>' only last"));
    }
    Ok(tokens)
}

/// Does the grant `pattern` cover every subject `wanted` (itself a pattern) can match?
fn covers(pattern: &str, wanted: &str) -> bool {
    let mut wanted = wanted.split('.');
    for p in pattern.split('.') {
        match (p, wanted.next()) {
            (">", Some(_)) => return true,
            ("*", Some(w)) if w != ">" => {}
            (p, Some(w)) if p == w && w != "*" && w != ">" => {}
            _ => return false,
        }
    }
    wanted.next().is_none()
}

/// Checks the operator's shared-subject grants (`plugins.shared_subjects`).
pub fn check_grants(shared: &[String]) -> Result<(), String> {
    for grant in shared {
        check(grant, true).map_err(|e| format!("plugins.shared_subjects: {e}"))?;
    }
    Ok(())
}

impl PluginSubjects {
    /// `shared`: the operator's grants, as patterns under `shared.` (e.g. `alerts.>`).
    pub fn new(cluster: &str, shared: &[String]) -> Result<PluginSubjects, String> {
        check_grants(shared)?;
        Ok(PluginSubjects { prefix: format!("{cluster}.pubsub"), shared: shared.to_vec() })
    }

    fn shared_granted(&self, rest: &str) -> bool {
        self.shared.iter().any(|grant| covers(grant, rest))
    }

    /// Where a plugin's publish goes on the bus.
    pub fn publish_subject(&self, scope: &Scope, subject: &str) -> Result<String, String> {
        let tokens = check(subject, false)?;
        if tokens[0] == SHARED {
            let rest = subject.split_once('.').map(|(_, r)| r).unwrap_or("");
            if rest.is_empty() || !self.shared.iter().any(|grant| matches(grant, rest)) {
                return Err(format!("subject {subject:?}: not a shared subject the operator granted"));
            }
            return Ok(format!("{}.{subject}", self.prefix));
        }
        Ok(format!("{}.g{}.{}.{subject}", self.prefix, scope.guild, scope.plugin))
    }

    /// What a plugin's subscription listens to on the bus.
    pub fn subscribe_pattern(&self, scope: &Scope, pattern: &str) -> Result<String, String> {
        let tokens = check(pattern, true)?;
        if tokens[0] == SHARED {
            let rest = pattern.split_once('.').map(|(_, r)| r).unwrap_or("");
            if rest.is_empty() || !self.shared_granted(rest) {
                return Err(format!("subscription {pattern:?}: not within a shared subject the operator granted"));
            }
            return Ok(format!("{}.{pattern}", self.prefix));
        }
        Ok(format!("{}.g{}.{pattern}", self.prefix, scope.guild))
    }

    /// A bus subject as the plugin of `scope` names it (None: not one it can receive).
    pub fn relative(&self, scope: &Scope, subject: &str) -> Option<String> {
        let in_prefix = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        if in_prefix.starts_with("shared.") {
            return Some(in_prefix.to_owned());
        }
        let guild = format!("g{}.", scope.guild);
        in_prefix.strip_prefix(&guild).map(str::to_owned)
    }

    /// The subscriptions a plugin's configuration asks for (its `subscribe` list), checked.
    pub fn subscriptions(&self, scope: &Scope, config: &serde_json::Value) -> Result<Vec<String>, String> {
        let Some(list) = config.get(SUBSCRIBE_KEY) else { return Ok(Vec::new()) };
        let list = list.as_array().ok_or_else(|| format!("{SUBSCRIBE_KEY}: a list of subjects"))?;
        if list.len() > MAX_SUBSCRIPTIONS {
            return Err(format!("{SUBSCRIBE_KEY}: at most {MAX_SUBSCRIPTIONS} subjects"));
        }
        list.iter()
            .map(|p| {
                let p = p.as_str().ok_or_else(|| format!("{SUBSCRIBE_KEY}: subjects are strings"))?;
                self.subscribe_pattern(scope, p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snowflake;

    fn bus(shared: &[&str]) -> PluginSubjects {
        let shared: Vec<String> = shared.iter().map(|s| s.to_string()).collect();
        PluginSubjects::new("c", &shared).unwrap()
    }

    fn quiz(guild: u64) -> Scope {
        Scope { guild: Snowflake(guild), plugin: "quiz".into() }
    }

    #[test]
    fn a_plugin_publishes_under_its_name_and_listens_within_its_guild() {
        let b = bus(&["alerts.>"]);
        assert_eq!(b.publish_subject(&quiz(7), "scores.top").unwrap(), "c.pubsub.g7.quiz.scores.top");
        assert_eq!(b.subscribe_pattern(&quiz(7), "welcome.>").unwrap(), "c.pubsub.g7.welcome.>");
        assert_eq!(b.subscribe_pattern(&quiz(7), ">").unwrap(), "c.pubsub.g7.>", "everything in its guild only");
        assert_eq!(b.relative(&quiz(7), "c.pubsub.g7.welcome.joined").as_deref(), Some("welcome.joined"));
        assert_eq!(b.relative(&quiz(7), "c.pubsub.g8.welcome.joined"), None, "another guild's");
        assert_eq!(b.relative(&quiz(7), "c.node.1.actor"), None);
    }

    #[test]
    fn wildcards_dots_and_spoofing_cannot_leave_the_namespace() {
        let b = bus(&[]);
        for bad in ["", "a..b", "a.*", "a.>", "a b", "../g8", "a.b.c.d.e.f.g.h.i", "ünï", "a\u{0}b"] {
            assert!(b.publish_subject(&quiz(7), bad).is_err(), "publish {bad:?}");
        }
        assert!(b.publish_subject(&quiz(7), &"x".repeat(MAX_SUBJECT_BYTES + 1)).is_err());
        for bad in ["a.>.b", "", "a..b", "shared.x", "shared"] {
            assert!(b.subscribe_pattern(&quiz(7), bad).is_err(), "subscribe {bad:?}");
        }
        assert!(b.publish_subject(&quiz(7), "shared.alerts.x").is_err(), "nothing shared without a grant");
    }

    #[test]
    fn shared_subjects_are_only_what_the_operator_granted() {
        let b = bus(&["alerts.>", "scores.*"]);
        assert_eq!(b.publish_subject(&quiz(7), "shared.alerts.fire").unwrap(), "c.pubsub.shared.alerts.fire");
        assert!(b.publish_subject(&quiz(7), "shared.other").is_err());
        assert!(b.subscribe_pattern(&quiz(7), "shared.alerts.>").is_ok());
        assert!(b.subscribe_pattern(&quiz(7), "shared.scores.x").is_ok());
        assert!(b.subscribe_pattern(&quiz(7), "shared.scores.>").is_err(), "wider than the grant");
        assert!(b.subscribe_pattern(&quiz(7), "shared.>").is_err(), "wider than the grant");
        assert_eq!(b.relative(&quiz(9), "c.pubsub.shared.alerts.fire").as_deref(), Some("shared.alerts.fire"));
        assert!(PluginSubjects::new("c", &["a.>.b".into()]).is_err());
    }

    #[test]
    fn subscriptions_come_from_the_configuration_and_are_bounded() {
        let b = bus(&[]);
        let config = serde_json::json!({ "subscribe": ["welcome.>", "quiz.scores.*"], "other": 1 });
        assert_eq!(b.subscriptions(&quiz(7), &config).unwrap(), ["c.pubsub.g7.welcome.>", "c.pubsub.g7.quiz.scores.*"]);
        assert!(b.subscriptions(&quiz(7), &serde_json::json!({})).unwrap().is_empty());
        assert!(b.subscriptions(&quiz(7), &serde_json::json!({ "subscribe": "x" })).is_err());
        assert!(b.subscriptions(&quiz(7), &serde_json::json!({ "subscribe": [1] })).is_err());
        let many: Vec<String> = (0..=MAX_SUBSCRIPTIONS).map(|i| format!("p{i}")).collect();
        assert!(b.subscriptions(&quiz(7), &serde_json::json!({ "subscribe": many })).is_err());
    }
}
