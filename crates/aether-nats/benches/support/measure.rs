//! Measuring support shared by the benchmarks of this crate (`jetstream_store`, `nats_bus`),
//! included by each with `#[path = "support/measure.rs"] mod measure;` (each bench is a crate of
//! its own, so this is not a bench target): the benchmark event, sizes from the environment,
//! wall-clock and client CPU time of timed runs, rounds of alternating variants, medians and
//! percentiles, formatting, the report table, and the common `main`.

use std::future::Future;
use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, Version};
use aether_testkit::nats_server::NatsServer;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type BenchResult<T> = Result<T, BoxError>;

/// The runner: parses the arguments, takes the sizes (`sizes(bench_mode)`: `--bench` is given
/// by `cargo bench`, not by `cargo test --benches`), starts a `nats-server` and runs
/// `run(url, sizes, filters)` on a multi-threaded runtime, where `filters` are the arguments
/// that do not start with `-`; then prints the total time.
pub(crate) fn main<S, F>(
    sizes: impl FnOnce(bool) -> S,
    run: impl FnOnce(String, S, Vec<String>) -> F,
) -> BenchResult<()>
where
    F: Future<Output = BenchResult<()>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let sizes = sizes(bench_mode);
    let server = NatsServer::start()?;
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = runtime.block_on(run(url, sizes, filters));
    drop(runtime);
    drop(server);
    println!("\ntotal time {}", fmt_secs(started.elapsed().as_secs_f64()));
    result
}

