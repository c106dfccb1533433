//! Subjects as NATS defines them: non-empty tokens separated by dots, no whitespace; in a
//! subscription `*` stands for one token and `>` (last) for one or more. Pure: the bus
//! checks what it is handed with these, and plugins' subjects are mapped onto them.

/// Longest subject accepted (NATS has no hard limit; ours keeps inboxes and keys small).
pub const MAX_SUBJECT_BYTES: usize = 256;

fn valid_token(token: &str) -> bool {
    !token.is_empty() && !token.bytes().any(|b| b.is_ascii_whitespace() || b == b'.')
}

/// A subject one can publish to: no wildcards.
pub fn is_subject(subject: &str) -> bool {
    subject.len() <= MAX_SUBJECT_BYTES && subject.split('.').all(|t| valid_token(t) && t != "*" && t != ">")
}

/// A subject one can subscribe to: wildcards allowed, `>` only last.
pub fn is_pattern(pattern: &str) -> bool {
    let tokens: Vec<&str> = pattern.split('.').collect();
    pattern.len() <= MAX_SUBJECT_BYTES
        && tokens.iter().all(|t| valid_token(t))
        && tokens.iter().position(|t| *t == ">").is_none_or(|i| i == tokens.len() - 1)
}

/// Does `subject` (no wildcards) match `pattern`?
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_in_nats() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*.c", "a.x.y.c"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(!matches("a.>", "a"), "> needs at least one token");
        assert!(matches(">", "anything.at.all"));
        assert!(matches("*.b.>", "a.b.c"));
    }

    #[test]
    fn subjects_and_patterns_are_checked() {
        assert!(is_subject("guild.123.events"));
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\tb"] {
            assert!(!is_subject(bad), "{bad:?}");
        }
        assert!(!is_subject(&"x".repeat(MAX_SUBJECT_BYTES + 1)));
        assert!(is_pattern("a.*.>"));
        for bad in ["a.>.b", "", "a..b", "a b.>"] {
            assert!(!is_pattern(bad), "{bad:?}");
        }
    }
}
