//! Fixed-window rate limits, as Discord's: a window opens at a key's first request, allows
//! `limit` requests, and closes `window_ms` later; the next request opens a new one. Fixed
//! windows (not a token bucket) because clients are told the window exactly
//! (`X-RateLimit-Remaining`, `X-RateLimit-Reset-After`) and Discord libraries plan on it.
//!
//! [`Windows`] is the bookkeeping for many keys: pure, with time passed in. It holds at most
//! `capacity` open windows; closed ones are swept, and when every slot holds an open window
//! a new key is refused ([`Refusal::Full`]) rather than tracked without bound.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

/// `limit` requests per `window_ms`. Written `LIMIT/DURATION`: `5/5s`, `1/250ms`, `10/10m`,
/// `1000/24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    pub limit: u32,
    pub window_ms: u64,
}

impl Rate {
    pub const fn new(limit: u32, window_ms: u64) -> Rate {
        Rate { limit, window_ms }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("{s:?} is not a rate: write LIMIT/DURATION, e.g. 5/5s, 1/250ms, 10/10m, 1000/24h");
        let (limit, duration) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let duration = duration.trim();
        let digits = duration.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (amount, unit) = duration.split_at(digits);
        let amount: u64 = amount.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        let window_ms = amount.checked_mul(unit_ms).ok_or_else(bad)?;
        if limit == 0 || window_ms == 0 || window_ms > 7 * 24 * 3_600_000 {
            return Err(format!("{s:?}: the limit must be at least 1 and the window 1ms..=168h"));
        }
        Ok(Rate { limit, window_ms })
    }
}

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(s: String) -> Result<Rate, String> {
        s.parse()
    }
}

impl From<Rate> for String {
    fn from(rate: Rate) -> String {
        rate.to_string()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.window_ms;
        let (amount, unit) = match w {
            _ if w.is_multiple_of(3_600_000) => (w / 3_600_000, "h"),
            _ if w.is_multiple_of(60_000) => (w / 60_000, "m"),
            _ if w.is_multiple_of(1_000) => (w / 1_000, "s"),
            _ => (w, "ms"),
        };
        write!(f, "{}/{amount}{unit}", self.limit)
    }
}

/// Where a key stands after a request: what Discord's `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u32,
    pub remaining: u32,
    /// Until the window closes (and `remaining` is `limit` again).
    pub reset_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key's window has no requests left; it reopens in `standing.reset_after_ms`.
    Limited(Standing),
    /// Every slot holds an open window: a new key cannot be tracked now (retry after
    /// `retry_after_ms`, when the soonest one closes at the latest).
    Full { retry_after_ms: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    closes_at_ms: u64,
    limit: u32,
    remaining: u32,
}

/// How often closed windows are swept even when there is room (to give memory back).
const SWEEP_EVERY_MS: u64 = 60_000;

/// Open windows by key, at most `capacity` of them.
#[derive(Debug)]
pub struct Windows<K> {
    open: HashMap<K, Window>,
    capacity: usize,
    next_sweep_ms: u64,
    /// The latest close of any window swept in vain (a full table): when a slot frees at
    /// the latest.
    longest_window_ms: u64,
}

impl<K: Hash + Eq + Clone> Windows<K> {
    pub fn new(capacity: usize) -> Windows<K> {
        assert!(capacity > 0, "a rate limiter must track at least one key");
        Windows { open: HashMap::new(), capacity, next_sweep_ms: SWEEP_EVERY_MS, longest_window_ms: 0 }
    }

    /// Counts one request of `key` against `rate` at `now_ms`.
    pub fn take(&mut self, key: &K, rate: Rate, now_ms: u64) -> Result<Standing, Refusal> {
        self.longest_window_ms = self.longest_window_ms.max(rate.window_ms);
        if now_ms >= self.next_sweep_ms {
            self.sweep(now_ms);
        }
        let window = match self.open.get_mut(key) {
            Some(w) if now_ms < w.closes_at_ms => w,
            Some(w) => {
                *w = Window { closes_at_ms: now_ms + rate.window_ms, limit: rate.limit, remaining: rate.limit };
                w
            }
            None => {
                if self.open.len() >= self.capacity {
                    self.sweep(now_ms);
                    if self.open.len() >= self.capacity {
                        return Err(Refusal::Full { retry_after_ms: self.longest_window_ms });
                    }
                }
                self.open.entry(key.clone()).or_insert(Window {
                    closes_at_ms: now_ms + rate.window_ms,
                    limit: rate.limit,
                    remaining: rate.limit,
                })
            }
        };
        let reset_after_ms = window.closes_at_ms - now_ms;
        if window.remaining == 0 {
            return Err(Refusal::Limited(Standing { limit: rate.limit, remaining: 0, reset_after_ms }));
        }
        window.remaining -= 1;
        // A window opened under a larger limit (a configuration change) keeps its count.
        Ok(Standing { limit: rate.limit, remaining: window.remaining.min(rate.limit), reset_after_ms })
    }

