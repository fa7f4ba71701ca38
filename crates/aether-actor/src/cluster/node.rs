//! [`ClusterActors`]: the actors of one type in one namespace on one node of a cluster — the
//! same `ask`, `tell` and `query` as [`Actors`], for any actor id from any node.
//!
//! A node hosts the actors of the shards it serves and answers requests for them on its own
//! subject ([`wire`]); it follows the placements it is given with its
//! [`Ownership`]: it serves a shard only under a settled placement naming it, drains a shard
//! taken away (no new requests, those in flight finish, its actors passivate) and reports it
//! released. Its store is an [`OwnedStore`], so every write carries its ownership epoch and
//! every activation fences the actor. Calls are routed to the owner in the newest placement
//! this node has seen; a call to an actor served here skips the network.

mod route;
mod serve;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aether_cluster::MapVersion;
use aether_core::{
    ActorId, FencedEventStore, Namespace, OwnerEpoch, ShardCount, ShardId, SnapshotStore,
    TraceContext,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::owned_store::{OwnedStore, ShardEpochs};
use aether_cluster::membership::OwnMembership;
use aether_cluster::release::{Holdings, ShardHolder};
use aether_cluster::shard_map_store::ShardMapStore;

use super::ownership::{Action, Decision, Incarnate, Ownership, Placement, ShardState};
use super::wire;
use crate::effect::{CallChain, EffectCall, Recipient};
use crate::runtime::stream_id;
use crate::{Actor, ActorConfig, ActorError, Actors, InvalidConfig};

/// How calls are routed between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// First pause before a retry (after `moved`, no responders, or no owner); doubles up to
    /// [`retry_max`](Self::retry_max). Default 10 ms.
    pub retry_min: Duration,
    /// Longest pause between retries. Default 500 ms.
    pub retry_max: Duration,
    /// How long a request for a shard moving to this node waits here for the placement that
    /// settles the move, before it is answered `moved` (the sender then retries). Default 2 s.
    pub wait_for_move: Duration,
    /// The longest deadline a request may carry (`Aether-Deadline-Ms`); longer ones are cut
    /// to it. Default 5 min.
    pub max_deadline: Duration,
    /// How long one attempt of a call across the network waits for its answer before it is
    /// sent again (same command id: applied at most once), within the call's deadline. A
    /// request lost with a NATS server that went down is retried after this, not at the
    /// deadline. Keep it above [`wait_for_move`](Self::wait_for_move). Default 5 s.
    pub attempt_timeout: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(500),
            wait_for_move: Duration::from_secs(2),
            max_deadline: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// Where a host runs: what `start` and `join` have in common.
struct Host {
    client: async_nats::Client,
    me: Incarnate,
    namespace: Namespace,
    shards: ShardCount,
    placements: watch::Receiver<Placement>,
    routing: RoutingConfig,
    own: Option<OwnMembership>,
    maps: Option<ShardMapStore>,
}

/// How long a graceful shutdown waits for the requests the node took to be answered (they
/// are refused or finish at once by then: the node serves nothing any more).
const ANSWERING_GRACE: Duration = Duration::from_secs(5);

/// How often a host checks its own membership without requests (a lapse drains its shards,
/// a renewal serves them again).
const MEMBERSHIP_CHECK: Duration = Duration::from_millis(100);

/// Why a request is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another node serves the shard (or will): answer `moved` with this placement version.
    Moved(MapVersion),
    /// This node's membership is not current.
    NotCurrent,
}

/// What one node knows about its shards.
struct NodeState {
    ownership: Ownership,
    /// Requests admitted and not finished, per shard.
    in_flight: Vec<usize>,
}

