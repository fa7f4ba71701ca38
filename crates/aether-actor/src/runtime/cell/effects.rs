//! Running a decision's effects in the actor's task, after its events are stored: sends to
//! other actors, follow-up commands, plain timers, and the actor's reminder table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use aether_core::SnapshotStore;
use futures::FutureExt as _;
use tokio::task::AbortHandle;
use tracing::Instrument as _;

use super::{Cell, panic_message};
use crate::effect::{CallChain, Effect, Sent, check_name};
use crate::runtime::Actors;
use crate::runtime::history::ReminderChanges;
use crate::runtime::mailbox::Envelope;
use crate::runtime::reminders::{Table, now_unix_ms};
use crate::{Actor, ActorError, AskError, CommandId, OnConflict};

/// What an actor with timers or reminders keeps besides its state.
pub(super) struct Extras<A: Actor> {
    /// Plain timers of this activation: name → (sequence number, its task).
    timers: HashMap<String, (u64, AbortHandle)>,
    next_timer: u64,
    /// Reminders: name → due time (Unix milliseconds). Persisted with the events.
    reminders: Table,
    /// The reminder whose command is being decided (removed with its events).
    firing: Option<String>,
    _actor: std::marker::PhantomData<fn() -> A>,
}

impl<A: Actor> Default for Extras<A> {
    fn default() -> Self {
        Self {
            timers: HashMap::new(),
            next_timer: 0,
            reminders: BTreeMap::new(),
            firing: None,
            _actor: std::marker::PhantomData,
        }
    }
}

impl<A: Actor> Extras<A> {
    pub(super) fn abort_timers(&self) {
        for (_, handle) in self.timers.values() {
            handle.abort();
        }
    }
}

