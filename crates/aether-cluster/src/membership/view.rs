//! The member set and failure detection as a pure state machine: entries of the members
//! bucket, probe outcomes and clock ticks go in; the member set, [`MembershipEvent`]s, probes
//! to send and [`MembershipHealth`] come out. No I/O, so every rule is unit-tested here.
//!
//! ```text
//!            Put                Purge (TTL expired)          probe: no answer
//!  (absent) ─────► Announced ───────────────────► Suspected ─────────────────► (failed, removed)
//!                    ▲   ▲  Put (Recovered)          │  ▲
//!                    │   └───────────────────────────┘  │ probe: no answer
//!                    │ Put          probe: answer       │ (suspected again)
//!                    └──────────── Unannounced ◄────────┘
//!                                  (re-probed every member TTL while its key stays absent)
//!  Delete (graceful leave) from any state: removed (Left).
//! ```
//!
//! A node that is not synchronised (own connection down, or its watch not yet caught up after
//! reconnecting) starts no probe and declares nobody failed; for one member TTL after it
//! resynchronises it gives the others time to reconnect and re-announce: failed probes are
//! retried, not final.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use aether_core::NodeId;
use tokio::time::Instant;

use super::{MemberInfo, MembershipEvent, MembershipHealth};

/// One change of a key in the members bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// The member announced (or renewed) itself.
    Put(MemberInfo),
    /// The member left gracefully.
    Delete,
    /// The key expired (TTL marker) or was purged.
    Purge,
}

/// What a direct probe of a member found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// It answered (with its info, if the answer could be read).
    Alive(Option<MemberInfo>),
    /// Nobody answered in time while this node's own connection was up throughout.
    NoAnswer,
    /// This node's own connection dropped during the probe: it proves nothing.
    Inconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// Its key is present.
    Announced,
    /// Its key expired; a probe decides. `retry_at`: when to probe again after an inconclusive
    /// or deferred probe.
    Suspected {
        probing: bool,
        retry_at: Option<Instant>,
    },
    /// It answered a probe but its key is still absent.
    Unannounced { probing: bool, next_probe: Instant },
}

#[derive(Debug)]
struct Remote {
    info: MemberInfo,
    liveness: Liveness,
}

/// Timings the state machine needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timings {
    /// Re-probe period of a member that answers probes but does not announce; also the grace
    /// period after a resynchronisation.
    pub(crate) member_ttl: Duration,
    /// Retry period of a deferred or inconclusive probe.
    pub(crate) retry: Duration,
    /// Window of the mass-disappearance rule, and the quiet time that ends a freeze.
    pub(crate) stabilization_delay: Duration,
}

/// The member set of one node, as it learns it from the bucket and from probes.
#[derive(Debug)]
pub(crate) struct View {
    local: MemberInfo,
    remotes: BTreeMap<NodeId, Remote>,
    timings: Timings,
    synced: bool,
    /// Incremented at each resynchronisation; probes started before are inconclusive.
    generation: u64,
    /// Entries of the snapshot being read (last op per key), while not synced.
    snapshot: Option<HashMap<NodeId, Op>>,
    resyncs: u64,
    grace_until: Option<Instant>,
    /// Suspected or failed members, with when (for the mass-disappearance rule).
    vanished: VecDeque<(Instant, NodeId)>,
    failed: VecDeque<(Instant, NodeId)>,
    last_change: Option<Instant>,
    frozen: bool,
    // Output, drained by the driver.
    events: Vec<MembershipEvent>,
    probes: Vec<NodeId>,
    reannounce: bool,
    duplicate_warned: Option<u64>,
}

impl View {
    pub(crate) fn new(local: MemberInfo, timings: Timings) -> Self {
        Self {
            local,
            remotes: BTreeMap::new(),
            timings,
            synced: false,
            generation: 0,
            snapshot: Some(HashMap::new()),
            resyncs: 0,
            grace_until: None,
            vanished: VecDeque::new(),
            failed: VecDeque::new(),
            last_change: None,
            frozen: false,
            events: Vec::new(),
            probes: Vec::new(),
            reannounce: false,
            duplicate_warned: None,
        }
    }