/// The shared part of a [`ClusterActors`].
pub(crate) struct Node<A: Actor, S> {
    pub(crate) local: Actors<A, OwnedStore<S>>,
    pub(crate) client: async_nats::Client,
    pub(crate) namespace: Namespace,
    /// `aether.actor.<namespace>.<actor type>.`: the request subjects less the node.
    subject_prefix: String,
    /// The request subject of each node called so far.
    subjects: Mutex<
        std::collections::HashMap<
            aether_core::NodeId,
            async_nats::Subject,
            foldhash::fast::RandomState,
        >,
    >,
    /// The plain headers of the last request sent, to be cloned for the next.
    headers: route::HeaderCache,
    pub(crate) me: Incarnate,
    pub(crate) epochs: Arc<ShardEpochs>,
    state: Mutex<NodeState>,
    /// Notified on every change of ownership and every finished request.
    changed: Notify,
    pub(crate) placements: watch::Receiver<Placement>,
    pub(crate) routing: RoutingConfig,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The task answering requests ([`serve::answer_requests`]), apart from `tasks`: a graceful
    /// shutdown lets it finish the requests it took instead of aborting them unanswered.
    answering: Mutex<Option<JoinHandle<()>>>,
    /// Tells the answering task to stop taking requests and finish those it took.
    stop_answering: tokio_util::sync::CancellationToken,
    /// This node's own membership, when it runs with a cluster manager: it serves only
    /// while that is current (ADR 0009, "Reads").
    own: Option<OwnMembership>,
    /// Where the newest placement is read after a lapse, before serving again.
    maps: Option<ShardMapStore>,
    /// One renewal at a time.
    renewing: tokio::sync::Mutex<()>,
    /// Set by `shutdown`: the node is handing everything off for good, and a membership that
    /// is still current must not make it serve again.
    leaving: std::sync::atomic::AtomicBool,
    /// `moved` answers given, retries of this node's calls, requests served and sent.
    pub(crate) route: crate::metrics::RouteCounters,
}

/// What a node's actor host counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Requests it answered `moved` (the shard is not served here, or is handed off).
    pub moved: u64,
    /// Attempts of its own calls that it retried (after `moved`, no responders, no owner, an
    /// owner not current).
    pub retries: u64,
    /// Loads and writes its store refused with `Fenced`: a newer owner had fenced the actor,
    /// or the shard was not served here. Zero in planned moves.
    pub fenced: u64,
}

/// The actors of type `A` in one namespace on one node of a cluster (see the
/// [module docs](self)).
///
/// `placements` is the newest placement this node has seen (the leader's, through the
/// cluster manager; tests may drive it by hand). Every node hosting `A` in the namespace must
/// be started with the same shard count and a store over the same data.
///
/// Cloning is cheap. [`shutdown`](Self::shutdown) stops answering and passivates every actor.
pub struct ClusterActors<A: Actor, S> {
    node: Arc<Node<A, S>>,
}

impl<A: Actor, S> std::fmt::Debug for ClusterActors<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterActors")
            .field("actor_type", &A::ACTOR_TYPE)
            .field("namespace", &self.node.namespace)
            .field("node", &self.node.me)
            .finish_non_exhaustive()
    }
}

impl<A: Actor, S> Clone for ClusterActors<A, S> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
        }
    }
}

/// What a cluster node needs of an actor type: its commands, queries, replies and rejections
/// travel between nodes as JSON; commands are also `Sync`, so that a call's future is `Send`
/// (it holds the command while it is routed).
pub trait ClusterActor:
    Actor<
        Command: DeserializeOwned + Sync,
        Rejection: Serialize + DeserializeOwned,
        Query: Serialize + DeserializeOwned + Clone,
        QueryReply: Serialize + DeserializeOwned,
    >
{
}

impl<A> ClusterActor for A where
    A: Actor<
            Command: DeserializeOwned + Sync,
            Rejection: Serialize + DeserializeOwned,
            Query: Serialize + DeserializeOwned + Clone,
            QueryReply: Serialize + DeserializeOwned,
        >
{
}

impl<A: Actor, S> crate::effect::sealed::Sealed for ClusterActors<A, S> {}

