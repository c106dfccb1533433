//! automod: a moderation plugin. Configuration (all optional):
//!
//! ```json
//! {
//!   "banned_words": ["badword"],        // whole words, case-insensitive
//!   "rewrite_banned_words": false,      // true: mask them with * instead of blocking
//!   "banned_patterns": ["(?i)free\\s+nitro"],
//!   "block_invites": true,              // discord.gg/..., guildhall invite links
//!   "max_mentions": 5,                  // more distinct user mentions than this: blocked
//!   "rate_limit": { "messages": 5, "per_seconds": 10 }
//! }
//! ```
//!
//! Rules run in that order; the first that blocks wins. Patterns use Rust `regex` syntax and
//! are compiled and matched by the host (the `text` interface), once per configuration. The rate limit counts a user's
//! new messages (not edits) in this instance; an idle instance that the host drops
//! forgets its counts, which errs on the side of letting messages through.

use std::collections::{HashMap, VecDeque};

use guildhall_sdk::moderation::{now_ms, text, Candidate, Moderator, Verdict};
use guildhall_sdk::Config;

/// Most patterns a configuration may have, and their longest source.
const MAX_PATTERNS: usize = 64;
const MAX_PATTERN_LEN: usize = 512;
/// Users tracked for the rate limit before the oldest are forgotten.
const MAX_TRACKED_USERS: usize = 10_000;

pub struct Automod {
    rules: Rules,
    /// The host's handle for the compiled `banned_patterns` (the host compiles and scans
    /// them natively; see the `text` interface).
    pattern_set: Option<u32>,
    recent: HashMap<u64, VecDeque<u64>>,
}

pub struct Rules {
    banned_words: Vec<String>,
    rewrite_banned_words: bool,
    banned_patterns: Vec<String>,
    block_invites: bool,
    max_mentions: Option<usize>,
    rate_limit: Option<(usize, u64)>,
}

impl Rules {
    pub fn from_config(config: &Config) -> Result<Rules, String> {
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match config.get(key) {
                None => Ok(Vec::new()),
                Some(v) => v
                    .as_array()
                    .ok_or(format!("{key} must be a list of strings"))?
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned).ok_or(format!("{key} must be a list of strings")))
                    .collect(),
            }
        };
        let banned_words: Vec<String> = strings("banned_words")?.iter().map(|w| w.to_lowercase()).collect();
        let banned_patterns = strings("banned_patterns")?;
        if banned_patterns.len() > MAX_PATTERNS || banned_patterns.iter().any(|p| p.len() > MAX_PATTERN_LEN) {
            return Err(format!("at most {MAX_PATTERNS} banned_patterns of at most {MAX_PATTERN_LEN} bytes"));
        }
        let block_invites =
            config.get("block_invites").map(|v| v.as_bool().ok_or("block_invites must be true or false"));
        let block_invites = block_invites.transpose()?.unwrap_or(true);
        let max_mentions = match config.get("max_mentions") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or("max_mentions must be a number")? as usize),
        };
        let rate_limit = match config.get("rate_limit") {
            None => None,
            Some(r) => {
                let messages = r["messages"].as_u64().ok_or("rate_limit.messages must be a number")? as usize;
                let per_seconds = r["per_seconds"].as_u64().ok_or("rate_limit.per_seconds must be a number")?;
                Some((messages.max(1), per_seconds.max(1) * 1000))
            }
        };
        let rewrite_banned_words = config.get("rewrite_banned_words").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Rules { banned_words, rewrite_banned_words, banned_patterns, block_invites, max_mentions, rate_limit })
    }
}

impl Automod {
    /// `pattern_set` is the host's compiled form of `rules.banned_patterns` (None: none).
    pub fn new(rules: Rules, pattern_set: Option<u32>) -> Automod {
        Automod { rules, pattern_set, recent: HashMap::new() }
    }

    /// The decision for a candidate at time `now_ms` (pure apart from the rate counts).
    pub fn check(&mut self, c: &Candidate, now_ms: u64) -> Verdict {
        if self.rules.block_invites && contains_invite(&c.content) {
            return Verdict::Block("invite links are not allowed here".into());
        }
        let (masked, hits) = mask_words(&c.content, &self.rules.banned_words);
        let mut verdict = Verdict::Allow;
        if hits > 0 {
            if !self.rules.rewrite_banned_words {
                return Verdict::Block("this message contains a banned word".into());
            }
            verdict = Verdict::Rewrite(masked.clone());
        }
        if let Some(set) = self.pattern_set {
            if text::find(set, &masked).is_some() {
                return Verdict::Block("this message matches a banned pattern".into());
            }
        }
        if let Some(max) = self.rules.max_mentions {
            if c.mentions.len() > max {
                return Verdict::Block(format!("too many mentions (at most {max})"));
            }
        }
        if let (Some((limit, window_ms)), false) = (self.rules.rate_limit, c.is_edit) {
            if self.recent.len() >= MAX_TRACKED_USERS && !self.recent.contains_key(&c.author.id) {
                self.recent.retain(|_, times| times.back().is_some_and(|t| now_ms.saturating_sub(*t) < window_ms));
            }
            let times = self.recent.entry(c.author.id).or_default();
            while times.front().is_some_and(|t| now_ms.saturating_sub(*t) >= window_ms) {
                times.pop_front();
            }
            if times.len() >= limit {
                return Verdict::Block("you are sending messages too fast".into());
            }
            times.push_back(now_ms);
        }
        verdict
    }
}

