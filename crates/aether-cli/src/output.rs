//! Printing: tables for people, JSON for programs.

use std::io::Write;

use comfy_table::{Cell, CellAlignment, Table, presets};
use serde::Serialize;

use crate::error::CliError;

/// A table with `headers`; columns whose header is in `right` are right-aligned (numbers).
pub(crate) fn table(headers: &[&str], right: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(headers.iter().map(|h| Cell::new(*h)));
    for row in rows {
        table.add_row(row.into_iter().enumerate().map(|(i, value)| {
            let cell = Cell::new(value);
            if right.contains(&headers[i]) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    table.to_string()
}

/// Prints `text` and a newline on stdout.
pub(crate) fn line(text: impl std::fmt::Display) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Prints `value` as one JSON document (pretty) on stdout.
pub(crate) fn json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    line(text)
}

/// Prints `value` as one JSON line on stdout.
pub(crate) fn json_line(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(value).map_err(std::io::Error::other)?;
    line(text)
}

/// `data` as compact JSON, cut to `max` characters.
pub(crate) fn short_json(data: &impl Serialize, max: usize) -> String {
    let text = serde_json::to_string(data).unwrap_or_default();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// A timestamp as people read it: RFC 3339, milliseconds, UTC.
pub(crate) fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_json_cuts_long_data_on_a_character_boundary() {
        let data = serde_json::json!({"note": "ééééééééééééééééééééé"});
        assert_eq!(
            short_json(&data, 100),
            r#"{"note":"ééééééééééééééééééééé"}"#
        );
        let cut = short_json(&data, 12);
        assert_eq!(cut.chars().count(), 12);
        assert!(cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn numbers_are_right_aligned() {
        let table = table(
            &["NAME", "N"],
            &["N"],
            vec![vec!["a".into(), "7".into()], vec!["b".into(), "123".into()]],
        );
        assert!(table.contains("|   7 |"), "{table}");
    }
}
