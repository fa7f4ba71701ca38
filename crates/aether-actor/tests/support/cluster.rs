//! A hand-driven cluster for the routing and effect tests: one `nats-server`, one namespace,
//! nodes started on demand (separate connections in one process), and placements published
//! by the test, which plays the leader.

use aether_actor::ActorConfig;
use aether_actor::cluster::{ClusterActor, ClusterActors, Incarnate, Placement, RoutingConfig};
use aether_core::{ActorId, Namespace, NodeId, ShardCount};
use aether_nats::JetStreamEventStore;
use aether_testkit::nats_server::NatsServer;
use tokio::sync::watch;

use super::bank::{Answer, Bank, Query};

pub(crate) const SHARDS: u32 = 4;

pub(crate) fn shards() -> ShardCount {
    ShardCount::new(SHARDS).unwrap()
}

pub(crate) fn incarnate(name: &str) -> Incarnate {
    Incarnate {
        node: NodeId::new(name).unwrap(),
        incarnation: 1,
    }
}

pub(crate) fn never_gone(_: &Incarnate) -> bool {
    false
}

/// One namespace, one server, nodes started on demand.
pub(crate) struct Cluster {
    pub(crate) server: NatsServer,
    pub(crate) namespace: Namespace,
    pub(crate) placements: watch::Sender<Placement>,
}

impl Cluster {
    pub(crate) fn new(server: NatsServer) -> Self {
        let namespace =
            Namespace::new(format!("cluster-{}", uuid::Uuid::now_v7().simple())).unwrap();
        let (placements, _) = watch::channel(Placement::empty(shards()));
        Self {
            server,
            namespace,
            placements,
        }
    }

    pub(crate) async fn store(&self) -> JetStreamEventStore {
        JetStreamEventStore::connect(&self.server.url(), self.namespace.clone())
            .await
            .unwrap_or_else(|e| panic!("store at {}: {e}", self.server.url()))
    }

    /// A bank node following `placements` (the cluster's, unless given).
    pub(crate) async fn node(
        &self,
        me: &Incarnate,
        placements: Option<watch::Receiver<Placement>>,
    ) -> ClusterActors<Bank, JetStreamEventStore> {
        self.node_with(me, placements, RoutingConfig::default())
            .await
    }

    pub(crate) async fn node_with(
        &self,
        me: &Incarnate,
        placements: Option<watch::Receiver<Placement>>,
        routing: RoutingConfig,
    ) -> ClusterActors<Bank, JetStreamEventStore> {
        self.host(me, Bank, placements, routing).await
    }

    /// A node hosting `actor`'s type on its own connection and store handle.
    pub(crate) async fn host<A: ClusterActor>(
        &self,
        me: &Incarnate,
        actor: A,
        placements: Option<watch::Receiver<Placement>>,
        routing: RoutingConfig,
    ) -> ClusterActors<A, JetStreamEventStore> {
        self.host_configured(me, actor, placements, routing, ActorConfig::default())
            .await
    }

    /// [`host`](Self::host) with the runtime's configuration.
    pub(crate) async fn host_configured<A: ClusterActor>(
        &self,
        me: &Incarnate,
        actor: A,
        placements: Option<watch::Receiver<Placement>>,
        routing: RoutingConfig,
        config: ActorConfig,
    ) -> ClusterActors<A, JetStreamEventStore> {
        let store = self.store().await;
        let client = store.client().clone();
        ClusterActors::start(
            client,
            me.clone(),
            self.namespace.clone(),
            actor,
            store,
            shards(),
            config,
            placements.unwrap_or_else(|| self.placements.subscribe()),
            routing,
        )
        .await
        .expect("node starts")
    }

    /// Publishes the placement that gives shard `i` to `owners[i]` (moves written as moving).
    pub(crate) fn place(&self, owners: &[&Incarnate]) -> Placement {
        let owners: Vec<Option<Incarnate>> = owners.iter().map(|o| Some((*o).clone())).collect();
        let next = self.placements.borrow().next(&owners, never_gone);
        self.placements.send_replace(next.clone());
        next
    }
}

pub(crate) fn actor(i: usize) -> ActorId {
    ActorId::new(format!("acct-{i}")).unwrap()
}

pub(crate) fn start_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn balance(node: &ClusterActors<Bank, JetStreamEventStore>, id: &ActorId) -> u64 {
    match node.query(id, Query::Balance).await.expect("query") {
        Answer::Balance(b) => b,
        other => panic!("not a balance: {other:?}"),
    }
}