/// Effects of any actor ([`Decision::then_tell`](crate::Decision::then_tell),
/// [`then_ask`](crate::Decision::then_ask)) reach `A`'s actors wherever they are served.
impl<A, S> Recipient for ClusterActors<A, S>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    type Actor = A;

    fn effect_ask(
        &self,
        actor_id: ActorId,
        command: A::Command,
        call: EffectCall,
    ) -> futures::future::BoxFuture<'static, crate::AskResult<A>> {
        let node = self.node.clone();
        Box::pin(async move {
            let options = node.local.config().ask.clone().command_id(call.command_id);
            route::ask(&node, &actor_id, command, options, call.chain).await
        })
    }

    fn effect_tell(
        &self,
        actor_id: ActorId,
        command: A::Command,
        call: EffectCall,
    ) -> futures::future::BoxFuture<'static, Result<(), ActorError>> {
        let node = self.node.clone();
        Box::pin(async move {
            route::tell(&node, &actor_id, command, call.command_id)
                .await
                .map(|_| ())
        })
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The actor configuration is invalid.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// Subscribing to the node's request subject failed.
    #[error("could not subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What NATS said.
        reason: String,
    },
}

impl<A, S> ClusterActors<A, S>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    /// Starts hosting `A` in `namespace` on this node (`me`, this incarnation): subscribes to
    /// the node's request subject and follows `placements`.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] for an invalid `config`; [`StartError::Subscribe`] if NATS
    /// refused the subscription.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        client: async_nats::Client,
        me: Incarnate,
        namespace: Namespace,
        actor: A,
        store: S,
        shards: ShardCount,
        config: ActorConfig,
        placements: watch::Receiver<Placement>,
        routing: RoutingConfig,
    ) -> Result<Self, StartError> {
        let host = Host {
            client,
            me,
            namespace,
            shards,
            placements,
            routing,
            own: None,
            maps: None,
        };
        Self::start_host(host, None, actor, store, config).await
    }

    /// [`start`](Self::start) for a host that also checks a membership of its own (`own`):
    /// it serves only while that is current, and after a lapse serves again only what the
    /// newest placement of `placements` names its current incarnation for. What
    /// [`join`](Self::join) does with the cluster manager's membership; for a membership of
    /// another kind, and for tests.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_checked(
        client: async_nats::Client,
        me: Incarnate,
        namespace: Namespace,
        actor: A,
        store: S,
        shards: ShardCount,
        config: ActorConfig,
        placements: watch::Receiver<Placement>,
        routing: RoutingConfig,
        own: OwnMembership,
    ) -> Result<Self, StartError> {
        let host = Host {
            client,
            me,
            namespace,
            shards,
            placements,
            routing,
            own: Some(own),
            maps: None,
        };
        Self::start_host(host, None, actor, store, config).await
    }

    async fn start_host(
        host: Host,
        manager: Option<&aether_cluster::ClusterManager>,
        actor: A,
        store: S,
        config: ActorConfig,
    ) -> Result<Self, StartError> {
        let Host {
            client,
            me,
            namespace,
            shards,
            placements,
            routing,
            own,
            maps,
        } = host;
        let epochs = Arc::new(ShardEpochs::counted(shards, &namespace, A::ACTOR_TYPE));
        let local = Actors::new(
            namespace.clone(),
            actor,
            OwnedStore::new(store, epochs.clone()).with_writer(me.node.clone()),
            config,
        )?;
        let subject = wire::request_subject(&namespace, A::ACTOR_TYPE, &me.node);
        let subject_prefix = wire::request_subject_prefix(&namespace, A::ACTOR_TYPE);
        let subscription =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| StartError::Subscribe {
                    subject: subject.clone(),
                    reason: e.to_string(),
                })?;
        let route = crate::metrics::RouteCounters::new(&namespace, A::ACTOR_TYPE);
        let node = Arc::new(Node {
            local,
            client,
            namespace,
            subject_prefix,
            subjects: Mutex::new(std::collections::HashMap::default()),
            headers: route::HeaderCache::default(),
            state: Mutex::new(NodeState {
                ownership: Ownership::new(me.clone(), shards),
                in_flight: vec![0; shards.get() as usize],
            }),
            me,
            epochs,
            changed: Notify::new(),
            placements,
            routing,
            tasks: Mutex::new(Vec::new()),
            answering: Mutex::new(None),
            stop_answering: tokio_util::sync::CancellationToken::new(),
            own,
            maps,
            renewing: tokio::sync::Mutex::new(()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            route,
        });
        // Registered before it adopts any placement: the leader's release requests see every
        // host that may serve a shard.
        if let Some(manager) = manager {
            let holder: Arc<dyn ShardHolder> = node.clone();
            manager.register_holder(Arc::downgrade(&holder));
        }
        let follow = tokio::spawn(follow_placements(
            Arc::downgrade(&node),
            node.placements.clone(),
        ));
        node.local.set_router(Box::new(route::NodeRouter {
            node: Arc::downgrade(&node),
        }));
        let answer = tokio::spawn(serve::answer_requests(
            Arc::downgrade(&node),
            subscription,
            node.stop_answering.clone(),
        ));
        node.tasks().push(follow);
        *node
            .answering
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(answer);
        if node.own.is_some() {
            let watch = tokio::spawn(watch_membership(Arc::downgrade(&node)));
            node.tasks().push(watch);
        }
        Ok(Self { node })
    }

    /// Starts hosting `A` in `namespace` on the node of `manager`: follows the placements the
    /// cluster's leader writes, and reports to the leader what it holds, so that a shard moves
    /// to another node only once this node released it (ADR 0009). `client` carries the
    /// requests between nodes.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn join(
        manager: &aether_cluster::ClusterManager,
        client: async_nats::Client,
        namespace: Namespace,
        actor: A,
        store: S,
        config: ActorConfig,
        routing: RoutingConfig,
    ) -> Result<Self, StartError> {
        let me = Incarnate {
            node: manager.node_id().clone(),
            incarnation: manager.incarnation(),
        };
        let host = Host {
            client,
            me,
            namespace,
            shards: manager.map_store().shard_count(),
            placements: manager.watch_placement(),
            routing,
            own: manager.own_membership(),
            maps: Some(manager.map_store().clone()),
        };
        Self::start_host(host, Some(manager), actor, store, config).await
    }

    /// Sends `command` to `actor_id` wherever it is served and waits for its outcome, as
    /// [`Actors::ask`] does on one node, under the runtime's default [`AskOptions`]
    /// (`ActorConfig::ask`).
    ///
    /// # Errors
    ///
    /// Those of [`Actors::ask`], and across the cluster: [`ActorError::NoOwner`] (no node owns
    /// the actor's shard until the deadline), [`ActorError::Timeout`] (the deadline passed:
    /// retry with the same command id), [`ActorError::Remote`] (the owner answered an error).
    ///
    /// [`AskOptions`]: crate::AskOptions
    pub async fn ask(&self, actor_id: &ActorId, command: A::Command) -> crate::AskResult<A> {
        let options = self.node.local.config().ask.clone();
        route::ask(&self.node, actor_id, command, options, CallChain::default()).await
    }

    /// [`ask`](Self::ask) with per-call options (command id, timeout as the overall deadline).
    ///
    /// # Errors
    ///
    /// As [`ask`](Self::ask).
    pub async fn ask_with(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        options: crate::AskOptions,
    ) -> crate::AskResult<A> {
        route::ask(&self.node, actor_id, command, options, CallChain::default()).await
    }

    /// Delivers `command` to `actor_id` wherever it is served, without waiting for its
    /// outcome; returns its command id once the serving node has it in the actor's mailbox.
    ///
    /// As on one node, a tell is at most once: it is acknowledged when it is in the mailbox,
    /// not when it is stored, so a crash of the serving node after that loses it (and the
    /// loss is not counted by the sender). Use [`ask`](Self::ask) for commands that must not
    /// be lost.
    ///
    /// # Errors
    ///
    /// As [`Actors::tell`], and [`ActorError::NoOwner`], [`ActorError::Timeout`],
    /// [`ActorError::Remote`] as for [`ask`](Self::ask).
    pub async fn tell(
        &self,
        actor_id: &ActorId,
        command: A::Command,
    ) -> Result<crate::CommandId, ActorError> {
        route::tell(&self.node, actor_id, command, crate::CommandId::generate()).await
    }

    /// Asks `actor_id` a read-only question wherever it is served.
    ///
    /// # Errors
    ///
    /// As [`Actors::query`], and [`ActorError::NoOwner`], [`ActorError::Timeout`],
    /// [`ActorError::Remote`] as for [`ask`](Self::ask).
    pub async fn query(
        &self,
        actor_id: &ActorId,
        query: A::Query,
    ) -> Result<A::QueryReply, ActorError> {
        route::query(&self.node, actor_id, query).await
    }

    /// Whether this node has released `shard` for placement `version` (what the leader asks
    /// before it settles a move away from this node).
    pub fn has_released(&self, shard: ShardId, version: MapVersion) -> bool {
        self.node.lock().ownership.has_released(shard, version)
    }

    /// What this node counted (see [`ClusterStats`]).
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            moved: self.node.route.moved.get(),
            retries: self.node.route.retries.get(),
            fenced: self.node.epochs.fenced(),
        }
    }

    /// The placement version this node has adopted.
    pub fn map_version(&self) -> MapVersion {
        self.node.lock().ownership.version()
    }

    /// The local runtime (the actors of the shards served here).
    pub fn local(&self) -> &Actors<A, OwnedStore<S>> {
        &self.node.local
    }

    /// The shard of `actor_id`.
    ///
    /// # Errors
    ///
    /// [`ActorError::InvalidActorId`] if the actor id with the type prefix is not a valid id.
    pub fn shard_of(&self, actor_id: &ActorId) -> Result<ShardId, ActorError> {
        self.node.epochs.shard_of_actor::<A>(actor_id)
    }

    /// Stops at once, as a crash would: answers nothing more, follows no placement, hands
    /// nothing off (the leader moves this node's shards once its membership is gone), and
    /// drops every active actor without draining its mailbox. For tests and benchmarks of
    /// failures; [`shutdown`](Self::shutdown) is the graceful way.
    pub async fn abort(&self) {
        for task in self.node.tasks().drain(..) {
            task.abort();
        }
        if let Some(answering) = self.node.take_answering() {
            answering.abort();
        }
        self.node.epochs.clear();
        self.node.local.shutdown().await;
    }

    /// Leaves gracefully: serves nothing more (requests get `unavailable`, and senders retry
    /// until the placement moves the shards), lets the requests in flight finish, passivates
    /// every actor and waits until every shard is released; then stops answering and
    /// following placements. Call it before the node's membership leaves
    /// ([`ClusterManager::shutdown`](aether_cluster::ClusterManager::shutdown)), so that no
    /// shard is served here once the leader gives it to another node.
    pub async fn shutdown(&self) {
        let node = &self.node;
        node.leaving.store(true, Ordering::Release);
        let actions = node.update(Ownership::lapse);
        node.apply(actions);
        loop {
            let changed = node.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if node.holdings().held.is_empty() {
                break;
            }
            changed.await;
        }
        // Stops taking requests (later ones find no responder and go elsewhere at once), and
        // answers those it took: an abort would leave their senders waiting for nothing.
        node.stop_answering.cancel();
        if let Some(answering) = node.take_answering() {
            let abort = answering.abort_handle();
            if tokio::time::timeout(ANSWERING_GRACE, answering)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for task in node.tasks().drain(..) {
            task.abort();
        }
        node.local.shutdown().await;
    }
}

