//! Faults against the SQLite store on real files: a writer process killed mid-write (again
//! and again on one directory), a power loss (writes not yet synced dropped, by a VFS shim),
//! damaged and foreign database files, two openers of one directory, and a full database.
//!
//! The child processes are this test binary run again (`--exact <child test>`) with
//! [`CHILD`] naming what the child does; in a normal run the child tests return at once.

#[path = "support/power_loss.rs"]
mod power_loss;
#[path = "support/workload.rs"]
mod workload;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

use aether_core::{
    ActorId, Event, EventFeed, EventStore, FeedPosition, Namespace, SaveOutcome, SnapshotStore,
    StoreError,
};
use aether_sqlite::{
    DATABASE_FILE, Durability, OpenError, SqliteConfig, SqliteDatabase, SqliteEventStore,
};
use workload::{ACTORS, Ack, Acked, Rng};

/// The environment variable that makes this binary a child: what it does.
const CHILD: &str = "AETHER_FAULTS_CHILD";
/// The child's data directory.
const CHILD_DIR: &str = "AETHER_FAULTS_DIR";

/// Where this binary's data directories go; emptied once per run (not by a child).
fn root() -> PathBuf {
    static CLEAN: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-faults");
    CLEAN.call_once(|| {
        if std::env::var_os(CHILD).is_none() {
            let _ = std::fs::remove_dir_all(&root);
        }
    });
    root
}

fn fresh_dir(name: &str) -> PathBuf {
    root().join(format!("{name}-{}", uuid::Uuid::now_v7().simple()))
}

fn namespace() -> Namespace {
    Namespace::new("faults").expect("valid namespace")
}

/// The data directory if this process is a child doing `mode`.
fn child_dir(mode: &str) -> Option<PathBuf> {
    if std::env::var(CHILD).ok()? != mode {
        return None;
    }
    Some(PathBuf::from(std::env::var_os(CHILD_DIR)?))
}

/// Runs this binary's test `test` as a child doing `mode` in `dir`, its stdout piped.
fn spawn_child(test: &str, mode: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env(CHILD_DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child")
}

// ---------------------------------------------------------------------------------------------
// 1. Crash safety: SIGKILL mid-write, again and again on one directory.
// ---------------------------------------------------------------------------------------------

/// Kills of the writer, each followed by a reopen and a full check.
const KILLS: usize = 24;

/// The child: writes batches of [`ACTORS`] actors concurrently (their saves share commits),
/// with [`Durability::Full`](aether_sqlite::Durability::Full), acknowledging each save on a
/// stdout line of its own before its actor's next save — until it is killed.
#[test]
fn child_writer() {
    let Some(dir) = child_dir("writer") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteEventStore::open(&dir, namespace(), SqliteConfig::default())
            .expect("the child opens the directory");
        // The harness wrote "test child_writer ... " without a newline: end that line, so
        // that every acknowledgement starts a line of its own.
        let mut out = std::io::stdout().lock();
        out.write_all(b"\n")
            .and_then(|()| out.flush())
            .expect("write");
        drop(out);
        let seed = Rng::seed();
        let writers: Vec<_> = (0..ACTORS)
            .map(|actor| {
                tokio::spawn(workload::write_forever(
                    store.clone(),
                    actor,
                    seed.wrapping_add(actor as u64 * 7919),
                    workload::print_ack,
                ))
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer failed");
        }
    });
}

