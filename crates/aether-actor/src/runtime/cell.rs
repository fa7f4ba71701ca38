//! One active actor: its task, its state, its version and its command index. Activation,
//! deciding, storing, applying, snapshots, passivation; its effects in `cell/effects.rs`.

mod effects;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventId, SnapshotStore, StoreError, TraceContext, Version,
    metadata_keys,
};
use futures::FutureExt as _;
use tracing::Instrument;

use super::history::{
    Applied, CommandIndex, REMINDERS_KEY, REPLY_KEY, ReminderChanges, SnapshotBody, SnapshotBodyRef,
};
use super::mailbox::{CommandMsg, Envelope};
use super::publish::publish_stored;
use super::queue::Next;
use super::registry::{Control, NewActor};
use super::{AskResult, Shared};
use crate::effect::Effect;
use crate::{
    ActivationError, ActivationFailure, Actor, ActorError, AskError, CommandId, OnConflict,
    Outcome, RawEvent, SnapshotPolicy, VersionRange,
};
use effects::Extras;

/// The task of one activation of one actor. A boxed `dyn Future + Send` (not an `async fn`):
/// an actor's effects may ask other actors, whose delivery may spawn this very task, and the
/// compiler can only prove such a cycle `Send` through a named type.
pub(super) fn run<A: Actor, S: SnapshotStore + 'static>(
    shared: Arc<Shared<A, S>>,
    id: ActorId,
    stream: ActorId,
    new: NewActor<Box<Envelope<A>>, A::State>,
) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(run_task(shared, id, stream, new))
}

async fn run_task<A: Actor, S: SnapshotStore + 'static>(
    shared: Arc<Shared<A, S>>,
    id: ActorId,
    stream: ActorId,
    new: NewActor<Box<Envelope<A>>, A::State>,
) {
    let NewActor {
        generation,
        mut rx,
        control,
    } = new;
    // Dropping the cell (however the task ends) removes the slot and signals "stopped".
    let mut cell = Cell {
        index: CommandIndex::new(shared.config.command_horizon),
        shared,
        id,
        stream,
        state: A::State::default(),
        version: 0,
        stale: true,
        since_snapshot: 0,
        generation,
        control,
        passivated: false,
        extras: None,
    };
    if let Err(error) = Box::pin(cell.activate()).await {
        // Never a partial state: nothing is decided; everything queued gets the error.
        cell.shared
            .registry
            .begin_stop(&cell.id, cell.generation, &mut rx);
        while let Some(next) = rx.recv().await {
            if let Next::Message(envelope) = next {
                cell.refuse(*envelope, &error);
            }
        }
        return;
    }
    loop {
        // While it waits with nothing queued, the actor lends its state to its mailbox:
        // a query then reads it at once on the caller's task (`Actors::query_with`), the
        // answer the actor would give, without the hop to this task and back. Not while the
        // state is stale: the actor reloads it first.
        let next = if cell.stale {
            rx.recv().await
        } else {
            rx.recv_lending(&mut cell.state).await
        };
        let Some(Next::Message(envelope)) = next else {
            break;
        };
        cell.shared.counters.mailbox_depth(rx.len());
        cell = handle(cell, envelope).await;
        // Added (not stored): queries read from the lent state count here too.
        cell.control.activity.fetch_add(1, Ordering::Relaxed);
    }
    // Passivation: no new messages; the ones already queued are handled, in order.
    cell.shared
        .registry
        .begin_stop(&cell.id, cell.generation, &mut rx);
    while let Some(next) = rx.recv().await {
        if let Next::Message(envelope) = next {
            cell = handle(cell, envelope).await;
        }
    }
    if cell.control.snapshot_on_stop.load(Ordering::Relaxed) {
        cell.save_snapshot().await;
    }
    cell.passivated = true;
    tracing::debug!(actor_id = %cell.id, actor_type = A::ACTOR_TYPE, "actor passivated");
}