impl<A: Actor, S> Node<A, S> {
    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // Nothing panics under this lock; a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_answering(&self) -> Option<JoinHandle<()>> {
        self.answering
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The subject of `node`'s requests for this actor type and namespace (built once per
    /// node, then shared).
    pub(crate) fn request_subject(&self, node: &aether_core::NodeId) -> async_nats::Subject {
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(subject) = subjects.get(node) {
            return subject.clone();
        }
        let subject = async_nats::Subject::from(format!(
            "{}{}",
            self.subject_prefix,
            aether_nats::naming::encode_token(node.as_str())
        ));
        subjects.insert(node.clone(), subject.clone());
        subject
    }

    /// The placement version this node has adopted.
    pub(crate) fn version(&self) -> MapVersion {
        self.lock().ownership.version()
    }
}

impl<A: Actor, S: FencedEventStore + SnapshotStore + Clone + 'static> Node<A, S> {
    /// Admits a request for `shard` from a sender at placement `sender_version`: waits while
    /// the shard moves here or this node catches up (bounded by `deadline` and
    /// [`RoutingConfig::wait_for_move`]), then either counts it in flight or refuses it.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        shard: ShardId,
        sender_version: MapVersion,
        deadline: Instant,
    ) -> Result<InFlight<A, S>, Refusal> {
        self.check_membership().await;
        // Most requests are decided at once: no waiter is registered for them, and the wait
        // (boxed) does not size the future of every request.
        if let Some(decided) = self.try_admit(shard, sender_version) {
            return decided;
        }
        Box::pin(self.admit_when_changed(shard, sender_version, deadline)).await
    }

    /// [`admit`](Self::admit) for a request that must wait: decides it again whenever the
    /// ownership changes, until the wait's bound.
    async fn admit_when_changed(
        self: &Arc<Self>,
        shard: ShardId,
        sender_version: MapVersion,
        deadline: Instant,
    ) -> Result<InFlight<A, S>, Refusal> {
        let mut wait_until = None;
        loop {
            if let Some(decided) = self.try_admit(shard, sender_version) {
                return decided;
            }
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Again, now that no change can be missed.
            if let Some(decided) = self.try_admit(shard, sender_version) {
                return decided;
            }
            let until = *wait_until.get_or_insert_with(|| {
                deadline.min(crate::runtime::deadline_after(self.routing.wait_for_move))
            });
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return Err(Refusal::Moved(self.version()));
            }
        }
    }

    /// Decides a request at once: admitted (counted in flight), refused, or `None` to wait
    /// (the shard moves here, or the sender knows a newer placement).
    fn try_admit(
        self: &Arc<Self>,
        shard: ShardId,
        sender_version: MapVersion,
    ) -> Option<Result<InFlight<A, S>, Refusal>> {
        let mut state = self.lock();
        match state.ownership.decide(shard, sender_version) {
            Decision::Accept { .. } => {
                if let Some(count) = state.in_flight.get_mut(shard.get() as usize) {
                    *count += 1;
                }
                Some(Ok(InFlight {
                    node: self.clone(),
                    shard,
                }))
            }
            Decision::Moved { version } => Some(Err(Refusal::Moved(version))),
            Decision::NotCurrent => Some(Err(Refusal::NotCurrent)),
            Decision::Wait | Decision::CatchUp { .. } => None,
        }
    }

    /// Lapses when this node's membership is no longer current (it then serves nothing);
    /// once it is current again, reads the newest placement and serves what that names its
    /// incarnation for — a new one after a lapse long enough for the others to notice.
    pub(crate) async fn check_membership(self: &Arc<Self>) {
        let Some(own) = &self.own else { return };
        if self.leaving.load(Ordering::Acquire) {
            return;
        }
        let Some(incarnation) = own.current(Instant::now()) else {
            let actions = self.update(|ownership| {
                if ownership.is_current() {
                    tracing::warn!("membership lapsed: serving nothing until it is renewed");
                    ownership.lapse()
                } else {
                    Vec::new()
                }
            });
            self.apply(actions);
            return;
        };
        let behind = |state: &NodeState| {
            !state.ownership.is_current() || state.ownership.me().incarnation != incarnation
        };
        if !behind(&self.lock()) {
            return;
        }
        // Boxed: the catch-up's future is large (a read of the placement), and every request
        // awaits this one; the common case above stays small.
        Box::pin(self.catch_up(incarnation)).await;
    }

    /// [`check_membership`](Self::check_membership) once this node's membership is current
    /// under `incarnation` but its ownership is not: lapses what it served under an earlier
    /// incarnation, reads the newest placement and serves what it names.
    async fn catch_up(self: &Arc<Self>, incarnation: u64) {
        let behind = |state: &NodeState| {
            !state.ownership.is_current() || state.ownership.me().incarnation != incarnation
        };
        let _one = self.renewing.lock().await;
        if !behind(&self.lock()) || self.leaving.load(Ordering::Acquire) {
            return;
        }
        // A new incarnation: the earlier one is gone for the leader, so serve nothing under it,
        // whatever happens to the read below.
        let actions = self.update(|ownership| {
            if ownership.is_current() {
                ownership.lapse()
            } else {
                Vec::new()
            }
        });
        self.apply(actions);
        // A node that was paused may hold a placement from long ago: read the newest one
        // (from the shard map's stream leader; without a map store, the newest seen).
        let placement = match &self.maps {
            Some(maps) => match maps.load_latest().await {
                Ok(Some(stored)) => stored.placement(),
                Ok(None) => Placement::empty(self.epochs.shard_count()),
                Err(error) => {
                    tracing::debug!(%error, "cannot read the placement after a lapse; still not serving");
                    return;
                }
            },
            None => self.placements.borrow().clone(),
        };
        let me = Incarnate {
            node: self.me.node.clone(),
            incarnation,
        };
        tracing::info!(node = %me.node, incarnation, version = %placement.version, "membership current again");
        let actions = self.update(|ownership| {
            if self.leaving.load(Ordering::Acquire) {
                Vec::new()
            } else {
                ownership.renewed(me, &placement)
            }
        });
        self.apply(actions);
    }

    /// A newer owner fenced `actor_id` (or its shard is not served here any more): its state
    /// here is of no use; passivate it, in the background.
    pub(crate) fn passivate_fenced(self: &Arc<Self>, actor_id: &ActorId) {
        let (node, actor_id) = (self.clone(), actor_id.clone());
        tokio::spawn(async move {
            node.local.passivate(&actor_id).await;
        });
    }

    /// Changes the ownership with `change` under the lock, and publishes the epochs of the
    /// shards it starts serving before the lock is released: a request admitted right after
    /// must find its shard's epoch in the store.
    fn update(&self, change: impl FnOnce(&mut Ownership) -> Vec<Action>) -> Vec<Action> {
        let mut state = self.lock();
        let actions = change(&mut state.ownership);
        for action in &actions {
            if let Action::Serve { shard, epoch } = action {
                self.epochs.set(*shard, Some(OwnerEpoch::new(epoch.get())));
            }
        }
        actions
    }

    /// Does the rest of what the ownership answered (the epochs of served shards are set by
    /// [`update`](Self::update)): drains the shards taken away.
    fn apply(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Serve { shard, epoch } => {
                    tracing::debug!(shard = shard.get(), epoch = epoch.get(), node = %self.me.node, "serving shard");
                }
                Action::Drain { shard } => {
                    tracing::debug!(shard = shard.get(), node = %self.me.node, "draining shard");
                    tokio::spawn(drain(self.clone(), shard));
                }
            }
        }
        self.changed.notify_waiters();
    }
}

