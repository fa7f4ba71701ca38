//! Writing a group: the writes waiting in the queue, each applied inside its own savepoint of
//! one transaction (so each is atomic and checked on its own), committed once — one sync for
//! the whole group — and only then answered.

use aether_core::{
    ActorId, ActorSnapshot, Event, EventId, InvalidSnapshot, OwnerEpoch, SaveOutcome,
    SnapshotOutcome, StoreError, Version,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{actor_key, sqlite_error};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where its answer goes.
pub(crate) enum Op {
    /// Events of one actor (already checked against the limits), written at `epoch`.
    Save {
        ns: i64,
        events: Vec<Event>,
        epoch: OwnerEpoch,
        reply: Reply<SaveOutcome>,
    },
    Snapshot {
        ns: i64,
        snapshot: ActorSnapshot,
        reply: Reply<SnapshotOutcome>,
    },
    Fence {
        ns: i64,
        actor_id: ActorId,
        epoch: OwnerEpoch,
        reply: Reply<Version>,
    },
    /// A record as another tool could write it (the conformance suite's hook).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Raw {
        ns: i64,
        actor_id: ActorId,
        raw: Vec<u8>,
        reply: Reply<()>,
    },
}

/// What an op's answer will be once the group commits.
enum Outcome {
    Save(Result<SaveOutcome, StoreError>),
    Snapshot(Result<SnapshotOutcome, StoreError>),
    Fence(Result<Version, StoreError>),
    Raw(Result<(), StoreError>),
}

impl Outcome {
    /// `op` failed with `error`.
    fn failed(op: &Op, error: &StoreError) -> Self {
        match op {
            Op::Save { .. } => Self::Save(Err(copy(error))),
            Op::Snapshot { .. } => Self::Snapshot(Err(copy(error))),
            Op::Fence { .. } => Self::Fence(Err(copy(error))),
            Op::Raw { .. } => Self::Raw(Err(copy(error))),
        }
    }

    fn is_ok(&self) -> bool {
        match self {
            Self::Save(r) => r.is_ok(),
            Self::Snapshot(r) => r.is_ok(),
            Self::Fence(r) => r.is_ok(),
            Self::Raw(r) => r.is_ok(),
        }
    }
}

/// Answers `op` with its `outcome`; a successful op whose commit failed gets `failed` instead.
fn answer(op: Op, outcome: Outcome, failed: Option<&StoreError>) {
    fn send<T>(reply: Reply<T>, result: Result<T, StoreError>, failed: Option<&StoreError>) {
        let result = match (result, failed) {
            (Ok(_), Some(e)) => Err(copy(e)),
            (result, _) => result,
        };
        // The caller may have stopped waiting: nothing to do then.
        let _ = reply.send(result);
    }
    match (op, outcome) {
        (Op::Save { reply, .. }, Outcome::Save(r)) => send(reply, r, failed),
        (Op::Snapshot { reply, .. }, Outcome::Snapshot(r)) => send(reply, r, failed),
        (Op::Fence { reply, .. }, Outcome::Fence(r)) => send(reply, r, failed),
        (Op::Raw { reply, .. }, Outcome::Raw(r)) => send(reply, r, failed),
        _ => unreachable!("an op's outcome is of the op's kind"),
    }
}

fn copy(error: &StoreError) -> StoreError {
    StoreError::Backend {
        message: error.to_string(),
        source: None,
    }
}