/// Prints what a run is about: the server (`on` follows its version: where it runs), the client,
/// the mode, the size of the benchmark event (`payload_note` follows it) and the `sizes`.
pub(crate) fn print_heading(
    info: &async_nats::ServerInfo,
    on: &str,
    (mode, rounds): (&str, usize),
    payload_note: &str,
    sizes: &impl std::fmt::Debug,
) -> BenchResult<()> {
    println!(
        "nats-server {} (go {}){on}; async-nats 0.51; {mode} mode; {rounds} rounds; {} cores",
        info.version,
        info.go,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let sample = bench_event(&ActorId::new("sample")?, 1);
    println!(
        "event payload: {} bytes of JSON ({} of data){payload_note}",
        serde_json::to_vec(&sample)?.len(),
        serde_json::to_vec(&sample.data)?.len(),
    );
    println!("sizes: {sizes:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sizes and events
// ---------------------------------------------------------------------------------------------

/// Whether `AETHER_BENCH_QUICK` asks for the quick sizes (set, not empty and not `0`).
pub(crate) fn quick() -> bool {
    std::env::var("AETHER_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The environment variable `name` parsed as a `T` (`_` allowed as a digit separator), else
/// `default`.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// An event with ~140 bytes of `data` (~330 bytes of JSON in all).
pub(crate) fn bench_event(actor: &ActorId, version: Version) -> Event {
    let mut data = serde_json::Map::new();
    data.insert("amount".into(), (version * 7 % 1000).into());
    data.insert("currency".into(), "EUR".into());
    data.insert("reference".into(), format!("invoice-{version:08}").into());
    data.insert(
        "note".into(),
        "monthly subscription renewal, card ending 4242".into(),
    );
    Event::builder(actor.clone(), "Deposited")
        .version(version)
        .data_object(data)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Measuring, statistics and the report
// ---------------------------------------------------------------------------------------------

/// CPU time used so far by every thread of this process (the client side, ours and the
/// baselines alike: the server is another process), from `/proc/self/task/*/schedstat`; zero
/// where that is not available.
pub(crate) fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Wall-clock and client CPU time of one timed run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
}

#[derive(Debug)]
pub(crate) struct Meter {
    wall: Instant,
    cpu: Duration,
}

impl Meter {
    pub(crate) fn start() -> Self {
        Self {
            cpu: process_cpu(),
            wall: Instant::now(),
        }
    }

    pub(crate) fn stop(self) -> Sample {
        self.stop_at(Instant::now())
    }

    /// The wall clock up to `end` (when the last event arrived), the CPU up to now.
    pub(crate) fn stop_at(self, end: Instant) -> Sample {
        Sample {
            wall: end.saturating_duration_since(self.wall).as_secs_f64(),
            cpu: (process_cpu().saturating_sub(self.cpu)).as_secs_f64(),
        }
    }
}

/// The samples of one variant, one per round.
#[derive(Debug, Default, Clone)]
pub(crate) struct Series(pub(crate) Vec<Sample>);

impl Series {
    pub(crate) fn wall(&self) -> f64 {
        median(&self.0.iter().map(|s| s.wall).collect::<Vec<_>>())
    }

    pub(crate) fn cpu(&self) -> f64 {
        median(&self.0.iter().map(|s| s.cpu).collect::<Vec<_>>())
    }

    /// `ops` per second of the median round.
    pub(crate) fn rate(&self, ops: f64) -> f64 {
        ops / self.wall()
    }

    /// Median over rounds of `baseline time ÷ our time`: each round's pair ran back to back,
    /// so a slow period of the machine cancels out. > 1: ours is faster.
    pub(crate) fn paired(&self, baseline: &Self) -> f64 {
        let ratios: Vec<f64> = self
            .0
            .iter()
            .zip(&baseline.0)
            .map(|(ours, base)| base.wall / ours.wall)
            .collect();
        median(&ratios)
    }

    pub(crate) fn list_rates(&self, ops: f64, unit: &str) -> String {
        self.0
            .iter()
            .map(|s| fmt_rate(ops / s.wall, unit))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a variant runs: all of them, unless `AETHER_BENCH_ONLY` is `ours` or `raw` (to
/// profile one side alone; variants alternate ours, baseline, ours, baseline). A ratio with a
/// side left out is not a number.
#[allow(dead_code)] // the store and bus benches always run both sides
pub(crate) fn runs(variant: usize) -> bool {
    match std::env::var("AETHER_BENCH_ONLY").as_deref() {
        Ok("ours") => variant.is_multiple_of(2),
        Ok("raw") => !variant.is_multiple_of(2),
        _ => true,
    }
}

/// Runs `rounds` rounds of `variants` variants, rotating which runs first every round; a
/// variant for which `runs` says no is skipped (its series stays empty).
pub(crate) async fn rounds(
    rounds: usize,
    variants: usize,
    runs: impl Fn(usize) -> bool,
    mut run: impl AsyncFnMut(usize, usize) -> BenchResult<Sample>,
) -> BenchResult<Vec<Series>> {
    let mut series = vec![Series::default(); variants];
    for round in 0..rounds {
        for i in 0..variants {
            let variant = (i + round) % variants;
            if runs(variant) {
                let sample = run(variant, round).await?;
                series[variant].0.push(sample);
            }
        }
    }
    Ok(series)
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of `values` (`p` in 0..=100); NaN if there are none.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub(crate) fn fmt_rate(per_second: f64, unit: &str) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M {unit}/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} K {unit}/s", per_second / 1e3)
    } else {
        format!("{per_second:.0} {unit}/s")
    }
}

pub(crate) fn fmt_secs(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else if seconds >= 10e-6 {
        format!("{:.0} µs", seconds * 1e6)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

/// Throughput, time per operation and client CPU per operation of a series.
pub(crate) fn fmt_throughput(series: &Series, ops: f64, unit: &str) -> String {
    format!(
        "{} ({} each, CPU {})",
        fmt_rate(series.rate(ops), unit),
        fmt_secs(series.wall() / ops),
        fmt_secs(series.cpu() / ops)
    )
}

/// One line of the final table. `ratio` > 1: ours is faster.
#[derive(Debug)]
struct Row {
    name: String,
    ours: String,
    baseline: String,
    ratio: f64,
    /// The target and whether it was met.
    target: Option<(String, bool)>,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// A row whose target, if any, is a minimum ratio.
    pub(crate) fn row(
        &mut self,
        name: impl Into<String>,
        ours: String,
        baseline: String,
        ratio: f64,
        target: Option<f64>,
    ) {
        let target = target.map(|t| (format!("≥ {t}×"), ratio >= t));
        self.push(name.into(), ours, baseline, ratio, target);
    }

    pub(crate) fn push(
        &mut self,
        name: String,
        ours: String,
        baseline: String,
        ratio: f64,
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
            "  => {}: ours {} | baseline {} | {:.2}×{}",
            row.name,
            row.ours,
            row.baseline,
            row.ratio,
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

    /// Prints the results: a heading (the server's version, the mode, the rounds), the table
    /// and the notes.
    pub(crate) fn print(&self, server_version: &str, mode: &str, rounds: usize) {
        println!(
            "\nResults (nats-server {server_version}, {mode} mode, medians of {rounds} alternating rounds; ratio > 1: ours faster)"
        );
        println!();
        println!(
            "| benchmark | ours | raw async-nats baseline | ours vs baseline | target | met |"
        );
        println!("|---|---|---|---|---|---|");
        for row in &self.rows {
            let (target, ok) = match &row.target {
                Some((t, ok)) => (t.clone(), met(*ok).to_owned()),
                None => ("—".to_owned(), "—".to_owned()),
            };
            println!(
                "| {} | {} | {} | {:.2}× | {target} | {ok} |",
                row.name, row.ours, row.baseline, row.ratio
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