impl<A: Actor, S: Send + Sync> ShardHolder for Node<A, S> {
    fn holdings(&self) -> Holdings {
        let state = self.lock();
        let held = (0..state.in_flight.len())
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| state.ownership.state(ShardId::new(i)) != ShardState::NotOwned)
            .collect();
        Holdings {
            adopted: state.ownership.version(),
            held,
        }
    }
}

/// A request admitted for a shard: counted in flight until dropped.
pub(crate) struct InFlight<A: Actor, S> {
    node: Arc<Node<A, S>>,
    shard: ShardId,
}

impl<A: Actor, S> Drop for InFlight<A, S> {
    fn drop(&mut self) {
        let drained = {
            let mut state = self.node.lock();
            let serving = matches!(
                state.ownership.state(self.shard),
                ShardState::Serving { .. }
            );
            match state.in_flight.get_mut(self.shard.get() as usize) {
                Some(count) => {
                    *count = count.saturating_sub(1);
                    *count == 0 && !serving
                }
                None => false,
            }
        };
        // Only a drain waits for the last request of a shard it releases.
        if drained {
            self.node.changed.notify_waiters();
        }
    }
}

/// Adopts every placement `placements` shows, while the node lives.
async fn follow_placements<A, S>(
    node: std::sync::Weak<Node<A, S>>,
    mut placements: watch::Receiver<Placement>,
) where
    A: Actor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    loop {
        {
            let Some(node) = node.upgrade() else { return };
            let placement = placements.borrow_and_update().clone();
            let actions = node.update(|ownership| ownership.adopt(&placement));
            node.apply(actions);
        }
        if placements.changed().await.is_err() {
            return;
        }
    }
}