impl<A: Actor, S: SnapshotStore + 'static> Cell<A, S> {
    fn extras(&mut self) -> &mut Extras<A> {
        self.extras.get_or_insert_with(Box::default)
    }

    pub(super) fn reminders(&self) -> Option<&Table> {
        self.extras.as_ref().map(|e| &e.reminders)
    }

    /// Replaces the reminder table and tells the runtime's scheduler (which wakes the actor when
    /// one is due, also after a passivation).
    pub(super) fn set_reminders(&mut self, table: Table) {
        if table.is_empty() && self.extras.is_none() {
            // Nothing to keep; the scheduler may still hold a stale entry (another writer
            // cancelled it): clear it if the scheduler runs at all.
            self.register_reminders();
            return;
        }
        self.extras().reminders = table;
        self.register_reminders();
    }

    fn register_reminders(&self) {
        let empty = Table::new();
        let table = self.reminders().unwrap_or(&empty);
        let actors = Actors {
            shared: self.shared.clone(),
        };
        if table.is_empty() && !actors.reminders_started() {
            return;
        }
        if self.shared.reminders.register(&self.id, table) {
            actors.start_reminders();
        }
    }

    /// The reminder changes a decision's effects make (with the reminder being fired removed),
    /// checking names and that there are events to persist them with.
    pub(super) fn reminder_changes(
        &self,
        effects: &[Effect<A>],
        has_events: bool,
    ) -> Result<ReminderChanges, String> {
        let mut changes = ReminderChanges::default();
        if let Some(firing) = self.extras.as_ref().and_then(|e| e.firing.clone()) {
            changes.unset.push(firing);
        }
        let now = now_unix_ms();
        let mut persisted = false;
        for effect in effects {
            match effect {
                Effect::StartTimer { name, .. } | Effect::CancelTimer { name } => check_name(name)?,
                Effect::SetReminder { name, after } => {
                    check_name(name)?;
                    persisted = true;
                    let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                    changes.set.insert(name.clone(), now.saturating_add(after));
                }
                Effect::CancelReminder { name } => {
                    check_name(name)?;
                    persisted = true;
                    changes.set.remove(name);
                    changes.unset.push(name.clone());
                }
                Effect::Send(_) | Effect::Peer { .. } => {}
            }
        }
        if persisted && !has_events {
            return Err(
                "a reminder is persisted with the decision's events, and this decision stores none"
                    .into(),
            );
        }
        Ok(changes)
    }

    /// Runs `effects` of the command `cause` in order, then the follow-up commands of its asks
    /// (and their effects). `chain` holds the actors waiting for this turn.
    pub(super) async fn run_effects(
        &mut self,
        cause: &CommandId,
        effects: Vec<Effect<A>>,
        chain: &CallChain,
    ) {
        let here = chain.with(self.shared.chain_key(&self.stream));
        let mut work = VecDeque::from([(cause.clone(), effects)]);
        while let Some((cause, effects)) = work.pop_front() {
            for (i, effect) in effects.into_iter().enumerate() {
                let follow_up = self.run_effect(&cause, i, effect, &here).await;
                if let Some(command) = follow_up {
                    let id = cause.derived(&format!("e{i}.r"));
                    let (result, more) = self.run_command(&id, command, OnConflict::Fail).await;
                    if let Err(error) = &result {
                        tracing::debug!(command_id = %id, %error, "follow-up command failed");
                    }
                    if !more.is_empty() {
                        work.push_back((id, more));
                    }
                }
            }
        }
    }

    /// Runs one effect; returns the follow-up command of an ask, if any.
    async fn run_effect(
        &mut self,
        cause: &CommandId,
        index: usize,
        effect: Effect<A>,
        chain: &CallChain,
    ) -> Option<A::Command> {
        let counters = &self.shared.counters;
        counters.effects.inc();
        let sent = match effect {
            Effect::Send(send) => {
                let id = cause.derived(&format!("e{index}"));
                AssertUnwindSafe(send(id, chain.clone()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Sent {
                        follow_up: None,
                        failure: Some(ActorError::Panicked {
                            actor_id: self.id.clone(),
                            message: format!("an effect panicked: {}", panic_message(&panic)),
                        }),
                    })
            }
            Effect::Peer {
                actor_id,
                command,
                then,
            } => {
                let id = cause.derived(&format!("e{index}"));
                let peers = Actors {
                    shared: self.shared.clone(),
                };
                match then {
                    None => Sent {
                        follow_up: None,
                        failure: peers.tell_effect(&actor_id, command, id).await.err(),
                    },
                    Some(then) => {
                        let result = peers
                            .ask_effect(&actor_id, command, id, chain.clone())
                            .await;
                        let failure = result.as_ref().err().and_then(AskError::failure).cloned();
                        match std::panic::catch_unwind(AssertUnwindSafe(|| then(result))) {
                            Ok(follow_up) => Sent { follow_up, failure },
                            Err(panic) => Sent {
                                follow_up: None,
                                failure: Some(ActorError::Panicked {
                                    actor_id: self.id.clone(),
                                    message: format!(
                                        "an effect panicked: {}",
                                        panic_message(&panic)
                                    ),
                                }),
                            },
                        }
                    }
                }
            }
            Effect::StartTimer {
                name,
                after,
                command,
            } => {
                let id = cause.derived(&format!("t{index}"));
                self.start_timer(name, after, id, command);
                return None;
            }
            Effect::CancelTimer { name } => {
                if let Some(extras) = &mut self.extras
                    && let Some((_, handle)) = extras.timers.remove(&name)
                {
                    handle.abort();
                }
                return None;
            }
            // Persisted with the events and applied to the table when they were stored.
            Effect::SetReminder { .. } | Effect::CancelReminder { .. } => return None,
        };
        if let Some(error) = &sent.failure {
            self.shared.counters.effect_failures.inc();
            tracing::warn!(actor_id = %self.id, command_id = %cause, effect = index, %error, "an effect failed");
        }
        sent.follow_up
    }

    fn start_timer(&mut self, name: String, after: Duration, id: CommandId, command: A::Command) {
        let shared = Arc::downgrade(&self.shared);
        let actor_id = self.id.clone();
        let generation = self.generation;
        let extras = self.extras();
        extras.next_timer += 1;
        let seq = extras.next_timer;
        let timer_name = name.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let envelope = Box::new(Envelope::Timer {
                name: timer_name,
                seq,
                command_id: id,
                command,
            });
            // Only into this activation's mailbox: a timer never activates an actor.
            if shared
                .registry
                .send_to(&actor_id, generation, envelope)
                .is_err()
            {
                shared.counters.effect_failures.inc();
                tracing::warn!(%actor_id, "a timer fired while the actor's mailbox was full or closed; its command is dropped");
            }
        });
        if let Some((_, old)) = extras.timers.insert(name, (seq, task.abort_handle())) {
            old.abort();
        }
    }

    /// Registers the reminders without `name`, and `name` again in a second (after a failure,
    /// so that a failing store is not retried in a loop).
    fn defer_reminder(&self, name: &str) {
        let mut table = self.reminders().cloned().unwrap_or_default();
        table.remove(name);
        let actors = Actors {
            shared: self.shared.clone(),
        };
        if self.shared.reminders.register(&self.id, &table) || actors.reminders_started() {
            actors.start_reminders();
        }
        let again = now_unix_ms().saturating_add(1000);
        self.shared
            .reminders
            .retry(self.id.clone(), name.to_owned(), again);
    }

    /// True (and forgets the timer) if the timer `name` that fired is still the current one:
    /// a cancelled or replaced timer's command is never handled.
    pub(super) fn take_timer(&mut self, name: &str, seq: u64) -> bool {
        let Some(extras) = &mut self.extras else {
            return false;
        };
        match extras.timers.get(name) {
            Some((current, _)) if *current == seq => {
                extras.timers.remove(name);
                true
            }
            _ => false,
        }
    }

    /// The reminder `name` is due: decide the command [`Actor::remind`] returns, with an id
    /// derived from the actor, the name and the due time.
    pub(super) async fn fire_reminder(&mut self, name: String) {
        if self.refresh().await.is_err() {
            // The store is failing: try again in a second, not in a loop.
            self.defer_reminder(&name);
            return;
        }
        let due = match self.reminders().and_then(|r| r.get(&name)) {
            Some(due) if *due <= now_unix_ms() => *due,
            // Cancelled, or set again for later since: stale.
            _ => {
                self.register_reminders();
                return;
            }
        };
        let counters = &self.shared.counters;
        counters.reminders_fired.inc();
        let actor = &self.shared.actor;
        let state = &self.state;
        let command = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            actor.remind(state, &name)
        })) {
            Ok(command) => command,
            Err(panic) => {
                counters.effect_failures.inc();
                tracing::warn!(actor_id = %self.id, reminder = %name, panic = %panic_message(&panic), "remind panicked");
                None
            }
        };
        if let Some(command) = command {
            let id = reminder_command_id(&self.stream, &name, due);
            self.extras().firing = Some(name.clone());
            let (span, _) = self.command_span(&id, None);
            let (result, effects) = self
                .run_command(&id, command, self.shared.config.ask.on_conflict)
                .instrument(span)
                .await;
            self.extras().firing = None;
            if let Err(AskError::Failed(error)) = &result {
                self.shared.counters.effect_failures.inc();
                tracing::warn!(actor_id = %self.id, reminder = %name, %error, "a reminder's command failed");
                if self.stale {
                    // Unknown outcome: the reload before the next message decides whether
                    // the reminder is still set; look again in a second, not in a loop.
                    self.defer_reminder(&name);
                    return;
                }
            }
            if !effects.is_empty() {
                self.run_effects(&id, effects, &CallChain::default()).await;
            }
        }
        // Stored nothing (no command, a rejection, no events, a failure known to have written
        // nothing): forget it in memory; it fires again after the next activation.
        if let Some(extras) = &mut self.extras
            && extras.reminders.get(&name) == Some(&due)
        {
            extras.reminders.remove(&name);
        }
        self.register_reminders();
        self.maybe_snapshot().await;
    }
}

impl<A: Actor, S: SnapshotStore + 'static> Actors<A, S> {
    fn reminders_started(&self) -> bool {
        self.shared
            .reminders_started
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The command id of the firing of `name` due at `due` on `stream`.
fn reminder_command_id(stream: &aether_core::ActorId, name: &str, due: u64) -> CommandId {
    CommandId::new("reminder")
        .map(|base| base.derived(&format!("{stream}.{name}.{due}")))
        .unwrap_or_else(|_| CommandId::generate())
}
