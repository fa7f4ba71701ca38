//! Benchmarks of [`SqliteEventStore`] against raw `rusqlite` doing the same work on the same
//! schema with the same pragmas, measured in the same run, in one directory on one file system.
//!
//! Every comparison runs ours and the baseline (and a diagnostic variant or two) once per
//! round, over several rounds, rotating which goes first (the machine is shared and noisy). It
//! reports the median over rounds of each variant, and as the ratio the median over rounds of
//! `baseline time ÷ our time` within a round (above 1: ours is faster). Next to each time it
//! prints the process's CPU per operation (all threads, from `/proc/self/task/*/schedstat`).
//!
//! 1. `save`: sequential durable saves ([`Durability::Full`], one task, one event per
//!    [`EventStore::save_event`], each awaited) against raw `rusqlite` on a database of its
//!    own (WAL, `synchronous = FULL`, the store's schema) doing what the store's writer does
//!    per save, one transaction per event: `BEGIN IMMEDIATE`, read the actor's head (adding
//!    the actor on its first event), insert the record with its JSON body (encoded with
//!    `serde_json`, as the store does), move the head, `COMMIT`. The store does more per
//!    save (the input limits, the event-id lookup, a savepoint, the hop to its writer thread
//!    and back): the ratio is what that costs on top of the commit;
//! 2. `save` too, in the same rounds: 1 000 actors saving at once (one task per actor, each
//!    saving its events one after another) on a store of its own (so that the databases of (1),
//!    ours and raw, hold the same events): events/s against the sequential figure of (1), both
//!    ours — what group commit buys;
//! 3. `replay`: `events(actor, 0)` of one actor of 100 000 events in a database of 1 000 000
//!    (9 other actors of 100 000; the ten written at once in batches of 20, so each actor's
//!    records are interleaved with the others' in the file), against a raw indexed
//!    `SELECT body FROM records WHERE actor = ? ORDER BY position` (the actor's integer id
//!    looked up first) on its own read-only connection to the same file, that also decodes
//!    each body into an `aether_core::Event` with `Event::from_json` (`serde_json::from_str`
//!    after one UTF-8 check: the decoder the store uses, so the ratio is the store's own
//!    cost); as diagnostics, the same with `serde_json::from_slice` (what raw code would
//!    likely write), and the `SELECT` without decoding (each body copied out);
//! 4. bytes on disk per event of that database (database + WAL after a
//!    `wal_checkpoint(TRUNCATE)`, so the WAL is empty), next to the JSON body's size;
//! 5. this machine's cost of one sync — overwrite 4 KiB of a 1 MiB file and `fdatasync` it,
//!    and the same with `fsync` (which is what the bundled SQLite calls on each commit: it is
//!    built without `HAVE_FDATASYNC`), in the benchmarks' directory — timed in the rounds of
//!    (1)–(2) (as many syncs of each a round as sequential saves, so they see the same disk and
//!    load), medians of all, printed next to the per-commit time of (1) and the per-event time
//!    of (2).
//!
//! The databases live in `AETHER_BENCH_DIR` if set, else in Cargo's target tmp directory (on
//! the disk, not a tmpfs: the syncs must be real), and are removed at the end.
//!
//! Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a quick run; without
//! `--bench` (`cargo test --benches`) a tiny smoke run. Overrides: `AETHER_BENCH_SEQ` (saves a
//! round in 1), `_ACTORS` and `_EVENTS_PER_ACTOR` (2), `_REPLAY` (events of the replayed
//! actor), `_OTHERS` (events of the other actors), `_OTHER_ACTORS`, `_FSYNCS` (syncs of the
//! probe when `save` does not run), `_ROUNDS`, `_REPLAY_ROUNDS`. Arguments that do not start
//! with `-` select benchmarks by name (`save`, `replay`; the fsync probe always runs). To
//! profile one side alone, `AETHER_BENCH_ONLY=ours` or `=raw` (then the ratios are not
//! numbers).
//!
//! Times on a shared 2-core machine: full ~35 s, quick ~20 s when it is quiet, up to ~60 s
//! under load (8–20 s of either build the replay's database of 1 000 000 events, the same in
//! both modes); smoke under a second.
//!
//! Run: `cargo bench -p aether-sqlite --bench sqlite_store`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aether_core::{ActorId, Event, EventStore, Namespace, SaveOutcome};
use aether_sqlite::{DATABASE_FILE, Durability, SqliteConfig, SqliteEventStore};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