/// Checks this node's membership every [`MEMBERSHIP_CHECK`], while the node lives.
async fn watch_membership<A, S>(node: std::sync::Weak<Node<A, S>>)
where
    A: Actor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let mut tick = tokio::time::interval(MEMBERSHIP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.check_membership().await;
    }
}

/// Releases `shard`: waits for the requests in flight, passivates its actors, takes its
/// epoch out of the store, and reports it drained.
async fn drain<A, S>(node: Arc<Node<A, S>>, shard: ShardId)
where
    A: Actor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    loop {
        let changed = node.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let busy = node
            .lock()
            .in_flight
            .get(shard.get() as usize)
            .is_some_and(|&n| n > 0);
        if !busy {
            break;
        }
        changed.await;
    }
    let epochs = node.epochs.clone();
    // Each saves a snapshot as it stops: its next owner replays only what follows it.
    let passivated = node
        .local
        .hand_off_where(|id| {
            stream_id::<A>(id).is_ok_and(|stream| epochs.shard_of(&stream) == shard)
        })
        .await;
    node.epochs.set(shard, None);
    // An actor of the shard activated during the first sweep (an effect of another actor, a
    // reminder) was fenced with the old epoch; from now on no activation succeeds, so this
    // second sweep is the last.
    let late = node
        .local
        .passivate_where(|id| {
            stream_id::<A>(id).is_ok_and(|stream| epochs.shard_of(&stream) == shard)
        })
        .await;
    let actions = node.update(|ownership| ownership.drained(shard));
    tracing::debug!(shard = shard.get(), passivated = passivated + late, node = %node.me.node, "shard released");
    node.apply(actions);
}

