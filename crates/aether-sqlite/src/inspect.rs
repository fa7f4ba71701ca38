//! [`SqliteInspector`]: reading a data directory from outside the process that owns it.
//!
//! An application holds its data directory open (and its lock, [`LOCK_FILE`](crate::LOCK_FILE))
//! for as long as it runs, so a tool cannot open it with [`SqliteDatabase`](crate::SqliteDatabase).
//! The inspector takes no lock and opens the database file **read-only**: SQLite's WAL mode lets
//! readers in other processes see every committed transaction while the application writes, so
//! the same commands work whether the application runs or not, and the tool can never write.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aether_core::{ActorId, ActorSnapshot, Event, Namespace, ReplayResult, StoreError, Version};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::database::{DATABASE_FILE, backend, read, sqlite_error};
use crate::{OpenError, schema};

/// Events, actors and bytes of one namespace in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceStats {
    /// The namespace's name.
    pub name: String,
    /// Stored events.
    pub events: u64,
    /// Actors with at least one event.
    pub actors: u64,
    /// Bytes of the stored records (their JSON bodies).
    pub bytes: u64,
}

/// What the data directory holds about one actor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ActorSummary {
    /// The latest stored version (0: none).
    pub version: Version,
    /// The latest snapshot, if any.
    pub snapshot: Option<ActorSnapshot>,
    /// The event at the latest version, if it decodes.
    pub last_event: Option<Event>,
}

/// A read-only view of a data directory, usable while an application holds it open.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventStore, Namespace};
/// use aether_sqlite::{SqliteConfig, SqliteDatabase, SqliteInspector};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("aether-inspect-doc-{}", std::process::id()));
/// let database = SqliteDatabase::open(&dir, SqliteConfig::default())?;
/// let bank = database.store(Namespace::new("bank")?)?;
/// bank.save_event(Event::new(ActorId::new("acct-1")?, "Opened", 1)).await?;
///
/// // The application still holds the directory; the inspector reads it all the same.
/// let inspector = SqliteInspector::open(&dir)?;
/// let stats = inspector.namespaces()?;
/// assert_eq!((stats[0].name.as_str(), stats[0].events, stats[0].actors), ("bank", 1, 1));
/// # drop((bank, database, inspector));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteInspector {
    file: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteInspector {
    /// Opens the database of data directory `dir` read-only, without its lock.
    ///
    /// # Errors
    ///
    /// [`OpenError::Missing`] if `dir` or its database file does not exist (nothing is
    /// created); [`OpenError::Corrupt`] for a file that is not an Aether database;
    /// [`OpenError::NewerSchema`]; [`OpenError::Sqlite`] otherwise.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        let file = dir.join(DATABASE_FILE);
        if !file.is_file() {
            return Err(OpenError::Missing {
                path: dir.to_owned(),
            });
        }
        schema::check_header(&file)?;
        let sqlite = |source| OpenError::Sqlite {
            path: file.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| OpenError::Corrupt {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        if version > schema::SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: file,
                found: version,
                supported: schema::SCHEMA_VERSION,
            });
        }
        if version == 0 {
            return Err(OpenError::Corrupt {
                path: file,
                reason: "it holds no Aether schema".to_owned(),
            });
        }
        Ok(Self {
            file,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every namespace of the directory, by name, with its counts.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database cannot be read.
    pub fn namespaces(&self) -> Result<Vec<NamespaceStats>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut statement = conn
            .prepare(
                "SELECT n.name, \
                   (SELECT count(*) FROM records r WHERE r.namespace = n.id AND r.version IS NOT NULL), \
                   (SELECT count(*) FROM actors a WHERE a.namespace = n.id AND a.version > 0), \
                   (SELECT coalesce(sum(length(r.body)), 0) FROM records r WHERE r.namespace = n.id) \
                 FROM namespaces n ORDER BY n.name",
            )
            .map_err(|e| sqlite_error("list the namespaces", &e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(NamespaceStats {
                    name: row.get(0)?,
                    events: row.get(1)?,
                    actors: row.get(2)?,
                    bytes: row.get(3)?,
                })
            })
            .map_err(|e| sqlite_error("list the namespaces", &e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sqlite_error("list the namespaces", &e))
    }

    /// The events of `actor_id` in `namespace` from version `from` on, and the records that
    /// do not decode; empty for an unknown namespace or actor.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database cannot be read.
    pub fn events(
        &self,
        namespace: &Namespace,
        actor_id: &ActorId,
        from: Version,
    ) -> Result<ReplayResult, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        match namespace_id(&conn, namespace)? {
            Some(ns) => read::replay(&conn, ns, actor_id, from),
            None => Ok(ReplayResult::default()),
        }
    }

    /// What the directory holds about `actor_id` in `namespace`; `None` if the actor has never
    /// been written there.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database cannot be read or the snapshot does not decode.
    pub fn actor(
        &self,
        namespace: &Namespace,
        actor_id: &ActorId,
    ) -> Result<Option<ActorSummary>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(ns) = namespace_id(&conn, namespace)? else {
            return Ok(None);
        };
        let version = read::latest_version(&conn, ns, actor_id)?;
        let snapshot = read::snapshot(&conn, ns, actor_id)?;
        if version == 0 && snapshot.is_none() {
            return Ok(None);
        }
        let last_event = if version == 0 {
            None
        } else {
            read::replay(&conn, ns, actor_id, version)?
                .events
                .into_iter()
                .next_back()
        };
        Ok(Some(ActorSummary {
            version,
            snapshot,
            last_event,
        }))
    }
}

fn namespace_id(conn: &Connection, namespace: &Namespace) -> Result<Option<i64>, StoreError> {
    conn.query_row(
        "SELECT id FROM namespaces WHERE name = ?1",
        params![namespace.as_str()],
        |row| row.get(0),
    )
    .optional()
    .map_err(|e| backend("read the namespace's id", e))
}
