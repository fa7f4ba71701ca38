//! [`SqliteDatabase`]: one data directory — its lock, its database file, the writer
//! connection that commits saves in groups (led by whichever caller finds it free), and the
//! pool of reader connections.

pub(crate) mod read;
mod write;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aether_core::{Namespace, StoreError};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::{OpenError, SqliteConfig, SqliteEventStore, schema};

pub(crate) use write::Op;

/// The database file's name in a data directory.
pub const DATABASE_FILE: &str = "aether.sqlite3";
/// Most groups one caller commits for others before a blocking thread takes over.
const LEAD_GROUPS: usize = 8;

/// The lock file's name in a data directory: held (an advisory lock) while it is open.
pub const LOCK_FILE: &str = "aether.lock";
/// How often `open` tries a held lock again, within `SqliteConfig::lock_wait`.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// An open data directory: the database of every namespace kept there.
///
/// One process opens a data directory once (a second open, here or in another process, fails
/// with [`OpenError::Locked`]); [`store`](Self::store) gives the [`SqliteEventStore`] of each
/// namespace. Cloning is cheap; the directory is closed (and its lock released) when the last
/// clone and the last store are dropped.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, Namespace};
/// use aether_sqlite::{SqliteConfig, SqliteDatabase};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("aether-doc-{}", std::process::id()));
/// let database = SqliteDatabase::open(&dir, SqliteConfig::default())?;
/// let bank = database.store(Namespace::new("bank")?)?;
/// let account = ActorId::new("acct-1")?;
/// bank.save_event(Event::new(account.clone(), "Opened", 1)).await?;
/// assert_eq!(bank.latest_version(&account).await?, 1);
/// // Another namespace in the same directory sees nothing of it.
/// let shop = database.store(Namespace::new("shop")?)?;
/// assert_eq!(shop.latest_version(&account).await?, 0);
/// # drop((bank, shop, database));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteDatabase {
    pub(crate) inner: Arc<Db>,
}

pub(crate) struct Db {
    pub(crate) dir: PathBuf,
    pub(crate) file: PathBuf,
    pub(crate) config: SqliteConfig,
    counts: Counts,
    /// The connection that writes, held by the caller leading a group commit.
    writer: Mutex<Connection>,
    /// Writes waiting for a leader.
    queue: Mutex<VecDeque<Op>>,
    readers: Mutex<Vec<Connection>>,
    /// Held for as long as the directory is open; released when dropped.
    _lock: File,
}

impl std::fmt::Debug for SqliteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDatabase")
            .field("file", &self.inner.file)
            .field("durability", &self.inner.config.durability)
            .finish_non_exhaustive()
    }
}

impl SqliteDatabase {
    /// Opens the data directory `dir` (created if missing): takes its lock, opens or creates
    /// its database and checks it.
    ///
    /// # Errors
    ///
    /// [`OpenError::Locked`] if the directory is open elsewhere (after waiting up to
    /// [`SqliteConfig::lock_wait`]; this call blocks meanwhile); [`OpenError::Corrupt`] for a
    /// damaged or foreign database file; [`OpenError::NewerSchema`]; [`OpenError::Io`] and
    /// [`OpenError::Sqlite`] otherwise.
    pub fn open(dir: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_owned();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let waited = std::time::Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                // Held elsewhere, or for a moment by a child process being started (see
                // `SqliteConfig::lock_wait`).
                Err(std::fs::TryLockError::WouldBlock) if waited.elapsed() < config.lock_wait => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(OpenError::Locked { path: dir });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
            }
        }
        let file = dir.join(DATABASE_FILE);
        schema::check_header(&file)?;
        let conn = schema::connect(&file, &config)?;
        schema::prepare(&conn, &file, config.check_on_open)?;
        Ok(Self {
            inner: Arc::new(Db {
                dir,
                file,
                config,
                counts: Counts::default(),
                writer: Mutex::new(conn),
                queue: Mutex::new(VecDeque::new()),
                readers: Mutex::new(Vec::new()),
                _lock: lock,
            }),
        })
    }

    /// The store of `namespace` in this directory (registered on first use).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database cannot be written.
    pub fn store(&self, namespace: Namespace) -> Result<SqliteEventStore, StoreError> {
        let id = self.inner.with_reader(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO namespaces (name) VALUES (?1)",
                [namespace.as_str()],
            )
            .map_err(|e| backend("register the namespace", e))?;
            conn.query_row(
                "SELECT id FROM namespaces WHERE name = ?1",
                [namespace.as_str()],
                |row| row.get::<_, i64>(0),
            )
            .map_err(|e| backend("read the namespace's id", e))
        })?;
        Ok(SqliteEventStore::new(self.inner.clone(), namespace, id))
    }

    /// The namespaces stored in this directory, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database cannot be read.
    pub fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.inner.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT name FROM namespaces ORDER BY name")
                .map_err(|e| backend("list the namespaces", e))?;
            let rows = statement
                .query_map([], |row| row.get(0))
                .map_err(|e| backend("list the namespaces", e))?;
            rows.collect::<Result<Vec<String>, _>>()
                .map_err(|e| backend("list the namespaces", e))
        })
    }

    /// What the writer has done since the directory was opened.
    pub fn stats(&self) -> SqliteStats {
        let counts = &self.inner.counts;
        SqliteStats {
            writes: counts.writes.load(Ordering::Relaxed),
            commits: counts.commits.load(Ordering::Relaxed),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The database file (`<dir>/aether.sqlite3`), for the `sqlite3` tool.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }
}

