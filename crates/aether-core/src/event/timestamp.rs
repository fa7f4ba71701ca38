//! Decoding an event's `timestamp`: chrono's own `Deserialize` goes through its lenient
//! `FromStr` parser (~120 ns here), while the strict RFC 3339 parser takes ~25 ns. Events are
//! decoded on every receipt from another node, so the strict parser is tried first and chrono's
//! general one only for what it refuses: the same values are accepted, with the same results.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

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

    proptest! {
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