/// Every iteration starts a writer on the same directory, waits until it has acknowledged a
/// save (so it is in its write loop), lets it go on for a random while and SIGKILLs it, reads
/// every acknowledgement it wrote before dying, reopens the directory (its lock must have died
/// with the process) and checks it against all acknowledgements so far ([`workload::check`]):
/// each acknowledged event present exactly once at its version, no batch partly stored.
///
/// If the writer answered a save before its COMMIT, a kill between the two loses an
/// acknowledged batch: `check` fails on "acknowledged batches not stored" (it did, 3 runs out of
/// 3, with the answers moved before the COMMIT). If a batch's events were committed
/// separately, a kill between them fails "… partly stored".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_loses_no_acknowledged_save_and_stores_no_partial_batch() {
    let dir = fresh_dir("crash");
    let mut rng = Rng::new(Rng::seed());
    let mut acked = Acked::default();
    let (mut checked, mut ahead) = (0, 0);
    for iteration in 0..KILLS {
        let mut child = spawn_child("child_writer", "writer", &dir);
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // The child's first acknowledgement: it is writing. Its start-up (exec, open, check)
        // takes well under a second; the bound only keeps a broken child from hanging the run.
        loop {
            let line = received
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| {
                    panic!("iteration {iteration}: the child acknowledged nothing: {e}")
                });
            if let Some(ack) = parse_ack(&line) {
                acked.add(ack);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "iteration {iteration}: the child ended by itself ({status}) before it was killed"
        );
        reader.join().expect("the reader thread");
        // Every line the child wrote before it died is in the pipe: all are acknowledgements.
        for line in received.try_iter() {
            if let Some(ack) = parse_ack(&line) {
                acked.add(ack);
            }
        }
        let store = SqliteEventStore::open(&dir, namespace(), SqliteConfig::default())
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopen after SIGKILL: {e}"));
        checked += workload::check(&store, &acked).await;
        for actor in 0..ACTORS {
            let stored = store
                .latest_version(&workload::actor(actor))
                .await
                .expect("head");
            if stored > acked.head(actor) {
                ahead += 1;
            }
        }
        drop(store);
    }
    println!(
        "crash: {KILLS} SIGKILLs, {} acknowledged saves, {checked} events checked over all \
         reopens ({ahead} times an actor had committed saves not yet acknowledged when killed)",
        acked.count
    );
}

/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;

/// An acknowledgement line, or `None` for the test harness's own lines; a line that starts
/// like an acknowledgement but is not one is a broken child.
fn parse_ack(line: &str) -> Option<Ack> {
    if !line.starts_with("ack ") {
        return None;
    }
    Some(Ack::parse(line).unwrap_or_else(|| panic!("a malformed acknowledgement: {line:?}")))
}

// ---------------------------------------------------------------------------------------------
// 2. Power loss: only what was synced survives.
// ---------------------------------------------------------------------------------------------

/// What a run of power cuts saw.
#[derive(Debug, Default)]
struct PowerCuts {
    cuts: usize,
    /// Acknowledged saves checked, over all cuts.
    acks: usize,
    /// Events checked, over all cuts.
    events: usize,
    /// Acknowledged batches an image did not hold, over all cuts.
    missing: usize,
    /// Syncs of the database's files that covered writes.
    syncs: u64,
}