/// What a data directory's writer has done since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SqliteStats {
    /// Writes applied (saves, snapshots, fences), whatever their outcome.
    pub writes: u64,
    /// Transactions committed: fewer than `writes` when concurrent writes shared a commit
    /// (group commit).
    pub commits: u64,
}

/// The writer's counters, shared with [`SqliteDatabase::stats`].
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) writes: AtomicU64,
    pub(crate) commits: AtomicU64,
}

impl Db {
    /// Queues `op` and waits for its answer. Whoever finds the writer free leads: it commits
    /// what is queued, in groups, until the queue is empty (its own write among them); the
    /// others wait for their answers. So saves arriving while a commit syncs share the next
    /// one, and a caller saving alone commits on its own thread, with no hand-off.
    pub(crate) async fn write<T>(
        self: &Arc<Self>,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(op(reply));
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            // Only a leader blocks (on the commit's sync): its worker's other tasks move on.
            if let Some(writer) = self.try_writer() {
                tokio::task::block_in_place(|| self.lead(writer));
            }
        } else {
            let db = self.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(writer) = db.try_writer() {
                    db.lead(writer);
                }
            })
            .await
            .map_err(|e| backend("run a write", e))?;
        }
        answer.await.map_err(|_| StoreError::Backend {
            message: format!(
                "the write to {} was dropped unanswered",
                self.file.display()
            ),
            source: None,
        })?
    }

    fn try_writer(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Commits the queued writes, a group at a time, until none is left; then lets go of the
    /// writer and looks again (a write queued by a caller that found the writer taken just
    /// before it was let go is then led from here, or by whoever took it since). A caller
    /// leads at most [`LEAD_GROUPS`] groups, so that under a steady stream of writes its own
    /// task is not held back for long: a blocking thread leads on from there.
    fn lead<'a>(self: &'a Arc<Self>, mut writer: std::sync::MutexGuard<'a, Connection>) {
        let max_group = self.config.max_group.max(1);
        let mut groups = 0;
        loop {
            loop {
                let group: Vec<Op> = {
                    let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    let n = queue.len().min(max_group);
                    queue.drain(..n).collect()
                };
                if group.is_empty() {
                    break;
                }
                write::commit_group(&writer, group, &self.counts);
                groups += 1;
                if groups == LEAD_GROUPS {
                    drop(writer);
                    let db = self.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(writer) = db.try_writer() {
                            db.lead(writer);
                        }
                    });
                    return;
                }
            }
            drop(writer);
            let waiting = !self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            match self.try_writer() {
                Some(next) if waiting => writer = next,
                _ => return,
            }
        }
    }

    /// Runs `read` on a reader connection, on this thread.
    pub(crate) fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::connect(&self.file, &self.config)
                .map_err(|e| backend("open a reader connection", e))?,
        };
        let result = read(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < self.config.readers.max(1) {
            readers.push(conn);
        }
        result
    }

    /// Runs `read` on a reader connection on tokio's blocking threads.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // On a multi-threaded runtime the read runs on this thread, its worker's other tasks
        // handed to another: the events it decodes are then allocated on the thread that
        // uses and frees them (a replay decoded on a blocking thread and freed here cost a
        // tenth more). A current-thread runtime cannot do that: a blocking thread reads.
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return tokio::task::block_in_place(|| self.with_reader(read));
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with_reader(read))
            .await
            .map_err(|e| backend("run a read", e))?
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // The connections close before the lock file is released (fields drop in order after
        // this, `_lock` last).
        self.readers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A store error for a failed SQLite call (`what` was being done); a full database says so.
pub(crate) fn backend(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        message: format!("{what}: {error}"),
        source: None,
    }
}

/// A store error for a failed SQLite call, naming a full database as such.
pub(crate) fn sqlite_error(what: &str, error: &rusqlite::Error) -> StoreError {
    if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return StoreError::Backend {
            message: format!(
                "{what}: the database is full (its size limit or the disk); nothing was written"
            ),
            source: None,
        };
    }
    backend(what, error)
}

/// The id of `actor_id` in namespace `ns`, if it was ever written.
pub(crate) fn actor_key(
    conn: &Connection,
    ns: i64,
    actor_id: &str,
) -> Result<Option<(i64, u64, u64)>, StoreError> {
    conn.prepare_cached(
        "SELECT id, version, epoch FROM actors WHERE namespace = ?1 AND actor_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(rusqlite::params![ns, actor_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
    })
    .map_err(|e| sqlite_error("read the actor's head", &e))
}
