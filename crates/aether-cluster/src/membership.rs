//! Membership and failure detection (ADR 0006, "Membership" and "Failure detection").
//!
//! Each node announces itself under its id in the members bucket with the member TTL and
//! renews the key every heartbeat; graceful [`Membership::leave`] deletes it at once. Every node
//! watches the whole bucket — first a snapshot of every key's last change, then the changes —
//! so all nodes see the same puts, deletes and expiries and converge on the same member set.
//!
//! ```text
//!  node A                          members bucket (TTL keys)                   node B
//!  announcer ── put "A" every heartbeat ──►  A ──┐      watch (snapshot, then changes)
//!  probe responder ◄─── <cluster>.cluster.probe.A ─┼──── view: Put → joined, Delete → left,
//!                                                  └──►        Purge (TTL) → suspected → probe:
//!                                                              answer → kept, none → failed
//! ```
//!
//! An expiry only makes a member *suspected*; it is declared *failed* only when a direct probe
//! (request/reply on `<cluster>.cluster.probe.<id>`, answered by every node) also goes
//! unanswered. A node whose own connection is down, or whose watch has not caught up since it
//! reconnected, suspects nobody and fails nobody; after resynchronising it gives the others one
//! member TTL to reconnect and re-announce. If half or more of the members are suspected or
//! failed within the stabilisation delay, [`MembershipHealth::frozen`] is set until membership
//! has been quiet for the stabilisation delay: the leader must not reassign shards meanwhile.
//!
//! ```no_run
//! use aether_cluster::ClusterConfig;
//! use aether_cluster::kv::ClusterStore;
//! use aether_cluster::membership::{Membership, MembershipEvent};
//! use aether_core::NodeId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let config = ClusterConfig::new(NodeId::new("node-1")?);
//! let store = ClusterStore::open(client, &config).await?;
//! let membership = Membership::start(&store, &config).await?;
//! let mut events = membership.subscribe();
//! println!("members: {:?}", membership.members());
//! while let Ok(event) = events.recv().await {
//!     if let MembershipEvent::Failed(id) = event {
//!         println!("{id} failed");
//!     }
//! }
//! membership.leave().await?;
//! # Ok(())
//! # }
//! ```

mod driver;
mod info;
mod view;

use aether_core::NodeId;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) use info::validate_config;
pub use info::{MAX_ADDRESS_LEN, MAX_APP_VERSION_LEN, MemberInfo};

use crate::kv::ClusterStore;
use crate::{ClusterConfig, ClusterError, task};

/// Capacity of the event channel; a receiver that falls further behind gets
/// [`broadcast::error::RecvError::Lagged`] and should re-read [`Membership::members`].
pub const EVENT_CAPACITY: usize = 1024;

/// A change of the member set, as one node observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipEvent {
    /// A member announced itself: a new node, or a known node with a new incarnation (it
    /// restarted).
    Joined(MemberInfo),
    /// A member left gracefully (deleted its key).
    Left(NodeId),
    /// A member's key expired (or it stopped answering probes); it stays a member until a
    /// probe decides.
    Suspected(NodeId),
    /// A suspected member did not answer a direct probe either: removed.
    Failed(NodeId),
    /// A suspected member answered a probe or announced itself again: still a member.
    Recovered(NodeId),
}

/// How trustworthy this node's view is right now, and whether the shard map must stay frozen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipHealth {
    /// This node is connected and its watch has caught up with the bucket. While false it
    /// suspects nobody and declares nobody failed.
    pub synced: bool,
    /// Members whose key expired and whose probe has not decided yet (they are still members).
    pub suspected: Vec<NodeId>,
    /// Members declared failed within the last stabilisation delay.
    pub failed_recently: Vec<NodeId>,
    /// Half or more of the members vanished (suspected or failed) within one stabilisation
    /// delay, and membership has not been quiet for a stabilisation delay since: more likely a
    /// partition (ours or NATS's) than half the cluster dying, so do not reassign shards.
    pub frozen: bool,
}