/// Writes with [`ACTORS`] concurrent writers into a directory whose files go through the
/// [`power_loss`] shim, and `cuts` times — each after a new acknowledgement and a random
/// while — takes what a power loss would leave (`keep_unsynced`: none of the writes not yet
/// synced, or on every other cut a random subset of them), opens it as a data directory of its
/// own and checks it against the saves acknowledged before the cut ([`workload::check_stored`]:
/// every stored batch whole, versions contiguous, the feed once each; `missing` counts the
/// acknowledged batches it lacks).
async fn power_cuts(durability: Durability, cuts: usize, keep_unsynced: bool) -> PowerCuts {
    power_loss::install();
    let dir = fresh_dir("power");
    std::fs::create_dir_all(&dir).expect("create the directory");
    let dir = power_loss::track(&dir);
    let config = SqliteConfig {
        durability,
        ..SqliteConfig::default()
    };
    let store = SqliteEventStore::open(&dir, namespace(), config).expect("open");
    // Creating the database syncs its files already (its schema): only syncs after the
    // first acknowledged save can hold events.
    let created = power_loss::syncs(&dir);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let seed = Rng::seed();
    let writers: Vec<_> = (0..ACTORS)
        .map(|actor| {
            let acked = acked.clone();
            tokio::spawn(workload::write_forever(
                store.clone(),
                actor,
                seed.wrapping_add(actor as u64 * 7919),
                move |ack| {
                    acked
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .add(ack)
                },
            ))
        })
        .collect();
    // Cut only once the files were synced twice after the first acknowledged save (a Relaxed
    // database syncs only when it copies its log into the database file: the log, then the
    // file), so that the images hold events. The bound only keeps a broken run from hanging:
    // a checkpoint comes every ~4 MB of log.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap_or_else(PoisonError::into_inner).count == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no save was acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first_ack = power_loss::syncs(&dir).max(created);
    while power_loss::syncs(&dir) < first_ack + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database files were never synced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut rng = Rng::new(seed ^ 0x00C0_FFEE);
    let mut seen = PowerCuts::default();
    let mut last_count = 0;
    for cut in 0..cuts {
        // At least one new acknowledgement since the last cut, then a random while.
        while acked.lock().unwrap_or_else(PoisonError::into_inner).count == last_count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        // Read before the image is taken: each of these saves was acknowledged before the cut.
        let before = acked.lock().unwrap_or_else(PoisonError::into_inner).clone();
        last_count = before.count;
        let mut keep = Rng::new(rng.next());
        let torn = keep_unsynced && cut % 2 == 1;
        let files = power_loss::image(&dir, || torn && keep.below(2) == 0);
        let copy = fresh_dir("power-image");
        std::fs::create_dir_all(&copy).expect("create the image's directory");
        for (name, bytes) in &files {
            std::fs::write(copy.join(name), bytes).expect("write the image");
        }
        let reopened = SqliteEventStore::open(&copy, namespace(), SqliteConfig::default())
            .unwrap_or_else(|e| panic!("cut {cut}: what the power loss left does not open: {e}"));
        let checked = workload::check_stored(&reopened, &before).await;
        if durability == Durability::Full {
            assert!(
                checked.missing.is_empty(),
                "cut {cut}{}: acknowledged saves lost: {:?}",
                if torn {
                    " (some unsynced writes kept)"
                } else {
                    ""
                },
                checked.missing
            );
        }
        seen.cuts += 1;
        seen.acks += before.count;
        seen.events += checked.events;
        seen.missing += checked.missing.len();
        drop(reopened);
        let _ = std::fs::remove_dir_all(&copy);
    }
    for writer in writers {
        writer.abort();
    }
    seen.syncs = power_loss::syncs(&dir);
    seen
}

/// With [`Durability::Full`], a power loss at any instant keeps every acknowledged save: the
/// sync of its commit came before its acknowledgement. If the writer answered before the sync
/// (or before COMMIT), a cut between the answer and the sync loses that save: the assertion
/// "cut …: acknowledged saves lost" fails. It did, 3 runs out of 3, with `synchronous = NORMAL`
/// in place of FULL for `Durability::Full` (while the SIGKILL test passed: a crash keeps the
/// page cache) and with the answers moved before the COMMIT; the Relaxed run below shows it
/// on every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_keeps_every_acknowledged_save_with_full_durability() {
    let seen = power_cuts(Durability::Full, 10, true).await;
    assert_eq!(seen.missing, 0);
    println!(
        "power loss (Full): {} cuts, {} acknowledged saves and {} events checked over all cuts, \
         {} syncs",
        seen.cuts, seen.acks, seen.events, seen.syncs
    );
}

/// The same cuts with [`Durability::Relaxed`] (commits not synced): every image still opens
/// and holds whole batches only, and some acknowledged saves are lost — which shows that the
/// shim drops what a sync did not cover, so that the Full run above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_may_lose_relaxed_saves_but_never_corrupts() {
    let seen = power_cuts(Durability::Relaxed, 6, false).await;
    assert!(
        seen.missing > 0,
        "no acknowledged save was lost without syncs: the power loss shim drops nothing ({seen:?})"
    );
    assert!(
        seen.events > 0,
        "the images held no event to check ({seen:?})"
    );
    println!(
        "power loss (Relaxed): {} cuts, {} acknowledged saves checked, {} of them lost, {} \
         events checked",
        seen.cuts, seen.acks, seen.missing, seen.events
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Damaged and foreign database files: a typed error on open, nothing changed.
// ---------------------------------------------------------------------------------------------

/// A closed data directory with a database of a few hundred KiB (WAL checkpointed into it).
fn written_directory(name: &str) -> PathBuf {
    let dir = fresh_dir(name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteEventStore::open(&dir, namespace(), SqliteConfig::default())
            .expect("open a fresh directory");
        for actor in 0..ACTORS {
            for version in (1..=40).step_by(5) {
                store
                    .save_events(workload::batch(actor, version - 1, 5))
                    .await
                    .expect("save");
            }
        }
    });
    // Closed: the last connection checkpointed the log into the file and removed it.
    let file = dir.join(DATABASE_FILE);
    assert!(
        !dir.join(format!("{DATABASE_FILE}-wal")).exists(),
        "the log outlived the close"
    );
    assert!(std::fs::metadata(&file).expect("the database file").len() > 64 * 4096);
    dir
}

