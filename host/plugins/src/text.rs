//! The native side of the `text` interface: regex sets the guest hands over, compiled once
//! per pattern list and shared engine-wide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiled pattern sets for `text`, shared by every instance that asks for the same
/// patterns (a guild's automod is compiled once, natively, however often it is instantiated).
#[derive(Default)]
pub(crate) struct PatternCache {
    sets: Mutex<HashMap<Vec<String>, Arc<regex::RegexSet>>>,
}

impl PatternCache {
    const MAX_PATTERNS: usize = 64;
    const MAX_PATTERN_BYTES: usize = 512;
    const MAX_CACHED_SETS: usize = 4096;

    pub(crate) fn get_or_compile(&self, patterns: Vec<String>) -> Result<Arc<regex::RegexSet>, String> {
        if patterns.len() > Self::MAX_PATTERNS || patterns.iter().any(|p| p.len() > Self::MAX_PATTERN_BYTES) {
            return Err(format!(
                "at most {} patterns of at most {} bytes",
                Self::MAX_PATTERNS,
                Self::MAX_PATTERN_BYTES
            ));
        }
        if let Some(set) = self.sets.lock().unwrap_or_else(|e| e.into_inner()).get(&patterns) {
            return Ok(set.clone());
        }
        // Compile one by one first, so the error names the pattern at fault.
        for p in &patterns {
            regex::RegexBuilder::new(p).size_limit(1 << 20).build().map_err(|e| format!("{p}: {e}"))?;
        }
        let set = regex::RegexSetBuilder::new(&patterns).size_limit(4 << 20).build().map_err(|e| e.to_string())?;
        let set = Arc::new(set);
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() >= Self::MAX_CACHED_SETS {
            sets.clear();
        }
        sets.insert(patterns, set.clone());
        Ok(set)
    }
}

/// Pattern sets one instance may hold.
pub(crate) const MAX_SETS_PER_INSTANCE: usize = 16;