    /// Whether the view is caught up with the bucket over a live connection.
    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }

    /// The current generation (stamped on probes).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// All members (this node included), sorted by id.
    pub(crate) fn members(&self) -> Vec<MemberInfo> {
        let mut all: Vec<MemberInfo> = self.remotes.values().map(|r| r.info.clone()).collect();
        let at = all.partition_point(|m| m.id < self.local.id);
        all.insert(at, self.local.clone());
        all
    }

    pub(crate) fn health(&self, now: Instant) -> MembershipHealth {
        let window = self.timings.stabilization_delay;
        let suspected = self
            .remotes
            .iter()
            .filter(|(_, r)| matches!(r.liveness, Liveness::Suspected { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        let failed_recently: BTreeSet<NodeId> = self
            .failed
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < window)
            .map(|(_, id)| id.clone())
            .collect();
        MembershipHealth {
            synced: self.synced,
            suspected,
            failed_recently: failed_recently.into_iter().collect(),
            frozen: self.frozen,
        }
    }

    /// Events, probes to start, and whether to re-announce now, since the last call.
    pub(crate) fn take_output(&mut self) -> (Vec<MembershipEvent>, Vec<NodeId>, bool) {
        (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.probes),
            std::mem::take(&mut self.reannounce),
        )
    }

    /// The connection dropped or the watch is being recreated: read a fresh snapshot before
    /// judging anyone.
    pub(crate) fn begin_resync(&mut self) {
        if self.snapshot.is_none() {
            self.synced = false;
            self.generation += 1;
            self.snapshot = Some(HashMap::new());
        }
    }

    /// An entry of the bucket: part of the snapshot while resynchronising, a live change
    /// otherwise.
    /// This node announces itself as `local` from now on (a new incarnation after a lapse).
    pub(crate) fn set_local(&mut self, local: MemberInfo) {
        self.local = local;
    }

    pub(crate) fn entry(&mut self, id: NodeId, op: Op, now: Instant) {
        if let Some(snapshot) = self.snapshot.as_mut() {
            snapshot.insert(id, op);
            return;
        }
        match op {
            Op::Put(info) => self.on_put(info, now),
            Op::Delete => self.on_delete(&id, now),
            Op::Purge => self.on_purge(&id, now),
        }
    }

    /// The snapshot is complete: reconcile it with the member set, then follow live changes.
    pub(crate) fn finish_resync(&mut self, now: Instant) {
        let Some(snapshot) = self.snapshot.take() else {
            return;
        };
        self.synced = true;
        if self.resyncs > 0 {
            self.grace_until = Some(now + self.timings.member_ttl);
        }
        self.resyncs += 1;
        let mut entries: Vec<(NodeId, Op)> = snapshot.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut announced = BTreeSet::new();
        for (id, op) in entries {
            match op {
                Op::Put(info) => {
                    announced.insert(id);
                    self.on_put(info, now);
                }
                Op::Delete => self.on_delete(&id, now),
                Op::Purge => {}
            }
        }
        if !announced.contains(&self.local.id) {
            self.reannounce = true;
        }
        // Members without a live key: expired (marker) or gone from the bucket entirely.
        let absent: Vec<NodeId> = self
            .remotes
            .keys()
            .filter(|id| !announced.contains(*id))
            .cloned()
            .collect();
        for id in absent {
            let Some(remote) = self.remotes.get_mut(&id) else {
                continue;
            };
            match remote.liveness {
                Liveness::Announced => self.suspect(&id, now),
                Liveness::Suspected { probing: false, .. } => {
                    remote.liveness = Liveness::Suspected {
                        probing: true,
                        retry_at: None,
                    };
                    self.probes.push(id);
                }
                Liveness::Suspected { probing: true, .. } | Liveness::Unannounced { .. } => {}
            }
        }
    }

    /// The outcome of a probe of `id` started in `generation`.
    pub(crate) fn probe_result(
        &mut self,
        id: &NodeId,
        generation: u64,
        outcome: ProbeOutcome,
        now: Instant,
    ) {
        let outcome = if generation != self.generation || !self.synced {
            ProbeOutcome::Inconclusive
        } else {
            outcome
        };
        let retry_at = now + self.timings.retry;
        let in_grace = self.grace_until.is_some_and(|until| now < until);
        let Some(remote) = self.remotes.get_mut(id) else {
            return;
        };
        match (remote.liveness, outcome) {
            (Liveness::Announced, _) => {}
            (Liveness::Suspected { probing: false, .. }, _)
            | (Liveness::Unannounced { probing: false, .. }, _) => {}
            (_, ProbeOutcome::Inconclusive) => {
                remote.liveness = match remote.liveness {
                    Liveness::Unannounced { .. } => Liveness::Unannounced {
                        probing: false,
                        next_probe: retry_at,
                    },
                    _ => Liveness::Suspected {
                        probing: false,
                        retry_at: Some(retry_at),
                    },
                };
            }
            (liveness, ProbeOutcome::Alive(reply)) => {
                let next_probe = now + self.timings.member_ttl;
                remote.liveness = Liveness::Unannounced {
                    probing: false,
                    next_probe,
                };
                let restarted = reply
                    .filter(|r| r.id == *id && r.incarnation != remote.info.incarnation)
                    .inspect(|r| remote.info = r.clone());
                if let Some(info) = restarted {
                    self.events.push(MembershipEvent::Joined(info));
                    self.last_change = Some(now);
                } else if matches!(liveness, Liveness::Suspected { .. }) {
                    self.events.push(MembershipEvent::Recovered(id.clone()));
                    self.last_change = Some(now);
                }
            }
            (Liveness::Unannounced { .. }, ProbeOutcome::NoAnswer) => {
                // It stopped answering too: suspect it, and probe once more before failing it.
                self.suspect(id, now);
            }
            (Liveness::Suspected { .. }, ProbeOutcome::NoAnswer) if in_grace => {
                remote.liveness = Liveness::Suspected {
                    probing: false,
                    retry_at: Some(retry_at),
                };
            }
            (Liveness::Suspected { .. }, ProbeOutcome::NoAnswer) => {
                self.remotes.remove(id);
                self.events.push(MembershipEvent::Failed(id.clone()));
                self.failed.push_back((now, id.clone()));
                self.vanish(id, now);
            }
        }
    }

    /// Time passes: re-probe what is due, end a freeze after a quiet stabilisation delay.
    pub(crate) fn tick(&mut self, now: Instant) {
        let window = self.timings.stabilization_delay;
        while self
            .vanished
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
        {
            self.vanished.pop_front();
        }
        while self
            .failed
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
        {
            self.failed.pop_front();
        }
        if self.frozen
            && self
                .last_change
                .is_none_or(|at| now.saturating_duration_since(at) >= window)
        {
            self.frozen = false;
        }
        if !self.synced {
            return;
        }
        for (id, remote) in &mut self.remotes {
            match remote.liveness {
                Liveness::Suspected {
                    probing: false,
                    retry_at: Some(at),
                } if at <= now => {
                    remote.liveness = Liveness::Suspected {
                        probing: true,
                        retry_at: None,
                    };
                    self.probes.push(id.clone());
                }
                Liveness::Unannounced {
                    probing: false,
                    next_probe,
                } if next_probe <= now => {
                    remote.liveness = Liveness::Unannounced {
                        probing: true,
                        next_probe,
                    };
                    self.probes.push(id.clone());
                }
                _ => {}
            }
        }
    }

    fn on_put(&mut self, info: MemberInfo, now: Instant) {
        if info.id == self.local.id {
            if info.incarnation != self.local.incarnation
                && self.duplicate_warned != Some(info.incarnation)
            {
                self.duplicate_warned = Some(info.incarnation);
                tracing::error!(
                    node = %info.id,
                    ours = self.local.incarnation,
                    theirs = info.incarnation,
                    "membership: another process announces this node id"
                );
            }
            return;
        }
        let id = info.id.clone();
        match self.remotes.get_mut(&id) {
            None => {
                self.remotes.insert(
                    id,
                    Remote {
                        info: info.clone(),
                        liveness: Liveness::Announced,
                    },
                );
                self.events.push(MembershipEvent::Joined(info));
                self.last_change = Some(now);
            }
            Some(remote) if remote.info.incarnation != info.incarnation => {
                remote.info = info.clone();
                remote.liveness = Liveness::Announced;
                self.events.push(MembershipEvent::Joined(info));
                self.last_change = Some(now);
            }
            Some(remote) => {
                let was_suspected = matches!(remote.liveness, Liveness::Suspected { .. });
                remote.info = info;
                remote.liveness = Liveness::Announced;
                if was_suspected {
                    self.events.push(MembershipEvent::Recovered(id));
                    self.last_change = Some(now);
                }
            }
        }
    }

    fn on_delete(&mut self, id: &NodeId, now: Instant) {
        if *id == self.local.id {
            self.reannounce = true;
            return;
        }
        if self.remotes.remove(id).is_some() {
            self.events.push(MembershipEvent::Left(id.clone()));
            self.last_change = Some(now);
        }
    }

    fn on_purge(&mut self, id: &NodeId, now: Instant) {
        if *id == self.local.id {
            self.reannounce = true;
            return;
        }
        if self
            .remotes
            .get(id)
            .is_some_and(|r| r.liveness == Liveness::Announced)
        {
            self.suspect(id, now);
        }
    }

    fn suspect(&mut self, id: &NodeId, now: Instant) {
        let Some(remote) = self.remotes.get_mut(id) else {
            return;
        };
        remote.liveness = Liveness::Suspected {
            probing: true,
            retry_at: None,
        };
        self.probes.push(id.clone());
        self.events.push(MembershipEvent::Suspected(id.clone()));
        self.vanish(id, now);
    }

    /// Records a suspicion or failure; freezes when half or more of the members vanished
    /// within the stabilisation delay.
    fn vanish(&mut self, id: &NodeId, now: Instant) {
        self.last_change = Some(now);
        self.vanished.push_back((now, id.clone()));
        let window = self.timings.stabilization_delay;
        let recent: BTreeSet<&NodeId> = self
            .vanished
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < window)
            .map(|(_, id)| id)
            .collect();
        let gone = recent
            .iter()
            .filter(|id| !self.remotes.contains_key(**id))
            .count();
        let before = self.remotes.len() + 1 + gone;
        if 2 * recent.len() >= before && !self.frozen {
            tracing::warn!(
                vanished = recent.len(),
                members = before,
                "membership: half or more of the members vanished at once; frozen until stable"
            );
            self.frozen = true;
        }
    }
}

#[cfg(test)]
mod tests;
