//! [`OpenError`]: why a data directory could not be opened.

use std::path::PathBuf;

/// Why [`SqliteDatabase::open`](crate::SqliteDatabase::open) failed. Nothing was changed on
/// disk, except creating an empty data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another open database in this one) holds the data directory.
    #[error(
        "the data directory {path} is in use by another process (its lock file is held); \
         stop that process or choose another directory"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory, or the database file in it, does not exist (a reader creates
    /// nothing).
    #[error(
        "no Aether data directory at {path} (it or its database file {file} does not exist): \
         check the path",
        file = crate::DATABASE_FILE
    )]
    Missing {
        /// The data directory.
        path: PathBuf,
    },
    /// The database file is damaged or is not an Aether database.
    #[error("the database {path} is damaged or not an Aether database: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the schema check said.
        reason: String,
    },
    /// The database was written by a newer version of Aether, with a schema this build does
    /// not know.
    #[error(
        "the database {path} has schema version {found}, newer than this build's {supported}; \
         upgrade Aether"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// The directory or a file in it could not be created or opened.
    #[error("could not open {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The namespace could not be registered in the database.
    #[error("could not register the namespace: {0}")]
    Namespace(#[source] aether_core::StoreError),
    /// SQLite failed otherwise.
    #[error("could not open the database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
}
