//! The database's schema, readable with the `sqlite3` tool, and how a connection is opened.
//!
//! ```sql
//! -- One row per namespace; ids are small integers used by the other tables.
//! CREATE TABLE namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
//! -- One row per actor that was ever written or fenced: its head.
//! CREATE TABLE actors (
//!   id        INTEGER PRIMARY KEY,
//!   namespace INTEGER NOT NULL REFERENCES namespaces(id),
//!   actor_id  TEXT NOT NULL,
//!   version   INTEGER NOT NULL DEFAULT 0,  -- the latest stored version (0: none)
//!   epoch     INTEGER NOT NULL DEFAULT 0,  -- the ownership epoch of the last write or fence
//!   UNIQUE (namespace, actor_id)
//! );
//! -- Every record, in commit order: `position` is the event feed's position.
//! CREATE TABLE records (
//!   position  INTEGER PRIMARY KEY,
//!   namespace INTEGER NOT NULL REFERENCES namespaces(id),
//!   actor     INTEGER NOT NULL REFERENCES actors(id),
//!   version   INTEGER,          -- NULL: a record that is not an event (written by another tool)
//!   event_id  TEXT,
//!   body      BLOB NOT NULL     -- the event as JSON text (as on JetStream); any bytes if another tool wrote it
//! );
//! CREATE INDEX records_of_actor ON records (actor, position);
//! CREATE UNIQUE INDEX records_by_version ON records (actor, version) WHERE version IS NOT NULL;
//! CREATE UNIQUE INDEX records_by_event_id ON records (namespace, event_id) WHERE event_id IS NOT NULL;
//! CREATE INDEX records_in_order ON records (namespace, position);
//! -- The latest snapshot of each actor, as JSON.
//! CREATE TABLE snapshots (
//!   actor   INTEGER PRIMARY KEY REFERENCES actors(id),
//!   version INTEGER NOT NULL,
//!   body    BLOB NOT NULL       -- the snapshot as JSON text
//! );
//! ```
//!
//! For example, an actor's events: `sqlite3 aether-data/aether.sqlite3 "SELECT r.version,
//! r.body FROM records r JOIN actors a ON a.id = r.actor JOIN namespaces n ON n.id =
//! a.namespace WHERE n.name = 'bank' AND a.actor_id = 'acct-1' ORDER BY r.position"`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Durability, OpenError, SqliteConfig};

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// The SQL that creates the schema (the tables above) in an empty database, for tools that
/// want the same tables (the benchmarks' raw baseline uses it).
pub const SCHEMA: &str = "
CREATE TABLE namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE actors (
  id        INTEGER PRIMARY KEY,
  namespace INTEGER NOT NULL REFERENCES namespaces(id),
  actor_id  TEXT NOT NULL,
  version   INTEGER NOT NULL DEFAULT 0,
  epoch     INTEGER NOT NULL DEFAULT 0,
  UNIQUE (namespace, actor_id)
);
CREATE TABLE records (
  position  INTEGER PRIMARY KEY,
  namespace INTEGER NOT NULL REFERENCES namespaces(id),
  actor     INTEGER NOT NULL REFERENCES actors(id),
  version   INTEGER,
  event_id  TEXT,
  body      BLOB NOT NULL
);
CREATE INDEX records_of_actor ON records (actor, position);
CREATE UNIQUE INDEX records_by_version ON records (actor, version) WHERE version IS NOT NULL;
CREATE UNIQUE INDEX records_by_event_id ON records (namespace, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX records_in_order ON records (namespace, position);
CREATE TABLE snapshots (
  actor   INTEGER PRIMARY KEY REFERENCES actors(id),
  version INTEGER NOT NULL,
  body    BLOB NOT NULL
);
";

/// Refuses a file that is neither empty nor a SQLite database, before SQLite opens it: SQLite
/// takes a file too short to hold a page for an empty database and would write a new one over it.
pub(crate) fn check_header(file: &Path) -> Result<(), OpenError> {
    use std::io::Read;
    const MAGIC: &[u8] = b"SQLite format 3\0";
    let io = |source| OpenError::Io {
        path: file.to_owned(),
        source,
    };
    let mut head = Vec::with_capacity(MAGIC.len());
    match std::fs::File::open(file) {
        Ok(opened) => opened
            .take(MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if head.is_empty() || head == MAGIC {
        return Ok(());
    }
    Err(OpenError::Corrupt {
        path: file.to_owned(),
        reason: "it does not start with SQLite's header".to_owned(),
    })
}

/// Opens a connection to `file` with the pragmas every connection uses.
pub(crate) fn connect(file: &Path, config: &SqliteConfig) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: file.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(file, e))?;
    // Another connection of this process may hold the write lock for a commit.
    conn.busy_timeout(Duration::from_secs(30)).map_err(sqlite)?;
    let synchronous = match config.durability {
        Durability::Full => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;"
    ))
    .map_err(|e| classify(file, e))?;
    if let Some(pages) = config.max_pages {
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(sqlite)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Creates the schema in a new database, or checks an existing one.
pub(crate) fn prepare(conn: &Connection, file: &Path, check: bool) -> Result<(), OpenError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(file, e))?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: file.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|e| classify(file, e))?;
        if tables > 0 {
            return Err(OpenError::Corrupt {
                path: file.to_owned(),
                reason: "it holds tables but no Aether schema version".to_owned(),
            });
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| classify(file, e))?;
        return Ok(());
    }
    if check {
        let verdict: String = conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(|e| classify(file, e))?;
        if verdict != "ok" {
            return Err(OpenError::Corrupt {
                path: file.to_owned(),
                reason: verdict,
            });
        }
    }
    Ok(())
}

/// Damage and "not a database" are [`OpenError::Corrupt`]; the rest [`OpenError::Sqlite`].
fn classify(file: &Path, error: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => OpenError::Corrupt {
            path: file.to_owned(),
            reason: error.to_string(),
        },
        _ => OpenError::Sqlite {
            path: file.to_owned(),
            source: error,
        },
    }
}