    /// Where `key` stands, without counting a request (`None`: no open window).
    pub fn standing(&self, key: &K, now_ms: u64) -> Option<Standing> {
        let w = self.open.get(key).filter(|w| now_ms < w.closes_at_ms)?;
        Some(Standing { limit: w.limit, remaining: w.remaining, reset_after_ms: w.closes_at_ms - now_ms })
    }

    /// Whether `key`'s window is open and spent, without counting a request: how long
    /// until it reopens.
    pub fn spent(&self, key: &K, now_ms: u64) -> Option<u64> {
        self.standing(key, now_ms).filter(|s| s.remaining == 0).map(|s| s.reset_after_ms)
    }

    /// Open windows tracked now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn sweep(&mut self, now_ms: u64) {
        self.open.retain(|_, w| now_ms < w.closes_at_ms);
        self.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_as_written() {
        for (text, limit, window_ms) in
            [("5/5s", 5, 5_000), ("1/250ms", 1, 250), ("10000/10m", 10_000, 600_000), ("1000/24h", 1000, 86_400_000)]
        {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate, Rate::new(limit, window_ms), "{text}");
            assert_eq!(rate.to_string(), text);
        }
        assert_eq!("50/1000ms".parse::<Rate>().unwrap().to_string(), "50/1s");
        for bad in ["5", "5/", "/5s", "5/5", "5/5d", "0/1s", "5/0s", "x/1s", "5/-1s", "1/999h", "5/99999999999999999h"]
        {
            assert!(bad.parse::<Rate>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn a_window_allows_its_limit_then_refuses_until_it_closes() {
        let rate = Rate::new(3, 1_000);
        let mut w = Windows::new(16);
        let remaining: Vec<u32> = (0..3).map(|i| w.take(&"k", rate, 100 + i).unwrap().remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        // The window opened at 100: it closes at 1100, whenever the later requests came.
        assert_eq!(
            w.take(&"k", rate, 600),
            Err(Refusal::Limited(Standing { limit: 3, remaining: 0, reset_after_ms: 500 }))
        );
        assert_eq!(w.spent(&"k", 600), Some(500));
        assert_eq!(w.standing(&"k", 600), Some(Standing { limit: 3, remaining: 0, reset_after_ms: 500 }));
        assert_eq!(w.standing(&"other", 600), None);
        assert_eq!(
            w.take(&"k", rate, 1_099).unwrap_err(),
            Refusal::Limited(Standing { limit: 3, remaining: 0, reset_after_ms: 1 })
        );
        // Closed: a new window, opened by this request.
        assert_eq!(w.take(&"k", rate, 1_100), Ok(Standing { limit: 3, remaining: 2, reset_after_ms: 1_000 }));
        assert_eq!(w.spent(&"k", 1_100), None);
    }

    #[test]
    fn keys_are_independent() {
        let rate = Rate::new(1, 1_000);
        let mut w = Windows::new(16);
        assert!(w.take(&1, rate, 0).is_ok());
        assert!(w.take(&1, rate, 1).is_err());
        assert!(w.take(&2, rate, 1).is_ok(), "another key has its own window");
    }

    #[test]
    fn the_table_is_bounded_and_closed_windows_make_room() {
        let rate = Rate::new(1, 1_000);
        let mut w = Windows::new(2);
        assert!(w.take(&1, rate, 0).is_ok());
        assert!(w.take(&2, rate, 10).is_ok());
        assert_eq!(w.take(&3, rate, 20), Err(Refusal::Full { retry_after_ms: 1_000 }), "full of open windows");
        assert_eq!(w.len(), 2);
        // Key 1's window closed at 1000: swept, and key 3 takes the slot.
        assert!(w.take(&3, rate, 1_000).is_ok());
        assert_eq!(w.len(), 2);
        // Known keys are never refused for room.
        assert!(w.take(&3, rate, 2_500).is_ok());
    }

    #[test]
    fn closed_windows_are_swept_even_with_room() {
        let rate = Rate::new(5, 1_000);
        let mut w = Windows::new(1_000);
        for k in 0..100 {
            w.take(&k, rate, 0).unwrap();
        }
        assert_eq!(w.len(), 100);
        w.take(&0, rate, SWEEP_EVERY_MS).unwrap();
        assert_eq!(w.len(), 1, "the periodic sweep gave the closed windows back");
    }
}