#[allow(dead_code)]
#[path = "../../aether-nats/benches/support/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../../aether-actor/benches/support/report.rs"]
mod report;

use measure::{
    BenchResult, Meter, Sample, Series, bench_event, env_or, fmt_rate, fmt_secs, fmt_throughput,
    median, percentile, rounds,
};
use report::Report;

/// The store's own schema, for the raw baseline's database.
use aether_sqlite::schema::{SCHEMA, SCHEMA_VERSION};

/// The namespace of every store in the benchmark.
const NAMESPACE: &str = "bench";

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    /// Rounds of the replay benchmark (cheaper than the saves': more of them).
    replay_rounds: usize,
    /// Sequential saves per round (1).
    seq: u64,
    /// Concurrent actors (2), and the events each saves per round.
    actors: usize,
    events_per_actor: u64,
    /// Events of the replayed actor (3), of the other actors, and how many others.
    replay: u64,
    others: u64,
    other_actors: u64,
    /// Syncs timed by the fsync probe (5) when `save` does not run (else it runs in its rounds).
    fsyncs: usize,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                replay_rounds: 1,
                seq: 20,
                actors: 50,
                events_per_actor: 2,
                replay: 500,
                others: 1_500,
                other_actors: 3,
                fsyncs: 20,
            }
        } else if measure::quick() {
            Self {
                mode: "quick",
                rounds: 7,
                replay_rounds: 15,
                seq: 300,
                actors: 1_000,
                events_per_actor: 3,
                replay: 100_000,
                others: 900_000,
                other_actors: 9,
                fsyncs: 300,
            }
        } else {
            Self {
                mode: "full",
                rounds: 11,
                replay_rounds: 25,
                seq: 1_000,
                actors: 1_000,
                events_per_actor: 10,
                replay: 100_000,
                others: 900_000,
                other_actors: 9,
                fsyncs: 2_000,
            }
        };
        Self {
            mode: base.mode,
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            replay_rounds: env_or("AETHER_BENCH_REPLAY_ROUNDS", base.replay_rounds).max(1),
            seq: env_or("AETHER_BENCH_SEQ", base.seq).max(1),
            actors: env_or("AETHER_BENCH_ACTORS", base.actors).max(1),
            events_per_actor: env_or("AETHER_BENCH_EVENTS_PER_ACTOR", base.events_per_actor).max(1),
            replay: env_or("AETHER_BENCH_REPLAY", base.replay).max(1),
            others: env_or("AETHER_BENCH_OTHERS", base.others),
            other_actors: env_or("AETHER_BENCH_OTHER_ACTORS", base.other_actors).max(1),
            fsyncs: env_or("AETHER_BENCH_FSYNCS", base.fsyncs).max(1),
        }
    }
}

/// Whether a side runs: both, unless `AETHER_BENCH_ONLY` is `ours` or `raw`.
fn side_runs(ours: bool) -> bool {
    match std::env::var("AETHER_BENCH_ONLY").as_deref() {
        Ok("ours") => ours,
        Ok("raw") => !ours,
        _ => true,
    }
}

fn actor(name: impl Into<String>) -> BenchResult<ActorId> {
    Ok(ActorId::new(name.into())?)
}

/// The benchmark's events `versions` of `actor` (~270 bytes of JSON each, `measure::bench_event`).
fn events_of(actor: &ActorId, versions: std::ops::RangeInclusive<u64>) -> Vec<Event> {
    versions.map(|v| bench_event(actor, v)).collect()
}