/// Opens `dir` (twice: a failed open must not keep the lock) expecting an error, and checks
/// that the database file was not changed.
fn open_fails(dir: &Path) -> OpenError {
    let file = dir.join(DATABASE_FILE);
    let before = std::fs::read(&file).expect("read the file");
    let first = SqliteEventStore::open(dir, namespace(), SqliteConfig::default())
        .expect_err("opening a damaged database must fail");
    let second = SqliteEventStore::open(dir, namespace(), SqliteConfig::default())
        .expect_err("opening a damaged database must fail again");
    assert_eq!(
        std::mem::discriminant(&first),
        std::mem::discriminant(&second),
        "a second open failed otherwise ({second}): the first kept the lock?"
    );
    assert!(
        std::fs::read(&file).expect("read the file") == before,
        "a failed open changed the file"
    );
    first
}

fn assert_corrupt(what: &str, error: OpenError, file: &Path) {
    match &error {
        OpenError::Corrupt { path, .. } => assert_eq!(path, file, "{what}"),
        other => panic!("{what}: expected OpenError::Corrupt, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("is damaged or not an Aether database"),
        "{what}: {message}"
    );
    println!("{what}: {message}");
}

/// A change to a file's bytes.
type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;

fn rewrite(file: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(file).expect("read the file");
    edit(&mut bytes);
    std::fs::write(file, bytes).expect("write the file");
}

#[test]
fn a_truncated_database_is_a_typed_error_on_open() {
    let pristine = written_directory("truncated");
    let len = std::fs::metadata(pristine.join(DATABASE_FILE))
        .unwrap()
        .len() as usize;
    // At a page boundary (pages missing), inside a page, and inside the header.
    for cut in [len / 2 / 4096 * 4096, len / 2 + 1234, 4096 + 17, 60] {
        let dir = fresh_dir("truncated-copy");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(DATABASE_FILE);
        std::fs::copy(pristine.join(DATABASE_FILE), &file).unwrap();
        rewrite(&file, |bytes| bytes.truncate(cut));
        assert_corrupt(
            &format!("truncated to {cut} of {len} bytes"),
            open_fails(&dir),
            &file,
        );
    }
}

#[test]
fn a_corrupted_database_is_a_typed_error_on_open() {
    let pristine = written_directory("corrupted");
    let len = std::fs::metadata(pristine.join(DATABASE_FILE))
        .unwrap()
        .len() as usize;
    let mut rng = Rng::new(Rng::seed());
    let mut garbage = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next() as u8).collect() };
    let header_magic = garbage(16);
    let middle_page = garbage(4096);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "header: the magic string overwritten",
            Box::new(move |b: &mut Vec<u8>| b[..16].copy_from_slice(&header_magic)),
        ),
        (
            "header: an impossible page size",
            Box::new(|b: &mut Vec<u8>| b[16..18].copy_from_slice(&[0x00, 0x03])),
        ),
        (
            "a middle page overwritten with garbage",
            Box::new(move |b: &mut Vec<u8>| {
                let page = len / 4096 / 2;
                b[page * 4096..(page + 1) * 4096].copy_from_slice(&middle_page);
            }),
        ),
        (
            "the schema page overwritten with zeros after its header",
            Box::new(|b: &mut Vec<u8>| b[100..4096].fill(0)),
        ),
    ];
    for (what, edit) in cases {
        let dir = fresh_dir("corrupted-copy");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(DATABASE_FILE);
        std::fs::copy(pristine.join(DATABASE_FILE), &file).unwrap();
        rewrite(&file, edit);
        assert_corrupt(what, open_fails(&dir), &file);
    }
}