/// This node's membership: its announcement, its probe responder and its view of the others.
///
/// Dropping it stops everything without leaving (as a crash would: the key expires after the
/// member TTL); [`Membership::leave`] leaves gracefully.
#[derive(Debug)]
pub struct Membership {
    /// This node as it announces itself now (a lapse makes a new incarnation).
    local: watch::Receiver<MemberInfo>,
    /// When the last successful renewal of this node's key was sent (monotonic clock).
    renewed: watch::Receiver<Option<Instant>>,
    store: ClusterStore,
    members: watch::Receiver<Vec<MemberInfo>>,
    health: watch::Receiver<MembershipHealth>,
    events: broadcast::Sender<MembershipEvent>,
    announcer: JoinHandle<()>,
    /// The probe responder and the view, named for error reports.
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Membership {
    /// Validates the settings, answers probes for this node, announces it, and returns once the
    /// member set has been read from the bucket (so [`Membership::members`] is complete).
    ///
    /// # Errors
    ///
    /// - [`ClusterError::InvalidConfig`] for metadata or timings that cannot work (an address
    ///   over [`MAX_ADDRESS_LEN`] bytes, `member_ttl` under twice the heartbeat, …), or when a
    ///   live node already answers probes for this node id; nothing is written then.
    /// - [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS cannot be reached or
    ///   refuses the announcement or the watch (the announcement is withdrawn again).
    pub async fn start(store: &ClusterStore, config: &ClusterConfig) -> Result<Self, ClusterError> {
        config.validate_timings()?;
        info::validate_config(config)?;
        let local = MemberInfo::new(config.node_id.clone(), config.metadata.clone())?;
        driver::start(store, config, local).await
    }

    /// This node as it announces itself now.
    ///
    /// A node whose key may have expired (no renewal succeeded for a member TTL, counted from
    /// when the last successful one was sent: a paused process, a lost connection) announces
    /// itself again as a new incarnation: the others may have declared the earlier one failed
    /// and given its shards away, and this one owns nothing of what that one owned (ADR 0009).
    pub fn local(&self) -> MemberInfo {
        self.local.borrow().clone()
    }

    /// [`Membership::local`] as a [`watch`] channel: changed when this node announces a new
    /// incarnation.
    pub fn watch_local(&self) -> watch::Receiver<MemberInfo> {
        self.local.clone()
    }

    /// When the last successful renewal of this node's key was *sent*, on the monotonic clock
    /// (the key's TTL runs from the server's receipt, later): the node's membership is current
    /// for a member TTL from then, less a margin for clock rates (ADR 0009, "Reads").
    pub fn watch_renewed(&self) -> watch::Receiver<Option<Instant>> {
        self.renewed.clone()
    }

    /// The current members, this node included, sorted by id. Suspected members are still
    /// members (see [`MembershipHealth::suspected`]).
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.borrow().clone()
    }

    /// The member set as a [`watch`] channel: changed whenever a member joins, leaves, fails
    /// or changes its announcement.
    pub fn watch_members(&self) -> watch::Receiver<Vec<MemberInfo>> {
        self.members.clone()
    }

    /// Membership events from now on. Subscribe, then read [`Membership::members`] for the
    /// current set, so that nothing is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// Whether this node's view is synchronised, who is suspected, and whether the map must
    /// stay frozen.
    pub fn health(&self) -> MembershipHealth {
        self.health.borrow().clone()
    }

    /// [`Membership::health`] as a [`watch`] channel.
    pub fn watch_health(&self) -> watch::Receiver<MembershipHealth> {
        self.health.clone()
    }

