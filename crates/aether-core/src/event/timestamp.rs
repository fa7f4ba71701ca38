//! An event's `timestamp` in JSON, as chrono writes and reads it, only faster: events are
//! encoded on every publish and append and decoded on every receipt from another node.
//!
//! - Decoding: chrono's own `Deserialize` goes through its lenient `FromStr` parser (~120 ns
//!   here), while the strict RFC 3339 parser takes ~25 ns. The strict parser is tried first and
//!   chrono's general one only for what it refuses: the same values are accepted, with the same
//!   results.
//! - Encoding: chrono's `Serialize` formats through `fmt` (~220 ns per timestamp, nearly half of
//!   encoding a small event). Years 0–9999 are written digit by digit into a stack buffer, in
//!   chrono's exact format (RFC 3339, `Z`, the shortest of 0/3/6/9 fraction digits that is
//!   exact); anything else (other years, leap seconds) is left to chrono.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(super) fn serialize<S: Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buffer = [0; MAX_LEN];
    match format(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => at.serialize(serializer),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
const MAX_LEN: usize = 30;

/// `at` in chrono's serde format, or `None` where chrono must write it (a year outside
/// 0–9999, a leap second).
fn format<'a>(at: &DateTime<Utc>, buffer: &'a mut [u8; MAX_LEN]) -> Option<&'a str> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let (fraction, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    let mut len = 0;
    // Writes `before` (if any), then `value` in `width` digits.
    let mut put = |before: Option<u8>, value: u32, width: u32| {
        if let Some(byte) = before {
            buffer[len] = byte;
            len += 1;
        }
        for place in (0..width).rev() {
            buffer[len] = b'0' + (value / 10u32.pow(place) % 10) as u8;
            len += 1;
        }
    };
    put(None, year, 4);
    put(Some(b'-'), at.month(), 2);
    put(Some(b'-'), at.day(), 2);
    put(Some(b'T'), at.hour(), 2);
    put(Some(b':'), at.minute(), 2);
    put(Some(b':'), at.second(), 2);
    if digits > 0 {
        put(Some(b'.'), fraction, digits);
    }
    put(Some(b'Z'), 0, 0);
    std::str::from_utf8(&buffer[..len]).ok()
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    let text = <Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.to_utc())
        .or_else(|_| text.parse())
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone};
    use proptest::prelude::*;

    use super::*;

    /// What chrono's own `Deserialize` makes of `text`.
    fn chrono_decodes(text: &str) -> Option<DateTime<Utc>> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    #[test]
    fn agrees_with_chrono_on_lenient_and_bad_forms() {
        for text in [
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.123456789Z",
            "2026-11-23t10:00:00z",
            "2026-11-23 10:00:00Z",
            "2026-11-23T10:00:00+02:00",
            "2026-11-23T10:00:00-0230",
            "2026-11-23T10:00:00.5+00:00",
            "2026-11-23T23:59:60Z",
            "2026-11-23T10:00Z",
            "2026-11-23",
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse(text).ok(), chrono_decodes(text), "{text:?}");
        }
    }

    /// What chrono's own `Serialize` writes for `at`.
    fn chrono_writes(at: &DateTime<Utc>) -> String {
        serde_json::to_string(at).unwrap()
    }

    fn written(at: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        serialize(at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_chrono_writes_at_the_edges() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        for at in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::UNIX_EPOCH,
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.timestamp_opt(1, 1).unwrap(),
            Utc.timestamp_opt(1, 1_000).unwrap(),
            Utc.timestamp_opt(1, 1_000_000).unwrap(),
            Utc.timestamp_opt(1, 999_999_999).unwrap(),
            Utc.timestamp_opt(1, 100_000_000).unwrap(),
            leap,
        ] {
            assert_eq!(written(&at), chrono_writes(&at), "{at:?}");
        }
    }

    proptest! {
        #[test]
        fn writes_what_chrono_writes(
            seconds in -62_200_000_000i64..260_000_000_000,
            nanos in prop_oneof![
                0u32..1_000_000_000,
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1_000),
                Just(0u32),
            ],
        ) {
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            let text = written(&at);
            prop_assert_eq!(&text, &chrono_writes(&at));
            prop_assert_eq!(parse(text.trim_matches('"')).unwrap(), at);
        }

        #[test]
        fn agrees_with_chrono_on_what_chrono_writes(
            seconds in -62_000_000_000i64..250_000_000_000,
            nanos in 0u32..1_000_000_000,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
            format in 0..4usize,
        ) {
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let seconds_format = [
                SecondsFormat::Secs,
                SecondsFormat::Millis,
                SecondsFormat::Nanos,
                SecondsFormat::AutoSi,
            ][format];
            for text in [
                at.to_rfc3339_opts(seconds_format, true),
                at.with_timezone(&offset).to_rfc3339_opts(seconds_format, false),
                serde_json::to_value(at).unwrap().as_str().unwrap().to_owned(),
            ] {
                prop_assert_eq!(parse(&text).ok(), chrono_decodes(&text), "{}", text);
            }
        }
    }
}