/// The trace context of a call's or a request's `span`, recorded in its `trace_id` and
/// `span_id` fields: a child of `parent` when the caller sent one; otherwise a new trace, but
/// only when the span is recorded. With no subscriber interested and no caller context
/// there is nothing to continue and nobody to read it, so no context is made, sent or
/// stored in events (what OpenTelemetry does for a span that is not recording).
fn span_context(parent: Option<TraceContext>, span: &tracing::Span) -> Option<TraceContext> {
    let own = match parent {
        Some(parent) => parent.child(),
        None if !span.is_disabled() => TraceContext::new_root(),
        None => return None,
    };
    span.record("trace_id", tracing::field::display(own.trace_id_hex()));
    span.record("span_id", tracing::field::display(own.span_id_hex()));
    Some(own)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn span() -> tracing::Span {
        tracing::info_span!(
            "aether.actor.call",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        )
    }

    #[test]
    fn a_span_nobody_records_makes_no_trace_but_continues_a_callers() {
        // A disabled span, what `span()` makes without a subscriber. Not `span()` itself: a
        // callsite's interest is global, and another test's scoped subscriber can enable it
        // on this thread too (the span then goes to the no-op dispatcher, not disabled).
        let disabled = tracing::Span::none;
        assert_eq!(span_context(None, &disabled()), None);
        let caller = TraceContext::new_root();
        let own = span_context(Some(caller), &disabled()).expect("the caller's trace continues");
        assert_eq!(own.trace_id_hex(), caller.trace_id_hex());
        assert_ne!(own.span_id_hex(), caller.span_id_hex());
    }

    #[test]
    fn a_recorded_span_without_a_caller_starts_a_trace() {
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO);
        let own = tracing::subscriber::with_default(subscriber, || span_context(None, &span()));
        assert!(own.is_some(), "a recorded span gets a new trace");
    }
}