/// The load average (1, 5, 15 minutes), as `/proc/loadavg` says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

// ---------------------------------------------------------------------------------------------
// The raw baseline: a connection with the store's pragmas, on the store's schema.
// ---------------------------------------------------------------------------------------------

/// A raw connection to `file` with the store's pragmas for [`Durability::Full`].
fn raw_connection(file: &Path) -> BenchResult<Connection> {
    let conn = Connection::open(file)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;",
    )?;
    Ok(conn)
}

/// A new raw database at `file` with the store's schema and namespace 1.
fn raw_database(file: &Path) -> BenchResult<Connection> {
    let conn = raw_connection(file)?;
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    conn.execute("INSERT INTO namespaces (name) VALUES (?1)", [NAMESPACE])?;
    Ok(conn)
}

/// One durable save as the store's writer does it, in a transaction of its own: read the
/// actor's head (adding the actor on its first event), insert the record with its JSON body,
/// move the head.
fn raw_save(conn: &Connection, ns: i64, event: &Event) -> BenchResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let head: Option<(i64, u64)> = conn
        .prepare_cached("SELECT id, version FROM actors WHERE namespace = ?1 AND actor_id = ?2")?
        .query_row(params![ns, event.actor_id.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let (key, version) = match head {
        Some(head) => head,
        None => {
            let key = conn
                .prepare_cached("INSERT INTO actors (namespace, actor_id) VALUES (?1, ?2)")?
                .insert(params![ns, event.actor_id.as_str()])?;
            (key, 0)
        }
    };
    if event.version != version + 1 {
        conn.execute_batch("ROLLBACK")?;
        return Err(format!("raw save of version {} on {version}", event.version).into());
    }
    let body = serde_json::to_string(event)?; // JSON text, as the store writes it
    conn.prepare_cached(
        "INSERT INTO records (namespace, actor, version, event_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![ns, key, event.version, event.id.as_str(), body])?;
    conn.prepare_cached("UPDATE actors SET version = ?2, epoch = ?3 WHERE id = ?1")?
        .execute(params![key, event.version, 0])?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. The fsync probe
// ---------------------------------------------------------------------------------------------

/// The times of the fsync probe's syncs.
#[derive(Debug, Default)]
struct Syncs {
    /// 4 KiB write + `fdatasync`.
    data: Vec<f64>,
    /// 4 KiB write + `fsync` (what the bundled SQLite calls on commit: it is built without
    /// `HAVE_FDATASYNC`).
    full: Vec<f64>,
}

impl Syncs {
    fn print(&self) {
        for (name, times) in [("fdatasync", &self.data), ("fsync", &self.full)] {
            println!(
                "  4 KiB write + {name}, {} times: p50 {}, p90 {}, p99 {}",
                times.len(),
                fmt_secs(median(times)),
                fmt_secs(percentile(times, 90.0)),
                fmt_secs(percentile(times, 99.0))
            );
        }
    }
}

/// Times `n` syncs of each kind, alternating: each overwrites one 4 KiB block of a 1 MiB file
/// in `dir` (in turn), then `fdatasync`s or `fsync`s it.
fn fsync_probe(dir: &Path, n: usize, syncs: &mut Syncs) -> BenchResult<()> {
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 256;
    let path = dir.join("fsync-probe");
    let file = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    file.write_all_at(&vec![0_u8; BLOCK * BLOCKS], 0)?;
    file.sync_all()?;
    let block = vec![0x5a_u8; BLOCK];
    for i in 0..2 * n {
        let started = Instant::now();
        file.write_all_at(&block, ((i % BLOCKS) * BLOCK) as u64)?;
        if i % 2 == 0 {
            file.sync_data()?;
            syncs.data.push(started.elapsed().as_secs_f64());
        } else {
            file.sync_all()?;
            syncs.full.push(started.elapsed().as_secs_f64());
        }
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1–2. Saves
// ---------------------------------------------------------------------------------------------

/// What the save benchmarks found, for the fsync line.
struct SaveFigures {
    /// Median seconds per sequential save (one commit each), ours and raw.
    ours_commit: f64,
    raw_commit: f64,
    /// Median seconds per event with 1 000 actors at once (group commit).
    group_event: f64,
    /// Every sync of the fsync probe, from the same rounds.
    syncs: Syncs,
}

async fn save(root: &Path, sizes: &Sizes, report: &mut Report) -> BenchResult<SaveFigures> {
    println!(
        "\n== save: {} sequential durable saves a round, ours against raw rusqlite; then {} actors × {} saves at once (ours)",
        sizes.seq, sizes.actors, sizes.events_per_actor
    );
    let store = SqliteEventStore::open(
        root.join("save-ours"),
        Namespace::new(NAMESPACE)?,
        SqliteConfig::default(),
    )?;
    // Benchmark 2 writes ten times as many events a round: on a store of its own, so that ours
    // and the baseline of 1 write the same databases (a larger one is slower to write).
    let many = SqliteEventStore::open(
        root.join("save-many"),
        Namespace::new(NAMESPACE)?,
        SqliteConfig::default(),
    )?;
    std::fs::create_dir_all(root.join("save-raw"))?;
    let raw = raw_database(&root.join("save-raw").join(DATABASE_FILE))?;
    let ns: i64 = raw.query_row(
        "SELECT id FROM namespaces WHERE name = ?1",
        [NAMESPACE],
        |row| row.get(0),
    )?;
    // Variants: 0 ours sequential, 1 raw sequential, 2 ours with many actors at once, 3 the
    // fsync probe (as many syncs as sequential saves), so that it sees the same disk.
    let mut syncs = Syncs::default();
    let series = rounds(
        sizes.rounds,
        4,
        |variant| variant == 3 || side_runs(variant != 1),
        async |variant, round| match variant {
            0 => {
                let events = events_of(&actor(format!("seq-{round}"))?, 1..=sizes.seq);
                let meter = Meter::start();
                for event in events {
                    let outcome = store.save_event(event).await?;
                    if outcome != SaveOutcome::Saved {
                        return Err(format!("sequential save: {outcome:?}").into());
                    }
                }
                Ok(meter.stop())
            }
            1 => {
                let events = events_of(&actor(format!("seq-{round}"))?, 1..=sizes.seq);
                let meter = Meter::start();
                for event in &events {
                    raw_save(&raw, ns, event)?;
                }
                Ok(meter.stop())
            }
            2 => many_actors(&many, sizes, round).await,
            _ => {
                let meter = Meter::start();
                fsync_probe(root, usize::try_from(sizes.seq)?, &mut syncs)?;
                Ok(meter.stop())
            }
        },
    )
    .await?;
    let (ours, base, many) = (&series[0], &series[1], &series[2]);
    let seq = sizes.seq as f64;
    let total = (sizes.actors as u64 * sizes.events_per_actor) as f64;
    println!("  ours sequential: {}", ours.list_rates(seq, "saves"));
    println!("  raw sequential:  {}", base.list_rates(seq, "saves"));
    println!(
        "  ours, {} actors: {}",
        sizes.actors,
        many.list_rates(total, "events")
    );
    report.ratio(
        "1. sequential durable save (Durability::Full, 1 event per commit)",
        fmt_throughput(ours, seq, "saves"),
        fmt_throughput(base, seq, "saves"),
        ours.paired(base),
        Some(0.9),
    );
    // Per round: sequential time per event ÷ time per event with many actors at once.
    let speedup: Vec<f64> = ours
        .0
        .iter()
        .zip(&many.0)
        .map(|(one, all)| (one.wall / seq) / (all.wall / total))
        .collect();
    report.ratio(
        format!(
            "2. {} actors saving at once (group commit), against the sequential figure of 1",
            sizes.actors
        ),
        fmt_throughput(many, total, "events"),
        format!("{} (ours, sequential)", fmt_rate(ours.rate(seq), "saves")),
        median(&speedup),
        Some(5.0),
    );
    Ok(SaveFigures {
        ours_commit: ours.wall() / seq,
        raw_commit: base.wall() / seq,
        group_event: many.wall() / total,
        syncs,
    })
}

/// One round of benchmark 2: every actor saves its events one after another, all at once.
async fn many_actors(store: &SqliteEventStore, sizes: &Sizes, round: usize) -> BenchResult<Sample> {
    let mut work = Vec::with_capacity(sizes.actors);
    for i in 0..sizes.actors {
        let actor = actor(format!("many-{round}-{i}"))?;
        work.push(events_of(&actor, 1..=sizes.events_per_actor));
    }
    let meter = Meter::start();
    let mut tasks = tokio::task::JoinSet::new();
    for events in work {
        let store = store.clone();
        tasks.spawn(async move {
            for event in events {
                let outcome = store.save_event(event).await?;
                if outcome != SaveOutcome::Saved {
                    return Err(format!("concurrent save: {outcome:?}").into());
                }
            }
            Ok::<_, measure::BoxError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(meter.stop())
}

// ---------------------------------------------------------------------------------------------
// 3–4. Replay, and bytes on disk
// ---------------------------------------------------------------------------------------------

/// Writes the replay benchmark's database in `dir`: the replayed actor and the others, all at
/// once in batches of 20 (so their records interleave), through the store with relaxed
/// durability (how it was written does not matter to the reads).
async fn build_replay(dir: &Path, sizes: &Sizes, target: &ActorId) -> BenchResult<()> {
    const BATCH: u64 = 20;
    let config = SqliteConfig {
        durability: Durability::Relaxed,
        check_on_open: false,
        ..SqliteConfig::default()
    };
    let store = SqliteEventStore::open(dir, Namespace::new(NAMESPACE)?, config)?;
    let per_other = sizes.others / sizes.other_actors;
    let mut writers = vec![(target.clone(), sizes.replay)];
    for i in 0..sizes.other_actors {
        writers.push((actor(format!("other-{i}"))?, per_other));
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (actor, count) in writers {
        let store = store.clone();
        tasks.spawn(async move {
            let mut next = 1;
            while next <= count {
                let last = (next + BATCH - 1).min(count);
                store.save_events(events_of(&actor, next..=last)).await?;
                next = last + 1;
            }
            Ok::<_, measure::BoxError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    drop(store);
    println!(
        "  built {} events ({} of the replayed actor) in {}",
        sizes.replay + per_other * sizes.other_actors,
        sizes.replay,
        fmt_secs(started.elapsed().as_secs_f64())
    );
    Ok(())
}

/// Benchmark 4: checkpoints the database into its main file (emptying the WAL) and reports its
/// bytes on disk per event.
fn bytes_on_disk(file: &Path, report: &mut Report) -> BenchResult<()> {
    let conn = raw_connection(file)?;
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Err("the checkpoint could not complete".into());
    }
    let (records, body_bytes): (u64, u64) = conn.query_row(
        "SELECT count(*), sum(length(body)) FROM records",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let pages: u64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let free: u64 = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    drop(conn);
    let database = std::fs::metadata(file)?.len();
    let wal_path = PathBuf::from(format!("{}-wal", file.display()));
    let wal = std::fs::metadata(&wal_path).map_or(0, |m| m.len());
    let per_event = (database + wal) as f64 / records as f64;
    let body = body_bytes as f64 / records as f64;
    println!(
        "  on disk: database {database} B + WAL {wal} B for {records} events ({pages} pages of {page_size} B, {free} free)"
    );
    report.absolute(
        "4. bytes on disk per event (database + WAL after a checkpoint)",
        format!(
            "{per_event:.0} B/event ({:.0} MB for {records} events)",
            (database + wal) as f64 / 1e6
        ),
        format!("JSON body {body:.0} B/event"),
        "—",
        true,
    );
    report.note(format!(
        "Bytes on disk: {per_event:.0} B per event = {:.2}× the JSON body ({body:.0} B); the rest is the row (ids, version, event id) and four indexes (by actor, by version, by event id, in feed order).",
        per_event / body
    ));
    Ok(())
}

async fn replay(root: &Path, sizes: &Sizes, report: &mut Report) -> BenchResult<()> {
    let per_other = sizes.others / sizes.other_actors;
    println!(
        "\n== replay: events(actor, 0) of {} events among {} (ours) against raw SELECT + decode",
        sizes.replay,
        sizes.replay + per_other * sizes.other_actors
    );
    let dir = root.join("replay");
    let target = actor("replay-target")?;
    build_replay(&dir, sizes, &target).await?;
    let file = dir.join(DATABASE_FILE);
    bytes_on_disk(&file, report)?;

    let opened = Instant::now();
    let store = SqliteEventStore::open(&dir, Namespace::new(NAMESPACE)?, SqliteConfig::default())?;
    println!(
        "  reopened with the default config (quick_check on open) in {}",
        fmt_secs(opened.elapsed().as_secs_f64())
    );
    let raw = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let expected = usize::try_from(sizes.replay)?;
    // Variants: 0 ours, 1 raw SELECT + `Event::from_json`, 2 raw SELECT +
    // `serde_json::from_slice`, 3 raw SELECT alone.
    let series = rounds(
        sizes.replay_rounds,
        4,
        |variant| side_runs(variant == 0),
        async |variant, _round| {
            let meter = Meter::start();
            let (sample, count) = match variant {
                0 => {
                    let events = store.events(&target, 0).await?;
                    (meter.stop(), events.len())
                }
                1 => {
                    let events = raw_replay(&raw, &target, |body| Ok(Event::from_json(body)?))?;
                    (meter.stop(), events.len())
                }
                2 => {
                    let events = raw_replay(&raw, &target, |body| {
                        Ok(serde_json::from_slice::<Event>(body)?)
                    })?;
                    (meter.stop(), events.len())
                }
                _ => {
                    let bodies = raw_replay(&raw, &target, |body| Ok(body.to_vec()))?;
                    (meter.stop(), bodies.len())
                }
            };
            if count != expected {
                return Err(format!("replay variant {variant}: {count} events").into());
            }
            Ok(sample)
        },
    )
    .await?;
    let (ours, decode, slice, select) = (&series[0], &series[1], &series[2], &series[3]);
    let n = sizes.replay as f64;
    let each = |s: &Series| {
        format!(
            "{} ({} for {}, CPU {} each)",
            fmt_rate(s.rate(n), "events"),
            fmt_secs(s.wall()),
            sizes.replay,
            fmt_secs(s.cpu() / n)
        )
    };
    println!(
        "  ours:                    {}",
        ours.list_rates(n, "events")
    );
    println!(
        "  raw + Event::from_json:  {}",
        decode.list_rates(n, "events")
    );
    println!(
        "  raw + serde_json::from_slice: {}",
        slice.list_rates(n, "events")
    );
    println!(
        "  raw SELECT alone:        {}",
        select.list_rates(n, "events")
    );
    let among = sizes.replay + per_other * sizes.other_actors;
    report.ratio(
        format!(
            "3. replay events(actor, 0): {} events of one actor among {among}",
            sizes.replay
        ),
        each(ours),
        format!("{} (raw SELECT + Event::from_json)", each(decode)),
        ours.paired(decode),
        Some(0.9),
    );
    report.ratio(
        "3'. (diagnostic) replay against raw SELECT + serde_json::from_slice",
        each(ours),
        format!("{} (raw SELECT + from_slice)", each(slice)),
        ours.paired(slice),
        None,
    );
    report.ratio(
        "3''. (diagnostic) replay against the raw SELECT alone, bodies copied out, not decoded",
        each(ours),
        format!("{} (raw SELECT)", each(select)),
        ours.paired(select),
        None,
    );
    Ok(())
}

/// The raw replay: the actor's bodies in commit order by the `records_of_actor` index, each
/// turned into a `T` by `decode`.
fn raw_replay<T>(
    conn: &Connection,
    actor: &ActorId,
    decode: impl Fn(&[u8]) -> BenchResult<T>,
) -> BenchResult<Vec<T>> {
    let key: i64 = conn
        .prepare_cached(
            "SELECT a.id FROM actors a JOIN namespaces n ON n.id = a.namespace \
             WHERE n.name = ?1 AND a.actor_id = ?2",
        )?
        .query_row(params![NAMESPACE, actor.as_str()], |row| row.get(0))?;
    let mut statement =
        conn.prepare_cached("SELECT body FROM records WHERE actor = ?1 ORDER BY position")?;
    let mut rows = statement.query([key])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row.get_ref(0)?.as_bytes()?)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async fn run(root: &Path, sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| f == name);
    println!(
        "SQLite {} (rusqlite 0.37, bundled); {} mode; {} rounds; {} cores; load average {}",
        rusqlite::version(),
        sizes.mode,
        sizes.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let sample = bench_event(&actor("sample")?, 1);
    println!(
        "event: {} bytes of JSON ({} of data); directory {}",
        serde_json::to_vec(&sample)?.len(),
        serde_json::to_vec(&sample.data)?.len(),
        root.display()
    );
    println!("sizes: {sizes:?}");
    let mut report = Report::default();

    let figures = if selected("save") {
        Some(save(root, &sizes, &mut report).await?)
    } else {
        None
    };
    if selected("replay") {
        replay(root, &sizes, &mut report).await?;
    }
    let mut standalone = Syncs::default();
    if figures.is_none() {
        fsync_probe(root, sizes.fsyncs, &mut standalone)?;
    }
    let probe = figures.as_ref().map_or(&standalone, |f| &f.syncs);
    println!("\n== fsync probe");
    probe.print();
    let (datasync, fsync) = (median(&probe.data), median(&probe.full));
    let syncs = format!(
        "4 KiB write + fdatasync {}, + fsync {}",
        fmt_secs(datasync),
        fmt_secs(fsync)
    );
    match &figures {
        Some(figures) => report.absolute(
            "5. one sync (medians, in the rounds of 1–2) next to 1 and 2",
            format!(
                "{syncs}; per sequential commit: ours {}, raw {}",
                fmt_secs(figures.ours_commit),
                fmt_secs(figures.raw_commit)
            ),
            format!(
                "group commit: {} per event = {:.0} events in one fsync's time",
                fmt_secs(figures.group_event),
                fsync / figures.group_event
            ),
            "—",
            true,
        ),
        None => report.absolute("5. one sync (medians)", syncs, "—".to_owned(), "—", true),
    }
    report.print(
        &format!(
            "Results (SQLite {}, {} mode, medians of {} alternating rounds, {} for the replay; ratio > 1: ours faster; load average at the end {})",
            rusqlite::version(),
            sizes.mode,
            sizes.rounds,
            sizes.replay_rounds,
            load_average()
        ),
        "raw rusqlite baseline",
    );
    Ok(())
}

/// Where the databases go: `AETHER_BENCH_DIR`, else Cargo's target tmp directory.
fn bench_root() -> PathBuf {
    let base = std::env::var_os("AETHER_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    base.join(format!("sqlite_store-{}", std::process::id()))
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let sizes = Sizes::from_env(bench_mode);
    let root = bench_root();
    std::fs::create_dir_all(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = runtime.block_on(run(&root, sizes, filters));
    drop(runtime);
    let _ = std::fs::remove_dir_all(&root);
    println!("\ntotal time {}", fmt_secs(started.elapsed().as_secs_f64()));
    result
}
