//! Snowflake ids, as Twitter made them and Discord uses them.
//!
//! 64 bits: 42 bits of milliseconds since the Discord epoch (2015-01-01T00:00:00Z),
//! 5 bits of datacenter, 5 bits of worker, 12 bits of sequence. Ids sort by creation
//! time, need no coordination between generators with distinct (datacenter, worker),
//! and carry their own timestamp, which is what the message bucket is computed from.
//!
//! [`IdState`] is the pure decision ("given this clock reading, what is the next id, or
//! how long must the caller wait"); the runtime's `Generator` drives it with a [`Clock`](crate::clock::Clock).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2015-01-01T00:00:00Z in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
const WORKER_BITS: u32 = 5;
const DATACENTER_BITS: u32 = 5;
const SEQUENCE_BITS: u32 = 12;
const TIMESTAMP_SHIFT: u32 = WORKER_BITS + DATACENTER_BITS + SEQUENCE_BITS;
pub const MAX_WORKER: u8 = (1 << WORKER_BITS) - 1;
pub const MAX_DATACENTER: u8 = (1 << DATACENTER_BITS) - 1;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;
const MAX_TIMESTAMP_MS: u64 = (1 << 42) - 1;
/// A message bucket is a static 10-day window of the snowflake timestamp (the seed's layout).
pub const BUCKET_SIZE_MS: u64 = 10 * 24 * 60 * 60 * 1000;

/// A snowflake id. Travels as a decimal string in JSON, as Discord's ids do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Snowflake(pub u64);

impl Snowflake {
    /// Milliseconds since the Discord epoch.
    pub fn timestamp_ms(self) -> u64 {
        self.0 >> TIMESTAMP_SHIFT
    }
    /// Unix milliseconds.
    pub fn unix_ms(self) -> u64 {
        self.timestamp_ms() + DISCORD_EPOCH_MS
    }
    pub fn datacenter(self) -> u8 {
        ((self.0 >> (WORKER_BITS + SEQUENCE_BITS)) & MAX_DATACENTER as u64) as u8
    }
    pub fn worker(self) -> u8 {
        ((self.0 >> SEQUENCE_BITS) & MAX_WORKER as u64) as u8
    }
    pub fn sequence(self) -> u16 {
        (self.0 & MAX_SEQUENCE as u64) as u16
    }
    /// The 10-day bucket this id's timestamp falls in.
    pub fn bucket(self) -> u32 {
        bucket_of_ms(self.timestamp_ms())
    }
    /// The smallest id whose timestamp is `unix_ms` (used to turn a time into a query bound).
    pub fn from_unix_ms(unix_ms: u64) -> Snowflake {
        Snowflake(unix_ms.saturating_sub(DISCORD_EPOCH_MS) << TIMESTAMP_SHIFT)
    }
    /// ISO 8601 timestamp in Discord's format, e.g. `2017-07-11T17:27:07.299000+00:00`.
    pub fn iso_timestamp(self) -> String {
        iso8601_from_unix_ms(self.unix_ms())
    }
}

/// Bucket number for a timestamp in milliseconds since the Discord epoch.
pub fn bucket_of_ms(ms_since_epoch: u64) -> u32 {
    (ms_since_epoch / BUCKET_SIZE_MS) as u32
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
/// The text of an id: decimal digits without a sign or leading zeros, at most 19 of them
/// (ids below 10^19: timestamps until 2090). One form per id, as the API describes it.
pub const SNOWFLAKE_PATTERN: &str = "^(0|[1-9][0-9]{0,18})$";

/// Text that is not an id in [`SNOWFLAKE_PATTERN`]'s form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id is decimal digits without leading zeros, at most 19")]
pub struct InvalidSnowflake;

/// The largest number [`SNOWFLAKE_PATTERN`] allows (ids and bitfields as JSON integers too).
pub const MAX_DECIMAL: u64 = 9_999_999_999_999_999_999;

/// A JSON number written with a fraction of zero (`12.0`, an integer to JSON Schema) as the
/// integer it is, if a float holds it exactly (below 2^53 in size).
pub fn whole_number(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64)
}

/// A number in [`SNOWFLAKE_PATTERN`]'s form.
pub fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl FromStr for Snowflake {
    type Err = InvalidSnowflake;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_decimal(s).map(Snowflake).ok_or(InvalidSnowflake)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Snowflake {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Snowflake".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        decimal_schema(generator)
    }
}