/// Applies `group` in one transaction, each op in its own savepoint, commits, and answers.
///
/// Some errors (a full database, an I/O error) make SQLite roll back the whole transaction,
/// not just the failing statement: the ops applied before it are then gone too. The failing
/// op is answered with its error and the others are applied again, in a new transaction.
pub(super) fn commit_group(conn: &Connection, group: Vec<Op>, counts: &super::Counts) {
    use std::sync::atomic::Ordering::Relaxed;
    counts.writes.fetch_add(group.len() as u64, Relaxed);
    // The outcome of each op that ended a transaction: final, and not applied again.
    let mut aborted: Vec<Option<Outcome>> = group.iter().map(|_| None).collect();
    let outcomes = 'group: loop {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let error = sqlite_error("begin a write", &e);
            let outcomes = group
                .iter()
                .zip(&aborted)
                .map(|(op, aborted)| aborted.is_none().then(|| Outcome::failed(op, &error)))
                .collect();
            break 'group outcomes;
        }
        let mut outcomes = Vec::with_capacity(group.len());
        for (index, op) in group.iter().enumerate() {
            if aborted[index].is_some() {
                outcomes.push(None);
                continue;
            }
            if let Err(e) = conn.execute_batch("SAVEPOINT op") {
                outcomes.push(Some(Outcome::failed(
                    op,
                    &sqlite_error("begin a write", &e),
                )));
                continue;
            }
            let mut outcome = apply(conn, op);
            if conn.is_autocommit() {
                // SQLite rolled back the whole transaction: start it again without this op.
                if outcome.is_ok() {
                    let lost = StoreError::Backend {
                        message: "the write was rolled back by the database".to_owned(),
                        source: None,
                    };
                    outcome = Outcome::failed(op, &lost);
                }
                aborted[index] = Some(outcome);
                continue 'group;
            }
            let end = if outcome.is_ok() {
                "RELEASE op"
            } else {
                // All or nothing: this op's writes go, the group's others stay.
                "ROLLBACK TO op; RELEASE op"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::warn!(error = %e, "could not end a write's savepoint");
            }
            outcomes.push(Some(outcome));
        }
        break 'group outcomes;
    };
    let failed = if conn.is_autocommit() {
        // Nothing to commit: the transaction did not begin.
        None
    } else {
        let failed = conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            sqlite_error("commit", &e)
        });
        if failed.is_none() {
            counts.commits.fetch_add(1, Relaxed);
        }
        failed
    };
    for ((op, outcome), aborted) in group.into_iter().zip(outcomes).zip(aborted) {
        if let Some(outcome) = outcome.or(aborted) {
            answer(op, outcome, failed.as_ref());
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> Outcome {
    match op {
        Op::Save {
            ns, events, epoch, ..
        } => Outcome::Save(save(conn, *ns, events, *epoch)),
        Op::Snapshot { ns, snapshot, .. } => Outcome::Snapshot(save_snapshot(conn, *ns, snapshot)),
        Op::Fence {
            ns,
            actor_id,
            epoch,
            ..
        } => Outcome::Fence(fence(conn, *ns, actor_id, *epoch)),
        Op::Raw {
            ns, actor_id, raw, ..
        } => Outcome::Raw(write_raw(conn, *ns, actor_id, raw)),
    }
}

/// The rules of the store contract, as the in-memory store applies them: a stale save is a
/// duplicate if every event is stored as is, else (after the fence check) a reused id or a
/// conflict; a new save is fenced by a newer head epoch, refused for an id stored elsewhere,
/// and otherwise appended whole.
fn save(
    conn: &Connection,
    ns: i64,
    events: &[Event],
    epoch: OwnerEpoch,
) -> Result<SaveOutcome, StoreError> {
    let first = &events[0];
    let actor_id = &first.actor_id;
    let head = actor_key(conn, ns, actor_id.as_str())?;
    let (current, head_epoch) = head.map_or((0, 0), |(_, v, e)| (v, e));
    let head_epoch = OwnerEpoch::new(head_epoch);
    if first.version <= current {
        let mut all_stored = true;
        let mut error = None;
        for event in events {
            match slot(conn, ns, &event.id)? {
                Some((a, v)) if a == actor_id.as_str() && v == event.version => {}
                Some((a, v)) => {
                    error = Some(reused(&event.id, &a, v)?);
                    break;
                }
                None => all_stored = false,
            }
        }
        if error.is_none() && all_stored {
            return Ok(SaveOutcome::Duplicate);
        }
        check_epoch(actor_id, head_epoch, epoch)?;
        return Err(error.unwrap_or_else(|| StoreError::VersionConflict {
            actor_id: actor_id.clone(),
            attempted_version: first.version,
            current_version: current,
        }));
    }
    check_epoch(actor_id, head_epoch, epoch)?;
    if let Some(event) = events.iter().find(|e| i64::try_from(e.version).is_err()) {
        return Err(StoreError::Backend {
            message: format!(
                "event {} has version {}, above the largest this store keeps ({}); nothing was written",
                event.id,
                event.version,
                i64::MAX
            ),
            source: None,
        });
    }
    let key = match head {
        Some((key, _, _)) => key,
        None => new_actor(conn, ns, actor_id)?,
    };
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO records (namespace, actor, version, event_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(|e| sqlite_error("prepare a save", &e))?;
    for event in events {
        // Text, not a blob: the sqlite3 tool shows it as the JSON it is.
        let body = serde_json::to_string(event)
            .map_err(|e| super::backend(&format!("encode event {}", event.id), e))?;
        // The unique index on (namespace, event_id) refuses an id stored before: only then
        // is it looked up, to say where (the op's savepoint drops what this batch inserted).
        if let Err(e) = insert.execute(params![ns, key, event.version, event.id.as_str(), body]) {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
                && let Some((a, v)) = slot(conn, ns, &event.id)?
            {
                return Err(reused(&event.id, &a, v)?);
            }
            return Err(sqlite_error("save an event", &e));
        }
    }
    let last = events[events.len() - 1].version;
    conn.prepare_cached("UPDATE actors SET version = ?2, epoch = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![key, last, epoch.get()]))
        .map_err(|e| sqlite_error("move the actor's head", &e))?;
    Ok(SaveOutcome::Saved)
}

fn check_epoch(actor_id: &ActorId, head: OwnerEpoch, writer: OwnerEpoch) -> Result<(), StoreError> {
    if head > writer {
        tracing::debug!(actor = %actor_id, epoch = %writer, fenced_by = %head, "write fenced by a newer owner");
        return Err(StoreError::Fenced {
            actor_id: actor_id.clone(),
            epoch: writer,
            fenced_by: head,
        });
    }
    Ok(())
}

/// Where the event id `id` is stored in namespace `ns`: its actor and version.
fn slot(conn: &Connection, ns: i64, id: &EventId) -> Result<Option<(String, Version)>, StoreError> {
    conn.prepare_cached(
        "SELECT a.actor_id, r.version FROM records r JOIN actors a ON a.id = r.actor \
         WHERE r.namespace = ?1 AND r.event_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![ns, id.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
    })
    .map_err(|e| sqlite_error("look up an event id", &e))
}

fn reused(id: &EventId, actor: &str, version: Version) -> Result<StoreError, StoreError> {
    let existing_actor =
        ActorId::new(actor).map_err(|e| super::backend("read a stored actor id", e))?;
    Ok(StoreError::EventIdReused {
        id: id.clone(),
        existing_actor,
        existing_version: version,
    })
}

fn new_actor(conn: &Connection, ns: i64, actor_id: &ActorId) -> Result<i64, StoreError> {
    conn.prepare_cached("INSERT INTO actors (namespace, actor_id) VALUES (?1, ?2)")
        .and_then(|mut s| s.insert(params![ns, actor_id.as_str()]))
        .map_err(|e| sqlite_error("add an actor", &e))
}

fn save_snapshot(
    conn: &Connection,
    ns: i64,
    snapshot: &ActorSnapshot,
) -> Result<SnapshotOutcome, StoreError> {
    let head = actor_key(conn, ns, snapshot.actor_id.as_str())?;
    let latest = head.map_or(0, |(_, v, _)| v);
    let key = match head {
        Some((key, _, _)) if snapshot.version <= latest => key,
        _ => {
            return Err(InvalidSnapshot::AheadOfEvents {
                actor_id: snapshot.actor_id.clone(),
                version: snapshot.version,
                latest,
            }
            .into());
        }
    };
    let stored: Option<Version> = conn
        .prepare_cached("SELECT version FROM snapshots WHERE actor = ?1")
        .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
        .map_err(|e| sqlite_error("read the stored snapshot's version", &e))?;
    if let Some(stored_version) = stored.filter(|v| *v > snapshot.version) {
        return Ok(SnapshotOutcome::KeptNewer { stored_version });
    }
    let body =
        serde_json::to_string(snapshot).map_err(|e| super::backend("encode a snapshot", e))?;
    conn.prepare_cached(
        "INSERT INTO snapshots (actor, version, body) VALUES (?1, ?2, ?3) \
         ON CONFLICT (actor) DO UPDATE SET version = excluded.version, body = excluded.body",
    )
    .and_then(|mut s| s.execute(params![key, snapshot.version, body]))
    .map_err(|e| sqlite_error("save a snapshot", &e))?;
    Ok(SnapshotOutcome::Saved)
}

fn fence(
    conn: &Connection,
    ns: i64,
    actor_id: &ActorId,
    epoch: OwnerEpoch,
) -> Result<Version, StoreError> {
    let head = actor_key(conn, ns, actor_id.as_str())?;
    let (key, version) = match head {
        Some((key, version, stored)) => {
            check_epoch(actor_id, OwnerEpoch::new(stored), epoch)?;
            (key, version)
        }
        None => (new_actor(conn, ns, actor_id)?, 0),
    };
    conn.prepare_cached("UPDATE actors SET epoch = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![key, epoch.get()]))
        .map_err(|e| sqlite_error("fence the actor", &e))?;
    Ok(version)
}

/// As the in-memory store: a record that decodes as an event of this actor is saved as one;
/// one of another actor is refused; anything else is kept as a record that is not an event.
fn write_raw(conn: &Connection, ns: i64, actor_id: &ActorId, raw: &[u8]) -> Result<(), StoreError> {
    match serde_json::from_slice::<Event>(raw) {
        Ok(event) if event.actor_id == *actor_id => {
            save(conn, ns, std::slice::from_ref(&event), OwnerEpoch::UNOWNED).map(drop)
        }
        Ok(event) => Err(StoreError::Backend {
            message: format!(
                "record for actor {} written to the log of {actor_id}",
                event.actor_id
            ),
            source: None,
        }),
        Err(_) => {
            let key = match actor_key(conn, ns, actor_id.as_str())? {
                Some((key, _, _)) => key,
                None => new_actor(conn, ns, actor_id)?,
            };
            conn.prepare_cached("INSERT INTO records (namespace, actor, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![ns, key, raw]))
                .map_err(|e| sqlite_error("write a raw record", &e))?;
            Ok(())
        }
    }
}
