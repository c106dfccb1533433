//! The native side of the `text` interface: pattern sets the guest hands over, compiled once
//! per pattern list and shared engine-wide. The cache is bounded by the bytes the compiled
//! sets take, and a search by the length of text it looks at: matching is linear in the
//! text (no backtracking), so a host call cannot run long.

use guildhall_core::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex_automata::meta::{Builder, Regex};
use regex_automata::{Input, MatchKind, PatternSet};

/// Pattern sets one instance may hold.
pub(crate) const MAX_SETS_PER_INSTANCE: usize = 16;

/// Bytes of a text that `find` searches: four times the longest message (4,000 characters
/// of up to 4 bytes each) with room to spare.
pub(crate) const MAX_SEARCHED_BYTES: usize = 64 << 10;

/// A compiled pattern list.
pub(crate) struct Patterns {
    regex: Regex,
    /// What the compiled form takes (its per-thread search caches apart, which
    /// `SEARCH_CACHE_BYTES` bounds).
    bytes: usize,
}

impl Patterns {
    /// The lowest index of a pattern that matches somewhere in `text` (in its first
    /// [`MAX_SEARCHED_BYTES`]).
    pub(crate) fn first_match(&self, text: &str) -> Option<u32> {
        let searched = guildhall_core::text::prefix_within_bytes(text, MAX_SEARCHED_BYTES);
        let mut matched = PatternSet::new(self.regex.pattern_len());
        self.regex.which_overlapping_matches(&Input::new(searched), &mut matched);
        matched.iter().next().map(|p| p.as_u32())
    }
}

/// Compiled pattern sets for `text`, shared by every instance that asks for the same
/// patterns (a guild's automod is compiled once, natively, however often it is instantiated).
#[derive(Default)]
pub(crate) struct PatternCache {
    cached: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    sets: HashMap<Vec<String>, Arc<Patterns>>,
    bytes: usize,
}

impl PatternCache {
    const MAX_PATTERNS: usize = 64;
    const MAX_PATTERN_BYTES: usize = 512;
    /// The compiled form of one pattern, and of one set.
    const MAX_PATTERN_NFA_BYTES: usize = 1 << 20;
    const MAX_SET_NFA_BYTES: usize = 4 << 20;
    /// The lazy DFA's cache of one search (one per thread searching a set at once).
    const SEARCH_CACHE_BYTES: usize = 1 << 20;
    /// Compiled sets kept, in bytes (sets still held by instances live on past a clear).
    pub(crate) const MAX_CACHED_BYTES: usize = 64 << 20;

    pub(crate) fn get_or_compile(&self, patterns: Vec<String>) -> Result<Arc<Patterns>, String> {
        if patterns.len() > Self::MAX_PATTERNS || patterns.iter().any(|p| p.len() > Self::MAX_PATTERN_BYTES) {
            return Err(format!(
                "at most {} patterns of at most {} bytes",
                Self::MAX_PATTERNS,
                Self::MAX_PATTERN_BYTES
            ));
        }
        if let Some(set) = self.cached.lock_unpoisoned().sets.get(&patterns) {
            return Ok(set.clone());
        }
        // Compile one by one first, so the error names the pattern at fault.
        for p in &patterns {
            builder(Self::MAX_PATTERN_NFA_BYTES).build(p).map_err(|e| format!("{p}: {e}"))?;
        }
        let regex = builder(Self::MAX_SET_NFA_BYTES).build_many(&patterns).map_err(|e| e.to_string())?;
        let bytes = regex.memory_usage() + patterns.iter().map(|p| p.len()).sum::<usize>();
        let set = Arc::new(Patterns { regex, bytes });
        let mut cached = self.cached.lock_unpoisoned();
        if cached.bytes + bytes > Self::MAX_CACHED_BYTES {
            cached.sets.clear(); // rare: many distinct pattern lists; they compile again
            cached.bytes = 0;
        }
        if let Some(raced) = cached.sets.insert(patterns, set.clone()) {
            cached.bytes -= raced.bytes; // two instances compiled the same list at once
        }
        cached.bytes += bytes;
        Ok(set)
    }

    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.cached.lock().unwrap().bytes
    }
}

/// A set's builder: every pattern reported (not only the leftmost-first match), the
/// compiled form and the search cache bounded.
fn builder(nfa_bytes: usize) -> Builder {
    let mut builder = Regex::builder();
    builder.configure(
        Regex::config()
            .match_kind(MatchKind::All)
            .nfa_size_limit(Some(nfa_bytes))
            .hybrid_cache_capacity(PatternCache::SEARCH_CACHE_BYTES),
    );
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_first_pattern_that_matches_anywhere_wins() {
        let cache = PatternCache::default();
        let set = cache.get_or_compile(patterns(&["b+", "a", "(?i)HELLO"])).unwrap();
        assert_eq!(set.first_match("ab"), Some(0));
        assert_eq!(set.first_match("a"), Some(1));
        assert_eq!(set.first_match("oh HeLLo"), Some(2));
        assert_eq!(set.first_match("nothing"), None);
        assert!(Arc::ptr_eq(&set, &cache.get_or_compile(patterns(&["b+", "a", "(?i)HELLO"])).unwrap()));
        let refused = cache.get_or_compile(patterns(&["ok", "(unclosed"])).err().unwrap();
        assert!(refused.starts_with("(unclosed"), "{refused}");
        // Only the first MAX_SEARCHED_BYTES of a text are searched (cut at a character).
        let long = format!("{}é{}", "x".repeat(MAX_SEARCHED_BYTES - 1), "b");
        assert_eq!(set.first_match(&long), None);
        assert_eq!(set.first_match(&long[MAX_SEARCHED_BYTES - 1..]), Some(0));
    }

    #[test]
    fn the_cache_is_bounded_by_the_bytes_its_sets_take() {
        let cache = PatternCache::default();
        // Sets of a large compiled form each (a counted repetition of a Unicode class).
        let mut largest = 0;
        for n in 0..200 {
            let set = cache.get_or_compile(patterns(&[&format!(r"\w{{{}}}x{n}", 10 + n % 7)])).unwrap();
            largest = largest.max(set.bytes);
            assert!(cache.cached_bytes() <= PatternCache::MAX_CACHED_BYTES, "{}", cache.cached_bytes());
        }
        assert!(largest > 100 << 10, "each set is large: {largest} bytes");
        assert!(200 * largest > PatternCache::MAX_CACHED_BYTES, "the test must overflow the cache");
    }
}