/// A number written as [`SNOWFLAKE_PATTERN`]'s text (ids, permission bitfields); taken
/// leniently as a JSON integer too, so requests may send either.
#[cfg(feature = "schema")]
pub fn decimal_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let text = schemars::json_schema!({ "type": "string", "pattern": SNOWFLAKE_PATTERN });
    if generator.contract().is_deserialize() {
        let number = schemars::json_schema!({ "type": "integer", "minimum": 0, "maximum": MAX_DECIMAL });
        schemars::json_schema!({ "anyOf": [text, number] })
    } else {
        text
    }
}
impl Serialize for Snowflake {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for Snowflake {
    /// Accepts the string form (what Discord sends) and, leniently, a JSON integer.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Snowflake;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a snowflake id as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Snowflake, E> {
                v.parse().map_err(|_| E::custom("invalid snowflake"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Snowflake, E> {
                if v > MAX_DECIMAL {
                    return Err(E::custom("invalid snowflake"));
                }
                Ok(Snowflake(v))
            }
            /// A whole number written with a fraction (`12.0`), exactly representable.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Snowflake, E> {
                let whole = whole_number(v).and_then(|n| u64::try_from(n).ok());
                whole.map(Snowflake).ok_or_else(|| E::custom("invalid snowflake"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why no id can be produced right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NextIdError {
    /// The clock is behind the last id by this many ms; wait it out (small) or fail (large).
    #[error("clock moved backwards by {behind_ms} ms")]
    ClockBehind { behind_ms: u64 },
    /// 4096 ids were already issued in this millisecond; wait for the next one.
    #[error("sequence exhausted for this millisecond")]
    SequenceExhausted,
    #[error("clock is outside the 42-bit snowflake range")]
    ClockOutOfRange,
    /// No reservation on disk covers this time (it is not being written): issuing ids
    /// now could repeat ones a restart would issue again.
    #[error("no id reservation covers this time (it could not be written)")]
    Unreserved,
}

/// The pure part of a generator: the last timestamp and sequence issued.
#[derive(Debug, Clone)]
pub struct IdState {
    datacenter: u8,
    worker: u8,
    last_ms: u64,
    sequence: u16,
    issued_any: bool,
    /// No id before this (ms since the epoch): what an earlier run of this node may have
    /// issued (see [`IdState::not_before`]).
    floor_ms: u64,
}

impl IdState {
    pub fn new(datacenter: u8, worker: u8) -> IdState {
        assert!(datacenter <= MAX_DATACENTER && worker <= MAX_WORKER);
        IdState { datacenter, worker, last_ms: 0, sequence: 0, issued_any: false, floor_ms: 0 }
    }

    /// Issues no id with a timestamp before `unix_ms`: an earlier run of this node may have
    /// issued ids up to it, and a clock that stepped back across the restart must not issue
    /// them again (until it is past, [`IdState::next`] says the clock is behind).
    pub fn not_before(mut self, unix_ms: u64) -> IdState {
        self.floor_ms = unix_ms.saturating_sub(DISCORD_EPOCH_MS);
        self
    }

    /// The next id for a clock reading in Unix ms. Never returns an id <= a previous one.
    pub fn next(&mut self, unix_ms: u64) -> Result<Snowflake, NextIdError> {
        let now = unix_ms.checked_sub(DISCORD_EPOCH_MS).ok_or(NextIdError::ClockOutOfRange)?;
        if now > MAX_TIMESTAMP_MS {
            return Err(NextIdError::ClockOutOfRange);
        }
        if self.issued_any && now < self.last_ms {
            return Err(NextIdError::ClockBehind { behind_ms: self.last_ms - now });
        }
        if now < self.floor_ms {
            return Err(NextIdError::ClockBehind { behind_ms: self.floor_ms - now });
        }
        if self.issued_any && now == self.last_ms {
            if self.sequence == MAX_SEQUENCE {
                return Err(NextIdError::SequenceExhausted);
            }
            self.sequence += 1;
        } else {
            self.sequence = 0;
        }
        self.last_ms = now;
        self.issued_any = true;
        Ok(Snowflake(
            (now << TIMESTAMP_SHIFT)
                | (u64::from(self.datacenter) << (WORKER_BITS + SEQUENCE_BITS))
                | (u64::from(self.worker) << SEQUENCE_BITS)
                | u64::from(self.sequence),
        ))
    }
}

/// `2017-07-11T17:27:07.299000+00:00` for Unix milliseconds (proleptic Gregorian, UTC).
pub fn iso8601_from_unix_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = DISCORD_EPOCH_MS + 300_000_000_000;

    /// One text per id, as the API description's pattern says; before, "+5" and "007"
    /// were ids too, and the description could not say so.
    #[test]
    fn ids_have_one_decimal_form() {
        for good in ["0", "7", "1577040727202856960", "9999999999999999999"] {
            assert_eq!(good.parse::<Snowflake>().map(|s| s.0.to_string()), Ok(good.to_owned()));
        }
        for bad in ["", "+5", "007", "-1", "1.0", " 1", "10000000000000000000", "18446744073709551615"] {
            assert_eq!(bad.parse::<Snowflake>(), Err(InvalidSnowflake), "{bad:?}");
        }
        let from_json = |v: &str| serde_json::from_str::<Snowflake>(v).ok();
        assert_eq!(from_json("\"12\""), Some(Snowflake(12)));
        assert_eq!(from_json("12"), Some(Snowflake(12)));
        assert_eq!(from_json("12.0"), Some(Snowflake(12)), "a whole number is an integer in JSON Schema");
        assert_eq!(from_json("12.5"), None);
        let many = serde_json::from_str::<Vec<Snowflake>>("[264, 1970.0, 224069, \"0\", 2967.0, 2021564337192629.0]");
        for one in ["264", "1970.0", "224069", "\"0\"", "2967.0", "2021564337192629.0"] {
            assert!(serde_json::from_str::<Snowflake>(one).is_ok(), "{one}");
        }
        assert!(many.is_ok(), "{many:?}");
        assert_eq!(from_json("10000000000000000000"), None);
    }

    #[test]
    fn fields_round_trip() {
        let mut s = IdState::new(3, 17);
        let id = s.next(T0).unwrap();
        assert_eq!(id.unix_ms(), T0);
        assert_eq!(id.datacenter(), 3);
        assert_eq!(id.worker(), 17);
        assert_eq!(id.sequence(), 0);
        let id2 = s.next(T0).unwrap();
        assert_eq!(id2.sequence(), 1);
        assert!(id2 > id);
    }

    #[test]
    fn known_discord_id_decodes() {
        // Discord's documentation example: 175928847299117063 -> 2016-04-30 11:18:25.796 UTC.
        let id = Snowflake(175_928_847_299_117_063);
        assert_eq!(id.unix_ms(), 1_462_015_105_796);
        // Discord calls these bits "internal worker" (1) and "process" (0).
        assert_eq!(id.datacenter(), 1);
        assert_eq!(id.worker(), 0);
        assert_eq!(id.sequence(), 7);
        assert_eq!(id.iso_timestamp(), "2016-04-30T11:18:25.796000+00:00");
    }

    #[test]
    fn sequence_exhaustion_waits_for_next_ms() {
        let mut s = IdState::new(0, 0);
        let mut last = Snowflake(0);
        for _ in 0..4096 {
            let id = s.next(T0).unwrap();
            assert!(id > last);
            last = id;
        }
        assert_eq!(s.next(T0), Err(NextIdError::SequenceExhausted));
        let id = s.next(T0 + 1).unwrap();
        assert!(id > last);
        assert_eq!(id.sequence(), 0);
    }

    #[test]
    fn clock_backwards_is_reported_never_duplicated() {
        let mut s = IdState::new(0, 0);
        let a = s.next(T0).unwrap();
        assert_eq!(s.next(T0 - 5), Err(NextIdError::ClockBehind { behind_ms: 5 }));
        let b = s.next(T0).unwrap();
        assert!(b > a);
    }

    #[test]
    fn a_restart_issues_nothing_before_what_the_last_run_reserved() {
        let mut s = IdState::new(0, 0).not_before(T0 + 2_000);
        // The clock stepped back across the restart: behind the reservation, no id.
        assert_eq!(s.next(T0 + 500), Err(NextIdError::ClockBehind { behind_ms: 1_500 }));
        let id = s.next(T0 + 2_000).unwrap();
        assert_eq!(id.unix_ms(), T0 + 2_000);
    }

    #[test]
    fn bucket_boundaries() {
        assert_eq!(bucket_of_ms(0), 0);
        assert_eq!(bucket_of_ms(BUCKET_SIZE_MS - 1), 0);
        assert_eq!(bucket_of_ms(BUCKET_SIZE_MS), 1);
        let last_of_7 = Snowflake::from_unix_ms(DISCORD_EPOCH_MS + 8 * BUCKET_SIZE_MS - 1);
        let first_of_8 = Snowflake::from_unix_ms(DISCORD_EPOCH_MS + 8 * BUCKET_SIZE_MS);
        assert_eq!(last_of_7.bucket(), 7);
        assert_eq!(first_of_8.bucket(), 8);
        // Any id within a millisecond shares the bucket, whatever its low bits.
        assert_eq!(Snowflake(first_of_8.0 | 0x3F_FFFF).bucket(), 8);
        assert_eq!(Snowflake(first_of_8.0 - 1).bucket(), 7);
    }

    #[test]
    fn json_is_a_string_and_parses_back() {
        let id = Snowflake(175_928_847_299_117_063);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"175928847299117063\"");
        assert_eq!(serde_json::from_str::<Snowflake>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Snowflake>("\"12x\"").is_err());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_from_unix_ms(DISCORD_EPOCH_MS), "2015-01-01T00:00:00.000000+00:00");
        assert_eq!(iso8601_from_unix_ms(951_782_400_000), "2000-02-29T00:00:00.000000+00:00");
    }
}