    /// Leaves gracefully: stops renewing, deletes this node's key (the others remove it at
    /// once, as [`MembershipEvent::Left`]), and stops probing and answering probes.
    ///
    /// # Errors
    ///
    /// - [`ClusterError::Unavailable`] if the key could not be deleted within
    ///   [`LEAVE_PATIENCE`] (the connection may be failing over to another server meanwhile,
    ///   so failed attempts are retried); the key expires after the member TTL;
    /// - otherwise [`ClusterError::TaskPanicked`] if one of its tasks (announcer, probe
    ///   responder, view) had panicked; the key is deleted all the same.
    ///
    /// Everything is stopped anyway.
    pub async fn leave(mut self) -> Result<(), ClusterError> {
        let announcer = task::stop("member announcer", &mut self.announcer).await;
        let deadline = tokio::time::Instant::now() + LEAVE_PATIENCE;
        let deleted = loop {
            let id = self.local.borrow().id.clone();
            match self.store.members.delete(id.as_str()).await {
                Ok(()) => break Ok(()),
                // Deleting twice is harmless (a second delete marker), so retry freely.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    break Err(ClusterError::Unavailable {
                        message: format!("cannot delete member key {}", self.local.borrow().id),
                        source: Some(Box::new(e)),
                    });
                }
            }
        };
        let mut stopped = Ok(());
        for (name, handle) in &mut self.tasks {
            let result = task::stop(name, handle).await;
            stopped = stopped.and(result);
        }
        deleted.and(announcer).and(stopped)
    }
}

/// This node's own membership as its actor hosts check it (ADR 0009, "Reads"): its current
/// incarnation, and whether it is current — renewed within the member TTL less a tenth of it,
/// counted on the monotonic clock from when the last successful renewal was sent. The key's
/// TTL runs from the server's receipt of that renewal, later, so a node stops counting itself
/// a member before the others can see its key expire and declare it failed.
#[derive(Debug, Clone)]
pub struct OwnMembership {
    local: watch::Receiver<MemberInfo>,
    renewed: watch::Receiver<Option<Instant>>,
    valid_for: std::time::Duration,
}

impl OwnMembership {
    /// The check for `membership` with member TTL `member_ttl`.
    pub fn new(membership: &Membership, member_ttl: std::time::Duration) -> Self {
        Self {
            local: membership.watch_local(),
            renewed: membership.watch_renewed(),
            valid_for: member_ttl.saturating_sub(member_ttl / 10),
        }
    }

    /// A check over channels of one's own: `local` (this node's info, a new incarnation after
    /// a lapse) and `renewed` (when the last successful renewal was sent), current for
    /// `valid_for` after each renewal. For a membership that is not a [`Membership`], and for
    /// tests of what depends on it.
    pub fn from_parts(
        local: watch::Receiver<MemberInfo>,
        renewed: watch::Receiver<Option<Instant>>,
        valid_for: std::time::Duration,
    ) -> Self {
        Self {
            local,
            renewed,
            valid_for,
        }
    }

    /// This node's incarnation now.
    pub fn incarnation(&self) -> u64 {
        self.local.borrow().incarnation
    }

    /// This node's incarnation if its membership is current at `now`; `None` if it lapsed or
    /// the membership has stopped (the node left).
    pub fn current(&self, now: Instant) -> Option<u64> {
        // The membership stopped (left, or dropped): never current again.
        if self.renewed.has_changed().is_err() {
            return None;
        }
        let renewed = (*self.renewed.borrow())?;
        (now.saturating_duration_since(renewed) < self.valid_for).then(|| self.incarnation())
    }
}

/// How long [`Membership::leave`] keeps trying to delete this node's key.
pub const LEAVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Membership {
    fn drop(&mut self) {
        self.announcer.abort();
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

/// Subject on which `node` answers probes.
pub fn probe_subject(cluster_name: &str, node: &NodeId) -> String {
    format!("{}{node}", probe_prefix(cluster_name))
}

fn probe_prefix(cluster_name: &str) -> String {
    format!("{cluster_name}.cluster.probe.")
}
