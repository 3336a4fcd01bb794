//! Time as the domain sees it: whole seconds since the Unix epoch, passed in by the caller.
//!
//! Nothing in `domain` reads the clock; the shell (HTTP handlers, CLI) calls
//! `crate::clock::now` once per operation and hands the value down, which keeps every rule
//! testable with any instant. Whole seconds match the RFC 3339 strings the API shows.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Serialised as RFC 3339 in human-readable formats (the JSON export) and as the plain
/// number of seconds in binary ones (the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() { serializer.collect_str(self) } else { self.0.serialize(serializer) }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` {e}")))
        } else {
            // The same range as every other way in: a stored record outside it would decode,
            // then fail to export or import (found by the codec fuzz target).
            let seconds = i64::deserialize(deserializer)?;
            if !(0..=MAX_SECONDS).contains(&seconds) {
                return Err(serde::de::Error::custom(format!("{seconds} seconds {}", TimeError::OutOfRange)));
            }
            Ok(Timestamp(seconds))
        }
    }
}

/// The latest instant we accept: the end of year 9999, the last one RFC 3339 can write.
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    pub fn from_unix(seconds: i64) -> Self {
        Timestamp(seconds.clamp(0, MAX_SECONDS))
    }

    /// The whole second containing `ms` milliseconds since the epoch.
    pub fn from_millis(ms: u64) -> Self {
        Timestamp::from_unix(i64::try_from(ms / 1000).unwrap_or(i64::MAX))
    }

    pub fn unix(self) -> i64 {
        self.0
    }

    /// The end of a lifetime of `seconds` that starts at `now_ms` (an expiry, a grace
    /// period): counted from the next whole second, so that the part of the current second
    /// already gone never makes it shorter than asked. It lasts from `seconds` to just under
    /// `seconds + 1`; counted from the current second, one second could have lasted 1 ms.
    pub fn at_least_seconds_after(now_ms: u64, seconds: u64) -> Self {
        Timestamp::from_unix(i64::try_from(now_ms.div_ceil(1000)).unwrap_or(i64::MAX)).plus_seconds(seconds)
    }

    pub fn plus_seconds(self, seconds: u64) -> Self {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        Timestamp::from_unix(self.0.saturating_add(seconds))
    }

    /// Parses an RFC 3339 date-time with any offset, e.g. `2027-01-31T12:00:00Z`.
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimeError> {
        let parsed = OffsetDateTime::parse(input, &Rfc3339).map_err(|_| TimeError::NotRfc3339)?;
        let seconds = parsed.unix_timestamp();
        if !(0..=MAX_SECONDS).contains(&seconds) {
            return Err(TimeError::OutOfRange);
        }
        Ok(Timestamp(seconds))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with a `Z`, e.g. `2026-11-26T08:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(at) => {
                let (year, month, day) = at.to_calendar_date();
                let (hour, minute, second) = at.to_hms();
                write!(f, "{year:04}-{:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z", u8::from(month))
            }
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("must be an RFC 3339 date-time such as 2027-01-31T12:00:00Z")]
    NotRfc3339,
    #[error("is outside the years 1970 to 9999")]
    OutOfRange,
    #[error("must be a number with a unit: 30s, 15m, 12h or 7d")]
    NotADuration,
}

/// Parses a duration written as a whole number and one unit (`30s`, `15m`, `12h`, `7d`)
/// into seconds. The format is deliberately small: it is typed at a terminal.
pub fn parse_duration(input: &str) -> Result<u64, TimeError> {
    let input = input.trim();
    let split = input.len().checked_sub(1).ok_or(TimeError::NotADuration)?;
    if !input.is_char_boundary(split) {
        return Err(TimeError::NotADuration);
    }
    let (digits, unit) = input.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(TimeError::NotADuration),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::NotADuration);
    }
    let count: u64 = digits.parse().map_err(|_| TimeError::NotADuration)?;
    count.checked_mul(unit_seconds).ok_or(TimeError::NotADuration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(1_795_651_200).to_string(), "2026-11-26T00:00:00Z");
    }

    #[test]
    fn rfc3339_parsing_accepts_offsets_and_rejects_garbage() {
        let t = Timestamp::parse_rfc3339("2026-11-26T02:00:00+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T00:00:00Z");
        assert_eq!(Timestamp::parse_rfc3339("tomorrow"), Err(TimeError::NotRfc3339));
        assert_eq!(Timestamp::parse_rfc3339("1960-01-01T00:00:00Z"), Err(TimeError::OutOfRange));
    }

    #[test]
    fn durations_need_a_number_and_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "s", "10", "1w", "-1s", "1.5h", "99999999999999999999d", "1é"] {
            assert_eq!(parse_duration(bad), Err(TimeError::NotADuration), "{bad}");
        }
    }
}