/// How many finished command boxes a runtime keeps for reuse: as many as commands commonly
/// run at once (one per busy actor), so that under load a command finds a box. Kept only
/// after that many commands were in flight together (about 2 KB each with the JetStream
/// store's write inline: 2 MB at most).
const SPARE_BOXES: usize = 1024;

/// Boxes that held the handling of a command, kept for the next one. A command's handling
/// holds the store's write inline, and allocating a box of kilobytes for every command costs
/// more than much of the actor around the write (glibc consolidates its small free chunks on
/// every allocation above 1 KB); with too few spares (64 before), 1 000 actors busy at once
/// allocated one per command, 0.62× raw saves against 0.74× with enough spares. At most
/// [`SPARE_BOXES`] are kept per runtime, and none per idle actor.
pub(crate) struct Spare<A: Actor, S>(std::sync::Mutex<Vec<CommandBox<A, S>>>);

type CommandBox<A, S> = tokio_util::sync::ReusableBoxFuture<'static, Cell<A, S>>;

impl<A: Actor, S> Default for Spare<A, S> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }
}

/// The handling of one message, boxed so that it does not size the idle actor's task (which
/// holds only the box while a message runs): a query in a small box of its own; any other
/// message in a box reused from the runtime's spares, which owns the cell while it runs and
/// gives it back.
fn handle<A: Actor, S: SnapshotStore + 'static>(
    mut cell: Cell<A, S>,
    envelope: Box<Envelope<A>>,
) -> Handling<A, S> {
    if let Envelope::Query { .. } = *envelope {
        return Handling::Query(Box::pin(async move {
            if let Envelope::Query { query, reply } = *envelope {
                cell.answer_guarded(query, reply).await;
            }
            cell
        }));
    }
    let shared = cell.shared.clone();
    let handling = async move {
        cell.handle_guarded(envelope).await;
        cell
    };
    let spare = shared.spare.0.lock().ok().and_then(|mut spare| spare.pop());
    let boxed = match spare {
        Some(mut boxed) => {
            boxed.set(handling);
            boxed
        }
        None => CommandBox::new(handling),
    };
    Handling::Command(Some(boxed), shared)
}

/// A message being handled: awaiting it gives the cell back (and a command's box to the
/// spares). Small, so that the actor's task stays small while it awaits one.
enum Handling<A: Actor, S> {
    Query(futures::future::BoxFuture<'static, Cell<A, S>>),
    Command(Option<CommandBox<A, S>>, Arc<Shared<A, S>>),
}

impl<A: Actor, S: SnapshotStore + 'static> Future for Handling<A, S> {
    type Output = Cell<A, S>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Cell<A, S>> {
        match self.get_mut() {
            Self::Query(handling) => handling.as_mut().poll(cx),
            Self::Command(slot, shared) => {
                let Some(boxed) = slot.as_mut() else {
                    unreachable!("a command's handling is polled after it finished");
                };
                let cell = std::task::ready!(boxed.poll(cx));
                if let Some(boxed) = slot.take()
                    && let Ok(mut spare) = shared.spare.0.lock()
                    && spare.len() < SPARE_BOXES
                {
                    spare.push(boxed);
                }
                std::task::Poll::Ready(cell)
            }
        }
    }
}

pub(crate) struct Cell<A: Actor, S> {
    shared: Arc<Shared<A, S>>,
    id: ActorId,
    stream: ActorId,
    state: A::State,
    version: Version,
    index: CommandIndex,
    /// The in-memory state may be behind the store (unknown write outcome, apply panic):
    /// reload before the next message.
    stale: bool,
    since_snapshot: u64,
    /// This activation's slot in the registry.
    generation: u64,
    control: Arc<Control>,
    /// Stopped by passivation (not by a failed activation).
    passivated: bool,
    /// Timers and reminders, allocated when the actor has any (an idle actor without them
    /// pays one pointer).
    extras: Option<Box<Extras<A>>>,
}

