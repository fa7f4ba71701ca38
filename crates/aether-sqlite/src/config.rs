//! [`SqliteConfig`]: durability, input limits and the reader pool of a data directory.

use std::time::Duration;

use aether_core::EventLimits;

/// When an acknowledged save is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is synced to disk before any save in it is acknowledged (SQLite
    /// `synchronous = FULL` in WAL mode): an acknowledged save survives a crash and a power
    /// loss. Concurrent saves share one commit and one sync (group commit).
    #[default]
    Full,
    /// Commits are written to the log without waiting for the disk (`synchronous = NORMAL`):
    /// a power loss (not a process crash) may lose the last acknowledged saves, and never
    /// corrupts the database or stores part of a batch.
    Relaxed,
}

/// How a data directory is opened.
///
/// # Examples
///
/// ```
/// use aether_sqlite::{Durability, SqliteConfig};
///
/// let config = SqliteConfig {
///     durability: Durability::Relaxed,
///     ..SqliteConfig::default()
/// };
/// assert_eq!(config.readers, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// When an acknowledged save is on disk (default [`Durability::Full`]).
    pub durability: Durability,
    /// The input limits every save and snapshot is checked against.
    pub limits: EventLimits,
    /// Connections kept open for reads (at least 1; default 4). Reads never wait for writes
    /// (WAL mode), and run on tokio's blocking threads.
    pub readers: usize,
    /// Most saves that share one commit (default 512).
    pub max_group: usize,
    /// Checks every page of the database when it is opened (`PRAGMA quick_check`), so that a
    /// damaged file is refused at once with [`OpenError::Corrupt`](crate::OpenError::Corrupt)
    /// rather than failing later on the pages it damaged. About a second per GB. Default on.
    pub check_on_open: bool,
    /// The largest size the database may grow to, in pages of 4 KiB (`PRAGMA max_page_count`);
    /// `None` (the default) for SQLite's own limit. A save that would need more fails with a
    /// [`StoreError::Backend`](aether_core::StoreError::Backend) saying the database is full,
    /// and writes nothing.
    pub max_pages: Option<u64>,
    /// How long [`open`](crate::SqliteDatabase::open) waits for the directory's lock before
    /// it fails with [`OpenError::Locked`](crate::OpenError::Locked) (default 1 s). The lock
    /// of a directory just closed can stay held for a moment by a child process that this
    /// process is starting (between its fork and its exec the child shares the lock file's
    /// description); the wait covers that, and a directory open in another process is
    /// still refused once it ends.
    pub lock_wait: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            limits: EventLimits::default(),
            readers: 4,
            max_group: 512,
            check_on_open: true,
            max_pages: None,
            lock_wait: Duration::from_secs(1),
        }
    }
}
