//! Reads, on a reader connection: an actor's records (events, and records that are not), its
//! snapshot, and a namespace's records in commit order (the event feed). A read of several
//! tables runs in one transaction, so it sees one committed state.

use aether_core::{
    ActorId, ActorSnapshot, Event, FeedEvent, FeedPage, FeedPosition, LoadedActor, ReplayError,
    ReplayResult, StoreError, Version,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::{actor_key, sqlite_error};

/// `actor_id`'s records from `from` on: the events with `version >= from`, and the records
/// that are not events after the last event before `from`.
pub(crate) fn replay(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
    from: Version,
) -> Result<ReplayResult, StoreError> {
    let Some((key, _, _)) = actor_key(conn, ns, actor_id.as_str())? else {
        return Ok(ReplayResult::default());
    };
    // Records that are not events sit between events: report those after the last event
    // left out (what the in-memory store reports). From the start, that is all of them.
    let after: i64 = if from == 0 {
        0
    } else {
        conn.prepare_cached(
            "SELECT coalesce(max(position), 0) FROM records \
             WHERE actor = ?1 AND version IS NOT NULL AND version < ?2",
        )
        .and_then(|mut s| s.query_row(params![key, as_sql(from)], |row| row.get(0)))
        .map_err(|e| sqlite_error("find where the replay starts", &e))?
    };
    // The position is read only for a record that does not decode (its error names it).
    let mut statement = conn
        .prepare_cached(
            "SELECT body, version, position FROM records WHERE actor = ?1 AND position > ?2 \
             ORDER BY position",
        )
        .map_err(|e| sqlite_error("replay", &e))?;
    let mut rows = statement
        .query(params![key, after])
        .map_err(|e| sqlite_error("replay", &e))?;
    let mut result = ReplayResult::default();
    while let Some(row) = rows.next().map_err(|e| sqlite_error("replay", &e))? {
        let (body, version) = read_record(row)?;
        match decode(actor_id, version, body) {
            Ok(event) if event.version >= from => result.events.push(event),
            Ok(_) => {}
            Err(error) => result.errors.push(ReplayError {
                position: row.get(2).map_err(|e| sqlite_error("replay", &e))?,
                raw: body.to_vec(),
                error,
            }),
        }
    }
    Ok(result)
}

/// A version as SQLite's signed integer: versions above `i64::MAX` cannot be stored, so a
/// bound above it means "all of them".
fn as_sql(version: Version) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// A record's body and version, its first two columns; the body is borrowed from the row
/// (it is copied only for a record that does not decode). Events are stored as text, records
/// written by other tools may be blobs: both are read as bytes.
fn read_record<'r>(row: &'r rusqlite::Row<'_>) -> Result<(&'r [u8], Option<Version>), StoreError> {
    let read = || -> rusqlite::Result<_> { Ok((row.get_ref(0)?, row.get(1)?)) };
    let (body, version) = read().map_err(|e| sqlite_error("read a record", &e))?;
    let body = body
        .as_bytes()
        .map_err(|e| super::backend("read a record's body", e))?;
    Ok((body, version))
}

/// A stored record as an event of `actor_id`, or why it is not one.
fn decode(actor_id: &ActorId, version: Option<Version>, body: &[u8]) -> Result<Event, String> {
    let event = Event::from_json(body).map_err(|e| e.to_string())?;
    if &event.actor_id != actor_id {
        return Err(format!("the record belongs to actor {}", event.actor_id));
    }
    match version {
        Some(v) if v == event.version => Ok(event),
        Some(v) => Err(format!(
            "the record says version {}, stored as version {v}",
            event.version
        )),
        None => Err("the record was not written as an event".to_owned()),
    }
}

pub(crate) fn latest_version(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
) -> Result<Version, StoreError> {
    Ok(actor_key(conn, ns, actor_id.as_str())?.map_or(0, |(_, v, _)| v))
}

pub(crate) fn latest_epoch(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
) -> Result<u64, StoreError> {
    Ok(actor_key(conn, ns, actor_id.as_str())?.map_or(0, |(_, _, e)| e))
}

pub(crate) fn snapshot(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
) -> Result<Option<ActorSnapshot>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached(
            "SELECT s.body FROM snapshots s JOIN actors a ON a.id = s.actor \
             WHERE a.namespace = ?1 AND a.actor_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![ns, actor_id.as_str()], |row| row.get(0))
                .optional()
        })
        .map_err(|e| sqlite_error("read the snapshot", &e))?;
    body.map(|body| {
        serde_json::from_str(&body)
            .map_err(|e| super::backend(&format!("decode the snapshot of {actor_id}"), e))
    })
    .transpose()
}

/// The latest snapshot and what follows it, in one read transaction.
pub(crate) fn load(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
) -> Result<LoadedActor, StoreError> {
    in_transaction(conn, || {
        let snapshot = snapshot(conn, ns, actor_id)?;
        let from = snapshot.as_ref().map_or(0, |s| s.version.saturating_add(1));
        let replay = replay(conn, ns, actor_id, from)?;
        Ok(LoadedActor {
            snapshot,
            events: replay.events,
            errors: replay.errors,
        })
    })
}

/// Up to `max` records of namespace `ns` after `after`, in commit order.
pub(crate) fn feed(
    conn: &Connection,
    ns: i64,
    after: FeedPosition,
    max: usize,
) -> Result<FeedPage, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT r.body, r.version, r.position, a.actor_id FROM records r \
             JOIN actors a ON a.id = r.actor \
             WHERE r.namespace = ?1 AND r.position > ?2 ORDER BY r.position LIMIT ?3",
        )
        .map_err(|e| sqlite_error("read the feed", &e))?;
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let mut rows = statement
        .query(params![ns, after.get(), limit])
        .map_err(|e| sqlite_error("read the feed", &e))?;
    let mut page = FeedPage {
        next: after,
        ..FeedPage::default()
    };
    while let Some(row) = rows.next().map_err(|e| sqlite_error("read the feed", &e))? {
        let (body, version) = read_record(row)?;
        let position: u64 = row.get(2).map_err(|e| sqlite_error("read the feed", &e))?;
        let actor: String = row.get(3).map_err(|e| sqlite_error("read the feed", &e))?;
        let actor_id =
            ActorId::new(actor).map_err(|e| super::backend("read a stored actor id", e))?;
        let position = FeedPosition::new(position);
        match decode(&actor_id, version, body) {
            Ok(event) => page.events.push(FeedEvent { position, event }),
            Err(error) => page.errors.push(ReplayError {
                position: position.get(),
                raw: body.to_vec(),
                error,
            }),
        }
        page.next = position;
    }
    Ok(page)
}

fn in_transaction<T>(
    conn: &Connection,
    read: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN")
        .map_err(|e| sqlite_error("begin a read", &e))?;
    let result = read();
    // A read transaction has nothing to keep: ending it either way is the same.
    let _ = conn.execute_batch("COMMIT");
    result
}