impl<A: Actor, S> Drop for Cell<A, S> {
    /// Counted in this order so that an observer who sees the passivation counted also sees
    /// the slot gone and the active count down.
    fn drop(&mut self) {
        // Plain timers die with their activation (reminders are persisted).
        if let Some(extras) = &self.extras {
            extras.abort_timers();
        }
        self.shared.registry.remove(&self.id, self.generation);
        self.shared.counters.actor_stopped();
        if self.passivated {
            self.shared.counters.passivations.inc();
        }
        self.control.finish();
    }
}

impl<A: Actor, S: SnapshotStore + 'static> Cell<A, S> {
    fn activation_error(&self, reason: ActivationFailure) -> ActivationError {
        ActivationError {
            actor_id: self.id.clone(),
            reason,
        }
    }

    /// Loads the latest snapshot and replays the events after it (the store's `load`), into
    /// fresh values; the cell's state changes only if everything decoded and applied.
    async fn activate(&mut self) -> Result<(), ActivationError> {
        let started = Instant::now();
        let span = tracing::debug_span!(
            "aether.actor.activate",
            namespace = %self.shared.namespace,
            actor_type = A::ACTOR_TYPE,
            actor_id = %self.id,
        );
        let result = self.load().instrument(span).await;
        let counters = &self.shared.counters;
        match &result {
            Ok(()) => {
                counters.activations.inc();
                counters.activated_in(started.elapsed());
            }
            Err(e) => {
                counters.activation_failures.inc();
                tracing::warn!(error = %e, "actor activation failed");
            }
        }
        result
    }

    async fn load(&mut self) -> Result<(), ActivationError> {
        let actor = &self.shared.actor;
        // Store futures are boxed: they can be large (JetStream's are), and inline they would
        // size every actor's task, idle or not.
        let loaded = Box::pin(self.shared.store.load(&self.stream))
            .await
            .map_err(|e| self.activation_error(ActivationFailure::Store(Arc::new(e))))?;
        if let Some(bad) = loaded.errors.first() {
            return Err(self.activation_error(ActivationFailure::UndecodableRecord {
                position: bad.position,
                error: bad.error.clone(),
            }));
        }
        let horizon = self.shared.config.command_horizon;
        let mut index = CommandIndex::new(horizon);
        let mut reminders = std::collections::BTreeMap::new();
        let (mut state, mut version) = match loaded.snapshot {
            Some(snapshot) => {
                let body: SnapshotBody<A::State> =
                    serde_json::from_value(snapshot.state).map_err(|e| {
                        self.activation_error(ActivationFailure::UndecodableSnapshot {
                            version: snapshot.version,
                            reason: e.to_string(),
                        })
                    })?;
                index = CommandIndex::from_snapshot(horizon, body.commands);
                reminders = body.reminders;
                (body.state, snapshot.version)
            }
            None => (A::State::default(), 0),
        };
        let replayed = loaded.events.len() as u64;
        for mut event in loaded.events {
            // The data is only decoded; the rest of the record is read below.
            let raw = RawEvent::new(event.event_type.clone(), std::mem::take(&mut event.data));
            let decoded = catch_unwind(AssertUnwindSafe(|| {
                actor.upcast(raw).and_then(|raw| actor.decode_event(raw))
            }))
            .unwrap_or_else(|panic| {
                Err(crate::CodecError::Decode {
                    event_type: event.event_type.clone(),
                    reason: format!("upcast or decode panicked: {}", panic_message(&panic)),
                })
            });
            let typed = decoded.map_err(|source| {
                self.activation_error(ActivationFailure::UndecodableEvent {
                    version: event.version,
                    source,
                })
            })?;
            catch_unwind(AssertUnwindSafe(|| actor.apply(&mut state, &typed))).map_err(
                |panic| {
                    self.activation_error(ActivationFailure::ApplyPanicked {
                        version: event.version,
                        message: panic_message(&panic),
                    })
                },
            )?;
            index.observe(&event);
            if let Some(changes) = ReminderChanges::of(&event) {
                changes.apply_to(&mut reminders);
            }
            version = version.max(event.version);
        }
        self.state = state;
        self.version = version;
        self.index = index;
        self.stale = false;
        self.since_snapshot = replayed;
        self.set_reminders(reminders);
        Ok(())
    }

    fn refuse(&self, envelope: Envelope<A>, error: &ActivationError) {
        match envelope {
            Envelope::Command(msg) => {
                self.shared.counters.commands.inc();
                let err = ActorError::Activation(error.clone());
                match msg.reply {
                    Some(reply) => {
                        let _ = reply.send(Err(err.into()));
                    }
                    None => self.shared.counters.tell_failures.inc(),
                }
            }
            Envelope::Query { reply, .. } => {
                let _ = reply.send(Err(ActorError::Activation(error.clone())));
            }
            Envelope::Timer { .. } => self.shared.counters.tell_failures.inc(),
            Envelope::Reminder { name } => {
                // Persisted: the scheduler tries again.
                self.shared.counters.effect_failures.inc();
                let again = super::reminders::now_unix_ms().saturating_add(1000);
                self.shared.reminders.retry(self.id.clone(), name, again);
            }
        }
    }

    /// A query, surviving a panic as [`handle_guarded`](Self::handle_guarded) does.
    async fn answer_guarded(
        &mut self,
        query: A::Query,
        reply: tokio::sync::oneshot::Sender<Result<A::QueryReply, ActorError>>,
    ) {
        let result = AssertUnwindSafe(self.answer(query)).catch_unwind().await;
        match result {
            Ok(result) => {
                let _ = reply.send(result);
            }
            Err(panic) => {
                self.stale = true;
                tracing::error!(
                    actor_id = %self.id,
                    panic = %panic_message(&panic),
                    "a message handler panicked; the actor reloads before its next message"
                );
            }
        }
    }

    /// [`handle`](Self::handle), surviving a panic in user code that is not caught closer
    /// (a `Serialize` impl, a codec hook): the message's caller gets
    /// [`ActorError::Stopped`] (its reply channel is dropped, outcome unknown), the actor
    /// reloads its state before the next message and keeps serving.
    async fn handle_guarded(&mut self, envelope: Box<Envelope<A>>) {
        let result = AssertUnwindSafe(self.handle(envelope)).catch_unwind().await;
        if let Err(panic) = result {
            self.stale = true;
            tracing::error!(
                actor_id = %self.id,
                panic = %panic_message(&panic),
                "a message handler panicked; the actor reloads before its next message"
            );
        }
    }

    async fn handle(&mut self, envelope: Box<Envelope<A>>) {
        match *envelope {
            Envelope::Command(msg) => {
                let (span, trace) = self.command_span(&msg.command_id, msg.trace);
                TraceContext::scope_opt(trace, self.handle_command(msg))
                    .instrument(span)
                    .await;
            }
            Envelope::Query { query, reply } => {
                let result = self.answer(query).await;
                let _ = reply.send(result);
            }
            Envelope::Timer {
                name,
                seq,
                command_id,
                command,
            } => {
                if self.take_timer(&name, seq) {
                    self.shared.counters.timers_fired.inc();
                    let (span, _) = self.command_span(&command_id, None);
                    let msg = CommandMsg {
                        command_id,
                        command,
                        on_conflict: self.shared.config.ask.on_conflict,
                        reply: None,
                        chain: Default::default(),
                        trace: None,
                    };
                    self.handle_command(msg).instrument(span).await;
                }
            }
            Envelope::Reminder { name } => Box::pin(self.fire_reminder(name)).await,
        }
    }

    /// The span of one command (`aether.actor.command`), also for the commands of timers,
    /// reminders and follow-ups (which run inside their cause's span), and its trace context:
    /// a child of the caller's `trace`, if it sent one (then recorded in the span's
    /// `trace_id`, `span_id` and `parent_span_id`, and in the events the command stores).
    pub(super) fn command_span(
        &self,
        command_id: &CommandId,
        trace: Option<TraceContext>,
    ) -> (tracing::Span, Option<TraceContext>) {
        let own = trace.map(|caller| caller.child());
        let span = tracing::info_span!(
            "aether.actor.command",
            namespace = %self.shared.namespace,
            actor_type = A::ACTOR_TYPE,
            actor_id = %self.id,
            command_id = %command_id,
            version = self.version,
            trace_id = own.map(|t| tracing::field::display(t.trace_id_hex())),
            span_id = own.map(|t| tracing::field::display(t.span_id_hex())),
            parent_span_id = trace.map(|t| tracing::field::display(t.span_id_hex())),
        );
        (span, own)
    }

    /// Answers `query`, counted and timed.
    async fn answer(&mut self, query: A::Query) -> Result<A::QueryReply, ActorError> {
        let started = std::time::Instant::now();
        let result = self.answer_unmetered(query).await;
        let counters = &self.shared.counters;
        counters.queries.inc();
        counters
            .query_seconds
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn answer_unmetered(&mut self, query: A::Query) -> Result<A::QueryReply, ActorError> {
        self.refresh().await?;
        let actor = &self.shared.actor;
        let state = &self.state;
        catch_unwind(AssertUnwindSafe(|| actor.query(state, query))).map_err(|panic| {
            ActorError::Panicked {
                actor_id: self.id.clone(),
                message: panic_message(&panic),
            }
        })
    }

    async fn refresh(&mut self) -> Result<(), ActorError> {
        if self.stale {
            Box::pin(self.activate()).await?;
        }
        Ok(())
    }

    async fn handle_command(&mut self, msg: CommandMsg<A>) {
        let CommandMsg {
            command_id,
            command,
            on_conflict,
            reply,
            chain,
            trace: _,
        } = msg;
        let (result, effects) = self.run_command(&command_id, command, on_conflict).await;
        // The caller's outcome comes after the effects: an ask waits for the callee's whole
        // turn, which is what makes the call chain exact (see `effect::CallChain`).
        if !effects.is_empty() {
            Box::pin(self.run_effects(&command_id, effects, &chain)).await;
        }
        let counters = &self.shared.counters;
        match reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None if result.is_err() => counters.tell_failures.inc(),
            None => {}
        }
        self.maybe_snapshot().await;
    }

    /// Decides and stores one command, counting it; the effects of its decision (none for a
    /// duplicate or a failure) are returned for the caller to run.
    async fn run_command(
        &mut self,
        command_id: &CommandId,
        command: A::Command,
        on_conflict: OnConflict,
    ) -> (AskResult<A>, Vec<Effect<A>>) {
        let started = std::time::Instant::now();
        let result = self.process(command_id, command, on_conflict).await;
        let counters = &self.shared.counters;
        counters.commands.inc();
        counters
            .command_seconds
            .record(started.elapsed().as_secs_f64());
        match result {
            Err(AskError::Rejected(r)) => {
                counters.rejections.inc();
                (Err(AskError::Rejected(r)), Vec::new())
            }
            Err(AskError::Failed(e)) => {
                tracing::debug!(error = %e, "command failed");
                (Err(AskError::Failed(e)), Vec::new())
            }
            Ok((outcome, effects)) => {
                if outcome.duplicate {
                    counters.duplicates.inc();
                }
                (Ok(outcome), effects)
            }
        }
    }

    async fn process(
        &mut self,
        command_id: &CommandId,
        command: A::Command,
        on_conflict: OnConflict,
    ) -> Result<(Outcome<A::Reply>, Vec<Effect<A>>), AskError<A::Rejection>> {
        self.refresh().await?;
        let mut retries_left = match on_conflict {
            OnConflict::Fail => 0,
            OnConflict::DecideAgain { max_attempts } => max_attempts,
        };
        let mut command = command;
        loop {
            if let Some(applied) = self.index.get(command_id) {
                // A duplicate runs no effects: they ran (or were lost) the first time.
                return self.stored_outcome(applied).map(|o| (o, Vec::new()));
            }
            // A copy for the next attempt, only when deciding again is allowed.
            let spare = (retries_left > 0).then(|| command.clone());
            match self.decide_and_store(command_id, command).await {
                Ok(outcome) => return Ok(outcome),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Conflict(conflict)) => {
                    // The reloaded history may hold this very command, applied by another
                    // writer (a second runtime, an old owner): answer its outcome, not a
                    // conflict.
                    if let Some(applied) = self.index.get(command_id) {
                        return self.stored_outcome(applied).map(|o| (o, Vec::new()));
                    }
                    match spare {
                        None => return Err(conflict.into()),
                        Some(next) => {
                            retries_left -= 1;
                            tracing::debug!(%conflict, "deciding again after a conflict");
                            command = next;
                        }
                    }
                }
            }
        }
    }

    fn stored_outcome(&self, applied: &Applied) -> AskResult<A> {
        let reply = match applied.reply.as_deref() {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| ActorError::StoredReplyUndecodable {
                    command_id: applied.id.clone(),
                    reason: e.to_string(),
                })?
            }
            None => {
                return Err(ActorError::StoredReplyUndecodable {
                    command_id: applied.id.clone(),
                    reason: "its events carry no reply".into(),
                }
                .into());
            }
        };
        Ok(Outcome {
            command_id: applied.id.clone(),
            written: applied.written,
            version: applied.version,
            reply,
            duplicate: true,
        })
    }

    async fn decide_and_store(
        &mut self,
        command_id: &CommandId,
        command: A::Command,
    ) -> Result<(Outcome<A::Reply>, Vec<Effect<A>>), Attempt<A>> {
        let actor = &self.shared.actor;
        let state = &self.state;
        let mut decision = match catch_unwind(AssertUnwindSafe(|| actor.decide(state, command))) {
            Err(panic) => {
                return Err(Attempt::Failed(
                    ActorError::Panicked {
                        actor_id: self.id.clone(),
                        message: panic_message(&panic),
                    }
                    .into(),
                ));
            }
            Ok(Err(rejection)) => return Err(Attempt::Failed(AskError::Rejected(rejection))),
            Ok(Ok(decision)) => decision,
        };
        let encode_error = |source| {
            Attempt::Failed(AskError::Failed(ActorError::EventEncode {
                actor_id: self.id.clone(),
                source,
            }))
        };
        // The reply's JSON text: stored in the last event's metadata and kept in the index.
        let reply_json = reply_text(&decision.reply)
            .map_err(|e| encode_error(crate::CodecError::Serialize(format!("reply: {e}"))))?;
        let effects = std::mem::take(&mut decision.effects);
        let changes = self
            .reminder_changes(&effects, !decision.events.is_empty())
            .map_err(|reason| {
                Attempt::Failed(
                    ActorError::InvalidEffect {
                        actor_id: self.id.clone(),
                        reason,
                    }
                    .into(),
                )
            })?;
        if decision.events.is_empty() {
            self.index.insert(Applied {
                id: command_id.clone(),
                written: None,
                version: self.version,
                reply: Some(reply_json.into_boxed_str()),
            });
            let outcome = Outcome {
                command_id: command_id.clone(),
                written: None,
                version: self.version,
                reply: decision.reply,
                duplicate: false,
            };
            return Ok((outcome, effects));
        }
        // The index keeps an exact-size copy; the text itself goes into the last event.
        let reply_kept: Box<str> = Box::from(reply_json.as_str());
        let records = catch_unwind(AssertUnwindSafe(|| {
            self.records(command_id, &decision.events, reply_json, &changes)
        }))
        .unwrap_or_else(|panic| {
            Err(crate::CodecError::Serialize(format!(
                "encode_event panicked: {}",
                panic_message(&panic)
            )))
        })
        .map_err(encode_error)?;
        let first = self.version + 1;
        let last = self.version + records.len() as u64;
        // The live path publishes the events as stored, once the store accepted them.
        let to_publish = self.shared.bus.is_some().then(|| records.to_vec());
        let saved = match records {
            Records::One(event) => self.shared.store.save_event(event).await,
            Records::Many(events) => self.shared.store.save_events(events).await,
        };
        match saved {
            Ok(outcome) if outcome.is_duplicate() => {
                // Events with these ids were already stored at these versions: another writer
                // applied this very command. Its events (not ours: a decision need not be
                // deterministic) are the truth: reload and answer its stored outcome.
                self.stale = true;
                Box::pin(self.activate())
                    .await
                    .map_err(|e| Attempt::Failed(ActorError::Activation(e).into()))?;
                return Err(Attempt::Conflict(ActorError::Conflict {
                    actor_id: self.id.clone(),
                    attempted_version: first,
                    current_version: self.version,
                }));
            }
            Ok(_) => {}
            Err(StoreError::VersionConflict {
                attempted_version,
                current_version,
                ..
            }) => {
                self.shared.counters.conflicts.inc();
                let conflict = ActorError::Conflict {
                    actor_id: self.id.clone(),
                    attempted_version,
                    current_version,
                };
                // Never write past a conflict: reload what the other writer stored first.
                self.stale = true;
                Box::pin(self.activate())
                    .await
                    .map_err(|e| Attempt::Failed(ActorError::Activation(e).into()))?;
                return Err(Attempt::Conflict(conflict));
            }
            Err(StoreError::InvalidEvent(source)) => {
                return Err(Attempt::Failed(
                    ActorError::InvalidEvents {
                        actor_id: self.id.clone(),
                        source,
                    }
                    .into(),
                ));
            }
            Err(other) => {
                // The write may or may not have landed: reload before the next message.
                self.stale = true;
                return Err(Attempt::Failed(
                    ActorError::Store {
                        actor_id: self.id.clone(),
                        source: Arc::new(other),
                    }
                    .into(),
                ));
            }
        }
        if let (Some(bus), Some(events)) = (&self.shared.bus, to_publish) {
            let shared = &*self.shared;
            let timeout = shared.config.publish_timeout;
            publish_stored(&**bus, &shared.namespace, events, timeout, &shared.counters).await;
        }
        let actor = &self.shared.actor;
        let state = &mut self.state;
        let events = &decision.events;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
            for event in events {
                actor.apply(state, event);
            }
        })) {
            self.stale = true;
            return Err(Attempt::Failed(
                ActorError::ApplyPanicked {
                    actor_id: self.id.clone(),
                    message: panic_message(&panic),
                }
                .into(),
            ));
        }
        self.version = last;
        self.since_snapshot += records_len(first, last);
        if !changes.is_empty() {
            let mut table = self.reminders().cloned().unwrap_or_default();
            changes.apply_to(&mut table);
            self.set_reminders(table);
        }
        let written = VersionRange { first, last };
        self.index.insert(Applied {
            id: command_id.clone(),
            written: Some(written),
            version: last,
            reply: Some(reply_kept),
        });
        let outcome = Outcome {
            command_id: command_id.clone(),
            written: Some(written),
            version: last,
            reply: decision.reply,
            duplicate: false,
        };
        Ok((outcome, effects))
    }

    /// The stored form of a decision's events: versions after the observed one, the command
    /// id on each, ids derived from it, the reply on the last. One event (the common case)
    /// is not put in a `Vec`.
    fn records(
        &self,
        command_id: &CommandId,
        events: &[A::Event],
        reply: String,
        reminders: &ReminderChanges,
    ) -> Result<Records, crate::CodecError> {
        let mut reply = Some(reply);
        let last = events.len().saturating_sub(1);
        // The command's own context (see `command_span`), current while it runs.
        let trace = TraceContext::current();
        let mut record = |i: usize, event: &A::Event| -> Result<Event, crate::CodecError> {
            let raw = self.shared.actor.encode_event(event)?;
            let id = EventId::new(event_id_text(command_id, i))
                .map_err(|e| crate::CodecError::Serialize(e.to_string()))?;
            let mut builder = Event::builder(self.stream.clone(), raw.event_type)
                .id(id)
                .version(self.version + 1 + i as u64)
                .command_id(command_id.as_str())
                .data_object(raw.data);
            if let Some(trace) = &trace {
                builder = builder
                    .metadata(metadata_keys::TRACE_ID, trace.trace_id_hex())
                    .metadata(metadata_keys::SPAN_ID, trace.span_id_hex());
            }
            if i == last {
                if let Some(reply) = reply.take() {
                    builder = builder.metadata(REPLY_KEY, reply);
                }
                if !reminders.is_empty() {
                    let changes = serde_json::to_string(reminders)
                        .map_err(|e| crate::CodecError::Serialize(e.to_string()))?;
                    builder = builder.metadata(REMINDERS_KEY, changes);
                }
            }
            Ok(builder.build())
        };
        match events {
            [event] => Ok(Records::One(record(0, event)?)),
            _ => events
                .iter()
                .enumerate()
                .map(|(i, event)| record(i, event))
                .collect::<Result<_, _>>()
                .map(Records::Many),
        }
    }

    async fn maybe_snapshot(&mut self) {
        let SnapshotPolicy::EveryEvents(every) = self.shared.config.snapshots else {
            return;
        };
        if self.since_snapshot < every {
            return;
        }
        self.save_snapshot().await;
    }

    /// Saves a snapshot of the current state, if there are events since the last one and the
    /// state is not stale.
    async fn save_snapshot(&mut self) {
        if self.stale || self.since_snapshot == 0 || self.version == 0 {
            return;
        }
        let body = SnapshotBodyRef {
            state: &self.state,
            commands: self.index.entries().collect(),
            reminders: self.reminders().filter(|r| !r.is_empty()),
        };
        let counters = &self.shared.counters;
        let value = match serde_json::to_value(&body) {
            Ok(value) => value,
            Err(e) => {
                counters.snapshot_failures.inc();
                tracing::warn!(error = %e, actor_id = %self.id, "snapshot state does not serialize");
                self.since_snapshot = 0;
                return;
            }
        };
        let snapshot = ActorSnapshot::new(self.stream.clone(), self.version, value);
        match Box::pin(self.shared.store.save_snapshot(snapshot)).await {
            Ok(_) => counters.snapshots.inc(),
            Err(e) => {
                counters.snapshot_failures.inc();
                tracing::warn!(error = %e, actor_id = %self.id, "snapshot save failed");
            }
        }
        self.since_snapshot = 0;
    }
}

