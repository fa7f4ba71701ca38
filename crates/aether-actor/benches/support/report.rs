//! The results table of the actor benchmarks, included by each with
//! `#[path = "support/report.rs"] mod report;` (each bench is a crate of its own). The timing
//! itself (rounds, medians, the CPU meter, formatting) is `aether-nats`' bench support
//! (`measure.rs`), included the same way; this table differs from its table only in naming the
//! baseline, which is kameo or the raw store here, and in allowing targets that are not ratios
//! (memory).

/// One line of the table.
#[derive(Debug)]
struct Row {
    name: String,
    ours: String,
    baseline: String,
    /// Baseline time ÷ our time (> 1: ours faster), if the row compares times.
    ratio: Option<f64>,
    /// The target and whether it was met.
    target: Option<(String, bool)>,
}

/// The rows and notes of one run, printed at the end as a Markdown table.
#[derive(Debug, Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// A row comparing times; `ratio` is baseline ÷ ours, its target a minimum if any.
    pub(crate) fn ratio(
        &mut self,
        name: impl Into<String>,
        ours: String,
        baseline: String,
        ratio: f64,
        target: Option<f64>,
    ) {
        let target = target.map(|t| (format!("≥ {t}×"), ratio >= t));
        self.push(name.into(), ours, baseline, Some(ratio), target);
    }

    /// A row comparing times (`ratio` is baseline ÷ ours) whose target is not the ratio
    /// (`met` says whether `ours` meets it: a latency bound, for example).
    pub(crate) fn compared(
        &mut self,
        name: impl Into<String>,
        ours: String,
        baseline: String,
        ratio: f64,
        target: &str,
        met: bool,
    ) {
        self.push(
            name.into(),
            ours,
            baseline,
            Some(ratio),
            Some((target.to_owned(), met)),
        );
    }

    /// A row with a target of its own (`met` says whether `ours` meets it).
    pub(crate) fn absolute(
        &mut self,
        name: impl Into<String>,
        ours: String,
        baseline: String,
        target: &str,
        met: bool,
    ) {
        self.push(
            name.into(),
            ours,
            baseline,
            None,
            Some((target.to_owned(), met)),
        );
    }

    fn push(
        &mut self,
        name: String,
        ours: String,
        baseline: String,
        ratio: Option<f64>,
        target: Option<(String, bool)>,
    ) {
        let row = Row {
            name,
            ours,
            baseline,
            ratio,
            target,
        };
        println!(
            "  => {}: ours {} | baseline {}{}{}",
            row.name,
            row.ours,
            row.baseline,
            row.ratio.map(|r| format!(" | {r:.2}×")).unwrap_or_default(),
            row.target
                .as_ref()
                .map(|(t, ok)| format!(" (target {t}: {})", met(*ok)))
                .unwrap_or_default()
        );
        self.rows.push(row);
    }

    pub(crate) fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// Prints `heading`, the table (`baseline` names the baseline column) and the notes.
    pub(crate) fn print(&self, heading: &str, baseline: &str) {
        println!("\n{heading}\n");
        println!("| benchmark | ours | {baseline} | ours vs baseline | target | met |");
        println!("|---|---|---|---|---|---|");
        for row in &self.rows {
            let (target, ok) = match &row.target {
                Some((t, ok)) => (t.clone(), met(*ok).to_owned()),
                None => ("—".to_owned(), "—".to_owned()),
            };
            let ratio = row
                .ratio
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            println!(
                "| {} | {} | {} | {ratio} | {target} | {ok} |",
                row.name, row.ours, row.baseline
            );
        }
        if !self.notes.is_empty() {
            println!();
            for note in &self.notes {
                println!("- {note}");
            }
        }
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}