/// Invite links (Discord's and Guildhall's): a known prefix, case-insensitive, followed by
/// an invite code. A hand-written scan, so that no regex is compiled for it at `init`.
fn contains_invite(content: &str) -> bool {
    const PREFIXES: [&str; 5] =
        ["discord.gg/", "discordapp.com/invite/", "discord.com/invite/", "/api/v10/invites/", "guildhall.gg/"];
    let bytes = content.as_bytes();
    PREFIXES.iter().any(|prefix| {
        let p = prefix.as_bytes();
        bytes.windows(p.len()).enumerate().any(|(i, w)| {
            w.eq_ignore_ascii_case(p) && bytes.get(i + p.len()).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
    })
}

fn is_banned(word: &str, banned: &[String]) -> bool {
    banned.iter().any(|b| {
        b.len() == word.len() && b.chars().zip(word.chars()).all(|(b, w)| w.to_lowercase().eq(std::iter::once(b)))
    })
}

/// Replaces banned words (whole words, case-insensitive) with asterisks; returns the new
/// text and how many words were masked. Allocates only when a word is banned.
pub fn mask_words(content: &str, banned: &[String]) -> (String, usize) {
    if banned.is_empty() {
        return (content.to_owned(), 0);
    }
    let is_word_char = |ch: char| ch.is_alphanumeric() || ch == '\'';
    let mut hits: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, ch) in content.char_indices().chain(std::iter::once((content.len(), ' '))) {
        match (is_word_char(ch), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if is_banned(&content[s..i], banned) {
                    hits.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if hits.is_empty() {
        return (content.to_owned(), 0);
    }
    let mut out = String::with_capacity(content.len());
    let mut last = 0;
    for &(s, e) in &hits {
        out.push_str(&content[last..s]);
        out.extend(std::iter::repeat_n('*', content[s..e].chars().count()));
        last = e;
    }
    out.push_str(&content[last..]);
    (out, hits.len())
}

impl Moderator for Automod {
    fn init(config: &Config) -> Result<Self, String> {
        let rules = Rules::from_config(config)?;
        let pattern_set = if rules.banned_patterns.is_empty() {
            None
        } else {
            Some(text::compile(&rules.banned_patterns).map_err(|e| format!("banned_patterns: {e}"))?)
        };
        Ok(Automod::new(rules, pattern_set))
    }

    fn moderate(&mut self, candidate: &Candidate) -> Verdict {
        self.check(candidate, now_ms())
    }
}

guildhall_sdk::export_moderator!(Automod);

#[cfg(test)]
mod tests {
    use super::*;
    use guildhall_sdk::moderation::User;
    use serde_json::json;

    fn candidate(author: u64, content: &str, mentions: usize) -> Candidate {
        Candidate {
            channel_id: 1,
            author: User { id: author, username: "u".into(), bot: false },
            content: content.into(),
            is_edit: false,
            mentions: (0..mentions as u64).collect(),
        }
    }

    /// Native tests have no host: patterns are tested against the real host in
    /// host/plugins/tests and tests/tests/plugins.rs.
    fn automod(config: serde_json::Value) -> Automod {
        Automod::new(Rules::from_config(&config).unwrap(), None)
    }

    #[test]
    fn banned_words_block_or_rewrite() {
        let mut a = automod(json!({ "banned_words": ["Heck"] }));
        assert!(matches!(a.check(&candidate(1, "what the HECK!", 0), 0), Verdict::Block(_)));
        assert!(matches!(a.check(&candidate(1, "checking heckle", 0), 0), Verdict::Allow), "whole words only");
        let mut a = automod(json!({ "banned_words": ["heck"], "rewrite_banned_words": true }));
        match a.check(&candidate(1, "what the heck, Heck!", 0), 0) {
            Verdict::Rewrite(s) => assert_eq!(s, "what the ****, ****!"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invites_and_mentions() {
        let mut a = automod(json!({ "max_mentions": 2 }));
        assert!(matches!(a.check(&candidate(1, "join discord.gg/abc123", 0), 0), Verdict::Block(_)));
        assert!(matches!(a.check(&candidate(1, "hi all", 3), 0), Verdict::Block(_)));
        assert!(matches!(a.check(&candidate(1, "hi all", 2), 0), Verdict::Allow));
        assert!(matches!(a.check(&candidate(1, "see https://Discord.com/invite/x-1", 0), 0), Verdict::Block(_)));
        assert!(matches!(a.check(&candidate(1, "discord.gg/ alone", 0), 0), Verdict::Allow), "no code, no invite");
        let mut open = automod(json!({ "block_invites": false }));
        assert!(matches!(open.check(&candidate(1, "join discord.gg/abc123", 0), 0), Verdict::Allow));
    }

    #[test]
    fn rate_limit_per_user_and_window() {
        let mut a = automod(json!({ "rate_limit": { "messages": 2, "per_seconds": 10 } }));
        assert!(matches!(a.check(&candidate(1, "a", 0), 0), Verdict::Allow));
        assert!(matches!(a.check(&candidate(1, "b", 0), 1_000), Verdict::Allow));
        assert!(matches!(a.check(&candidate(1, "c", 0), 2_000), Verdict::Block(_)));
        assert!(matches!(a.check(&candidate(2, "other user", 0), 2_000), Verdict::Allow));
        assert!(matches!(a.check(&candidate(1, "d", 0), 10_500), Verdict::Allow), "window moved on");
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(Rules::from_config(&json!({ "banned_words": "x" })).is_err());
        assert!(Rules::from_config(&json!({ "banned_patterns": ["x".repeat(600)] })).is_err());
        assert!(Rules::from_config(&json!({ "max_mentions": "many" })).is_err());
    }
}
