//! [`SqliteDatabase`]: one data directory — its lock, its database file, the writer thread
//! that commits saves in groups, and the pool of reader connections.

pub(crate) mod read;
mod write;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use aether_core::{Namespace, StoreError};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::{OpenError, SqliteConfig, SqliteEventStore, schema};

pub(crate) use write::Op;

/// The database file's name in a data directory.
pub const DATABASE_FILE: &str = "aether.sqlite3";
/// The lock file's name in a data directory: held (an advisory lock) while it is open.
pub const LOCK_FILE: &str = "aether.lock";

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
    pub(crate) metrics: aether_core::StoreMetrics,
    counts: Arc<Counts>,
    writer: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
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
    /// its database, checks it, and starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`OpenError::Locked`] if the directory is open elsewhere; [`OpenError::Corrupt`] for a
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
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked { path: dir });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let file = dir.join(DATABASE_FILE);
        schema::check_header(&file)?;
        let conn = schema::connect(&file, &config)?;
        schema::prepare(&conn, &file, config.check_on_open)?;
        let (writer, ops) = mpsc::channel(config.max_group.max(1) * 4);
        let max_group = config.max_group.max(1);
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        let thread = std::thread::Builder::new()
            .name("aether-sqlite-writer".to_owned())
            .spawn(move || write::run(conn, ops, max_group, &thread_counts))
            .map_err(io(&file))?;
        Ok(Self {
            inner: Arc::new(Db {
                dir,
                file,
                config,
                metrics: aether_core::StoreMetrics::new("sqlite"),
                counts,
                writer: Some(writer),
                thread: Some(thread),
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
    /// Sends `op` to the writer thread and waits for its answer.
    pub(crate) async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Backend {
            message: format!("the writer of {} has stopped", self.file.display()),
            source: None,
        };
        let writer = self.writer.as_ref().ok_or_else(closed)?;
        writer.send(op(reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
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
        // Closing the channel ends the writer thread once it has answered what it holds;
        // joining it closes its connection before the lock file is released.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