#[test]
fn garbage_in_place_of_the_database_is_a_typed_error_on_open() {
    let mut rng = Rng::new(Rng::seed());
    for len in [1, 100, 4096, 65_536] {
        let dir = fresh_dir("garbage");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(DATABASE_FILE);
        std::fs::write(
            &file,
            (0..len).map(|_| rng.next() as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_corrupt(&format!("{len} bytes of garbage"), open_fails(&dir), &file);
    }
    // Text: what a user might have put there by mistake.
    let dir = fresh_dir("garbage-text");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(DATABASE_FILE);
    std::fs::write(&file, "actor,version\nacct-1,1\n".repeat(300)).unwrap();
    assert_corrupt("a CSV file", open_fails(&dir), &file);
}

#[test]
fn a_database_of_a_newer_schema_is_refused_on_open() {
    let dir = written_directory("newer");
    let file = dir.join(DATABASE_FILE);
    let raw = rusqlite::Connection::open(&file).expect("open with rusqlite");
    raw.pragma_update(None, "user_version", 7)
        .expect("set user_version");
    drop(raw);
    match open_fails(&dir) {
        error @ OpenError::NewerSchema {
            found: 7,
            supported: 1,
            ..
        } => {
            let message = error.to_string();
            assert!(
                message.contains("newer than this build's 1; upgrade Aether"),
                "{message}"
            );
        }
        other => panic!("expected OpenError::NewerSchema, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Two openers of one data directory.
// ---------------------------------------------------------------------------------------------

/// The child: tries to open the directory and says what happened.
#[test]
fn child_lock_probe() {
    let Some(dir) = child_dir("lock-probe") else {
        return;
    };
    match SqliteDatabase::open(&dir, SqliteConfig::default()) {
        Ok(_) => println!("probe: opened"),
        Err(e @ OpenError::Locked { .. }) => println!("probe: locked: {e}"),
        Err(e) => println!("probe: failed: {e:?}"),
    }
}

/// What the lock probe child said.
fn probe(dir: &Path) -> String {
    let child = spawn_child("child_lock_probe", "lock-probe", dir);
    let output = child.wait_with_output().expect("run the probe");
    assert!(
        output.status.success(),
        "the probe failed: {}",
        output.status
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .find_map(|l| l.split_once("probe: ").map(|(_, answer)| answer.to_owned()))
        .expect("the probe's answer")
}

#[test]
fn a_second_process_cannot_open_an_open_directory() {
    let dir = fresh_dir("lock-process");
    let database = SqliteDatabase::open(&dir, SqliteConfig::default()).expect("open");
    let answer = probe(&dir);
    assert!(
        answer.starts_with("locked: "),
        "the second process: {answer}"
    );
    assert!(answer.contains("is in use by another process"), "{answer}");
    assert!(
        answer.contains(&dir.display().to_string()),
        "names the directory: {answer}"
    );
    drop(database);
    assert_eq!(
        probe(&dir),
        "opened",
        "after the first process closed the directory"
    );
}

#[test]
fn a_second_open_in_one_process_is_refused_until_the_first_is_dropped() {
    let dir = fresh_dir("lock-in-process");
    let first = SqliteDatabase::open(&dir, SqliteConfig::default()).expect("open");
    match SqliteDatabase::open(&dir, SqliteConfig::default()) {
        Err(error @ OpenError::Locked { .. }) => {
            let OpenError::Locked { path } = &error else {
                unreachable!()
            };
            assert_eq!(path, &dir);
            assert!(
                error.to_string().contains("is in use by another process"),
                "{error}"
            );
        }
        other => panic!("a second open: expected OpenError::Locked, got {other:?}"),
    }
    // A store of the first keeps the directory open after the database handle is dropped.
    let store = first.store(namespace()).expect("store");
    drop(first);
    assert!(
        matches!(
            SqliteEventStore::open(&dir, namespace(), SqliteConfig::default()),
            Err(OpenError::Locked { .. })
        ),
        "open while a store of the first is alive"
    );
    drop(store);
    let again = SqliteDatabase::open(&dir, SqliteConfig::default())
        .expect("open after the first was dropped");
    drop(again);
}

// ---------------------------------------------------------------------------------------------
// 5. A full database.
// ---------------------------------------------------------------------------------------------

/// Pages the full database may have (4 KiB each).
const MAX_PAGES: u64 = 256;

fn padded(actor: &ActorId, version: u64, bytes: usize) -> Event {
    let mut data = serde_json::Map::new();
    data.insert("pad".into(), "x".repeat(bytes).into());
    Event::builder(actor.clone(), "Padded")
        .version(version)
        .data_object(data)
        .build()
}

/// The database's size in pages as a reader sees it (committed state, log included).
fn page_count(file: &Path) -> u64 {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open a reader");
    conn.query_row("PRAGMA page_count", [], |row| row.get(0))
        .expect("page_count")
}

async fn feed_len(store: &SqliteEventStore) -> usize {
    let page = store
        .read_feed(
            FeedPosition::START,
            std::num::NonZeroUsize::new(100_000).unwrap(),
        )
        .await
        .expect("read the feed");
    page.events.len()
}

/// Fills a database capped at [`MAX_PAGES`] until fewer than 40 pages are free, then, several
/// times, saves a batch that needs ~100 pages together with small saves of other actors (so
/// they often share its commit): the batch fails with a typed error saying the database is
/// full and stores none of its events; every small save succeeds and is stored; the feed grows
/// by exactly the small saves; reads go on; and a save that fits still works afterwards.
///
/// If the writer let a failed batch's first events stand, "stored part of a failed batch"
/// fails; if the failed save rolled back the saves sharing its commit while they were
/// acknowledged, "a small save … is not stored" fails; if it failed them, "a small save that
/// fits failed" does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_fails_the_save_that_does_not_fit_and_nothing_else() {
    let dir = fresh_dir("full");
    let config = SqliteConfig {
        max_pages: Some(MAX_PAGES),
        ..SqliteConfig::default()
    };
    let store = SqliteEventStore::open(&dir, namespace(), config).expect("open");
    let file = store.file().to_owned();
    let filler = ActorId::new("filler").unwrap();
    let mut version = 0;
    while page_count(&file) < MAX_PAGES - 40 {
        let batch = vec![
            padded(&filler, version + 1, 6_000),
            padded(&filler, version + 2, 6_000),
        ];
        store.save_events(batch).await.expect("a save that fits");
        version += 2;
    }
    let filled = store.load(&filler).await.expect("load");
    let mut feed = feed_len(&store).await;
    for round in 0..8 {
        let big = ActorId::new(format!("big-{round}")).unwrap();
        let big_batch: Vec<_> = (1..=40).map(|v| padded(&big, v, 10_000)).collect();
        let smalls: Vec<_> = (0..5)
            .map(|i| ActorId::new(format!("small-{round}-{i}")).unwrap())
            .collect();
        let (big_outcome, small_outcomes) = tokio::join!(
            store.save_events(big_batch),
            futures::future::join_all(smalls.iter().map(|a| store.save_event(padded(a, 1, 50))))
        );
        match big_outcome {
            Err(StoreError::Backend { message, .. }) => {
                assert!(
                    message.contains("the database is full"),
                    "round {round}: {message}"
                );
                if round == 0 {
                    println!("full: {message}");
                }
            }
            other => panic!("round {round}: a batch that does not fit answered {other:?}"),
        }
        assert_eq!(
            store.latest_version(&big).await.expect("head"),
            0,
            "round {round}: head moved"
        );
        let replay = store.events_with_errors(&big, 1).await.expect("replay");
        assert!(
            replay.events.is_empty() && replay.errors.is_empty(),
            "round {round}: stored part of a failed batch: {} events",
            replay.events.len()
        );
        for (actor, outcome) in smalls.iter().zip(small_outcomes) {
            assert!(
                matches!(outcome, Ok(SaveOutcome::Saved)),
                "round {round}: a small save that fits failed: {outcome:?}"
            );
            assert_eq!(
                store.latest_version(actor).await.expect("head"),
                1,
                "round {round}: a small save acknowledged with the failed batch is not stored"
            );
        }
        feed += smalls.len();
        assert_eq!(feed_len(&store).await, feed, "round {round}: the feed");
    }
    assert_eq!(
        store.load(&filler).await.expect("load"),
        filled,
        "the filler's events"
    );
    let after = ActorId::new("after").unwrap();
    assert_eq!(
        store
            .save_event(padded(&after, 1, 1_000))
            .await
            .expect("a save that fits"),
        SaveOutcome::Saved
    );
    assert!(page_count(&file) <= MAX_PAGES);
}
