//! The data directory's lock while this process starts child processes: a child between its
//! fork and its exec shares the lock file's description, so it holds the lock of a directory
//! closed meanwhile for a moment. Reopening waits that out (`SqliteConfig::lock_wait`).

// `pre_exec` is unsafe: its closure runs in the child between fork and exec, where only
// async-signal-safe calls are allowed. It only sleeps (`nanosleep` is safe there).
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use aether_sqlite::{OpenError, SqliteConfig, SqliteDatabase};

/// Starts `true` on another thread; the child waits `hold` between its fork and its exec.
fn start_child_that_lingers_before_exec(hold: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut command = std::process::Command::new("true");
        // SAFETY: the closure only sleeps, which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                std::thread::sleep(hold);
                Ok(())
            });
        }
        let status = command.status().expect("`true` runs");
        assert!(status.success());
    })
}

#[test]
fn a_directory_closed_while_a_child_process_starts_reopens() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let database = SqliteDatabase::open(dir.path(), SqliteConfig::default()).expect("opens");
    let child = start_child_that_lingers_before_exec(Duration::from_millis(300));
    // Let the child fork while the directory is open: it then shares the lock.
    std::thread::sleep(Duration::from_millis(100));
    drop(database);
    let reopened = SqliteDatabase::open(dir.path(), SqliteConfig::default());
    child.join().expect("the child's thread");
    assert!(
        reopened.is_ok(),
        "reopening waits for the child's exec: {:?}",
        reopened.err()
    );
}

#[test]
fn a_directory_open_in_this_process_is_refused_after_the_wait() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let _open = SqliteDatabase::open(dir.path(), SqliteConfig::default()).expect("opens");
    let config = SqliteConfig {
        lock_wait: Duration::from_millis(200),
        ..SqliteConfig::default()
    };
    let started = std::time::Instant::now();
    let second = SqliteDatabase::open(dir.path(), config);
    assert!(
        matches!(second, Err(OpenError::Locked { .. })),
        "{second:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited the configured time first: {:?}",
        started.elapsed()
    );
}