/// A reply's JSON text in a buffer that grows from nothing (`serde_json::to_string` starts at
/// 128 bytes; most replies are a few bytes, kept as long as the command is in the index).
fn reply_text<R: serde::Serialize>(reply: &R) -> Result<String, serde_json::Error> {
    let mut text = Vec::new();
    serde_json::to_writer(&mut text, reply)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(text).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// `<command id>.<i>`, the id of a command's `i`-th event, built in one allocation of the
/// right size (`format!` grows its buffer: two allocations more per event).
fn event_id_text(command_id: &CommandId, i: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(command_id.as_str().len() + 1 + 20);
    text.push_str(command_id.as_str());
    text.push('.');
    let _ = write!(text, "{i}");
    text
}

fn records_len(first: Version, last: Version) -> u64 {
    last - first + 1
}

/// A decision's stored events: one, or an atomic batch of several.
enum Records {
    One(Event),
    Many(Vec<Event>),
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(events) => events.len(),
        }
    }

    fn to_vec(&self) -> Vec<Event> {
        match self {
            Self::One(event) => vec![event.clone()],
            Self::Many(events) => events.clone(),
        }
    }
}

/// How one decide-and-store attempt ended, when not with an outcome.
enum Attempt<A: Actor> {
    Conflict(ActorError),
    Failed(AskError<A::Rejection>),
}

pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<A: Actor> From<ActorError> for Attempt<A> {
    fn from(e: ActorError) -> Self {
        Self::Failed(e.into())
    }
}
