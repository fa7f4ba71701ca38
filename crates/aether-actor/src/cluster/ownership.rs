//! The handoff protocol (ADR 0009, "Handoff"), as pure state machines: no I/O, no clock, no
//! tasks. Each node's runtime feeds its [`Ownership`] what happened — a placement adopted, a
//! shard drained, its own membership lapsing or renewed — and does what it answers
//! ([`Action`]s); it decides every request with [`Ownership::decide`]. The leader computes
//! each next placement with [`Placement::next`] and settles moves with [`Placement::settle`].
//!
//! A [`Placement`] is a shard map as the leader writes it, with two things more than owners:
//!
//! - the **incarnation** of each owner: a node that restarts, or renews its membership after
//!   a lapse, is a new incarnation and owns nothing of what its earlier one owned;
//! - per shard, whether it is **moving**: it has a new owner, but an earlier owner (named,
//!   with its incarnation) may still serve it. Nobody serves a moving shard.
//!
//! The leader writes a move as *moving from the owner that may serve it*. It settles the move
//! (writes the shard as not moving) only once that owner has released it — it has adopted the
//! placement and drained the shard — or is known to be gone for good (membership declared
//! that incarnation failed, which happens only after its own check lapsed; or it left; or a
//! newer incarnation of the node appeared). Not being in a membership view that has not caught
//! up is no proof of anything: views lag, and a new leader's starts empty. Moving a moving
//! shard again keeps the node it moves *from*: the owners in between never served it.
//!
//! So a node serves a shard only under a settled placement that names it, and every earlier
//! server of the shard stopped for good before that placement was written.
//!
//! Per shard, on a node:
//!
//! ```text
//! NotOwned ──settled placement names this incarnation──► Serving{since}
//! Serving ──placement says otherwise, or membership lapses──► Releasing ──drained──► NotOwned
//! ```

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

use aether_cluster::MapVersion;
pub use aether_cluster::placement::{Incarnate, Placement, ShardSlot};
use aether_core::{ShardCount, ShardId};

/// Where a shard stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Not served here, and nothing of it is left here.
    NotOwned,
    /// Served here; writes carry the ownership epoch `since`.
    Serving {
        /// The version of the placement under which this node started serving it: the
        /// ownership epoch.
        since: MapVersion,
    },
    /// Taken away (by a placement, or by a lapse of this node's membership): no new
    /// requests; the runtime finishes those in flight and passivates the shard's actors,
    /// then reports [`Ownership::drained`].
    Releasing,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop taking requests for `shard` (they get `Moved`), finish those in flight, passivate
    /// its actors, then call [`Ownership::drained`].
    Drain {
        /// The shard.
        shard: ShardId,
    },
    /// Serve `shard`: activate its actors on demand, each fenced with `epoch` in the store.
    Serve {
        /// The shard.
        shard: ShardId,
        /// The ownership epoch.
        epoch: MapVersion,
    },
}

/// How to answer one request for a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it; writes carry this ownership epoch.
    Accept {
        /// The ownership epoch.
        epoch: MapVersion,
    },
    /// Not served here: answer `Moved` with this node's placement version.
    Moved {
        /// The placement version this node has adopted.
        version: MapVersion,
    },
    /// Moving to this node: wait (bounded by the request's deadline) for the placement that
    /// settles it, and decide again.
    Wait,
    /// The sender knows a newer placement: wait until it is adopted, then decide again.
    CatchUp {
        /// The sender's placement version.
        to: MapVersion,
    },
    /// This node's membership is not current: it answers nothing until it has renewed.
    NotCurrent,
}

/// One node's side of the protocol (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use aether_actor::cluster::ownership::{Decision, Incarnate, Ownership, Placement};
/// use aether_cluster::MapVersion;
/// use aether_core::{NodeId, ShardCount, ShardId};
///
/// let a = Incarnate { node: NodeId::new("a")?, incarnation: 1 };
/// let b = Incarnate { node: NodeId::new("b")?, incarnation: 1 };
/// let (shards, shard) = (ShardCount::new(1)?, ShardId::new(0));
/// let (mut node_a, mut node_b) = (Ownership::new(a.clone(), shards), Ownership::new(b.clone(), shards));
/// let never_gone = |_: &Incarnate| false;
///
/// // v1: a serves the shard.
/// let v1 = Placement::empty(shards).next(&[Some(a.clone())], never_gone);
/// node_a.adopt(&v1);
/// assert_eq!(node_a.decide(shard, v1.version), Decision::Accept { epoch: v1.version });
///
/// // v2: the leader moves it to b; it is moving from a: a drains, b waits.
/// let v2 = v1.next(&[Some(b.clone())], never_gone);
/// node_a.adopt(&v2);
/// node_b.adopt(&v2);
/// assert_eq!(node_b.decide(shard, v2.version), Decision::Wait);
/// // The leader asks a (by incarnation) whether it released the shard.
/// let settle = |node: &Ownership| {
///     v2.settle(|who, s| who == node.me() && node.has_released(s, v2.version), never_gone)
/// };
/// assert!(settle(&node_a).is_none()); // a still drains
///
/// node_a.drained(shard);
/// let v3 = settle(&node_a).expect("a released it");
/// node_b.adopt(&v3);
/// assert_eq!(node_b.decide(shard, v3.version), Decision::Accept { epoch: v3.version });
/// assert_eq!(node_a.decide(shard, v2.version), Decision::Moved { version: v2.version });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Ownership {
    me: Incarnate,
    placement: Option<Placement>,
    current: bool,
    states: Vec<ShardState>,
}

impl Ownership {
    /// A node (this incarnation) that has adopted no placement and holds nothing, with its
    /// membership current.
    pub fn new(me: Incarnate, shards: ShardCount) -> Self {
        Self {
            me,
            placement: None,
            current: true,
            states: vec![ShardState::NotOwned; shards.get() as usize],
        }
    }

    /// This node and incarnation.
    pub fn me(&self) -> &Incarnate {
        &self.me
    }

    /// Whether this node's membership is current (not lapsed since its last renewal).
    pub fn is_current(&self) -> bool {
        self.current
    }

    /// The placement version this node has adopted (0: none).
    pub fn version(&self) -> MapVersion {
        self.placement
            .as_ref()
            .map_or(MapVersion::new(0), |p| p.version)
    }

    /// The state of `shard` (`NotOwned` for a shard out of range).
    pub fn state(&self, shard: ShardId) -> ShardState {
        self.states
            .get(index(shard))
            .copied()
            .unwrap_or(ShardState::NotOwned)
    }

    /// Whether this node has released `shard` for placement `version`: it has adopted that
    /// placement or a newer one, and holds nothing of the shard. What the leader asks before
    /// it settles a move.
    pub fn has_released(&self, shard: ShardId, version: MapVersion) -> bool {
        self.version() >= version && self.state(shard) == ShardState::NotOwned
    }

    /// How to answer a request for `shard` from a sender whose placement is `sender_version`.
    pub fn decide(&self, shard: ShardId, sender_version: MapVersion) -> Decision {
        if !self.current {
            return Decision::NotCurrent;
        }
        let version = self.version();
        if sender_version > version {
            return Decision::CatchUp { to: sender_version };
        }
        match self.state(shard) {
            ShardState::Serving { since } => Decision::Accept { epoch: since },
            ShardState::NotOwned
                if self
                    .placement
                    .as_ref()
                    .and_then(|p| p.slot(shard))
                    .is_some_and(|s| s.owner.as_ref() == Some(&self.me)) =>
            {
                Decision::Wait
            }
            ShardState::NotOwned | ShardState::Releasing => Decision::Moved { version },
        }
    }

    /// Adopts `placement` (ignored unless newer than the adopted one): serves the settled
    /// shards it names this incarnation the owner of, drains the others it served.
    pub fn adopt(&mut self, placement: &Placement) -> Vec<Action> {
        if placement.version <= self.version() {
            return Vec::new();
        }
        self.placement = Some(placement.clone());
        let mut actions = Vec::new();
        self.reconcile(&mut actions);
        actions
    }

    /// The runtime finished draining `shard` (after [`Action::Drain`]).
    pub fn drained(&mut self, shard: ShardId) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(state) = self.states.get_mut(index(shard))
            && *state == ShardState::Releasing
        {
            *state = ShardState::NotOwned;
            self.reconcile(&mut actions);
        }
        actions
    }

    /// This node's membership lapsed (not renewed within its TTL minus a margin): it serves
    /// nothing from now on, and drains every shard it served.
    pub fn lapse(&mut self) -> Vec<Action> {
        self.current = false;
        let mut actions = Vec::new();
        self.reconcile(&mut actions);
        actions
    }

    /// This node renewed its membership after a lapse, as a new incarnation (`me`; the
    /// membership announces it), and read the newest placement (`placement`, from a
    /// linearizable read: a node that was paused may hold a placement from long ago). It
    /// serves only what a placement names its new incarnation for.
    pub fn renewed(&mut self, me: Incarnate, placement: &Placement) -> Vec<Action> {
        self.me = me;
        self.current = true;
        if placement.version > self.version() {
            self.placement = Some(placement.clone());
        }
        let mut actions = Vec::new();
        self.reconcile(&mut actions);
        actions
    }

    /// Brings every shard's state in line with the adopted placement and the membership.
    fn reconcile(&mut self, actions: &mut Vec<Action>) {
        let version = self.version();
        for (i, state) in self.states.iter_mut().enumerate() {
            let Some(shard) = shard_id(i) else { continue };
            let mine = self.current
                && self
                    .placement
                    .as_ref()
                    .and_then(|p| p.shards.get(i))
                    .is_some_and(|slot| slot.served_by(&self.me));
            *state = match (*state, mine) {
                (ShardState::NotOwned, true) => {
                    actions.push(Action::Serve {
                        shard,
                        epoch: version,
                    });
                    ShardState::Serving { since: version }
                }
                (ShardState::Serving { .. }, false) => {
                    actions.push(Action::Drain { shard });
                    ShardState::Releasing
                }
                (state, _) => state,
            };
        }
    }
}

fn shard_id(index: usize) -> Option<ShardId> {
    u32::try_from(index).ok().map(ShardId::new)
}

fn index(shard: ShardId) -> usize {
    shard.get() as usize
}
