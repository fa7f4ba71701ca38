//! Membership and failure detection against real `nats-server` processes, every node with its
//! own connection (as separate processes would have), with test timings (heartbeat 500 ms,
//! member TTL 2 s, probe timeout 500 ms, stabilisation delay 1 s).
//!
//! - 3 nodes converge on the same member set; a graceful leave is seen at once (far under the
//!   TTL); a crashed node is suspected, then failed within member TTL + probe timeout + slack,
//!   without freezing (1 of 3); it rejoins with a new incarnation and everyone agrees.
//! - A member whose key expires but which still answers probes is kept (suspected, then
//!   recovered) and re-probed; once it stops answering it is failed. The test plays that member
//!   itself, through the wire protocol (its key, then only a probe responder).
//! - nats-server killed and restarted, once faster than the member TTL and once slower: nobody
//!   is declared failed because of the outage.
//! - 3-server NATS cluster, the server of one node killed: that node, cut off, declares
//!   nobody failed; the others fail it (and not each other); after its server returns it
//!   rejoins and everyone agrees.
//! - 4 nodes, 2 crash at once: the survivors freeze until membership is quiet again.
//! - Bad input (huge address, control characters, impossible timings, a node id already in
//!   use): a typed error, and nothing is written.
//!
//! Measured times are printed with `--nocapture`. Needs `nats-server` ≥ 2.12; fails (never
//! skips) with the install command when it is missing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_cluster::kv::{Bucket, ClusterStore, Expect};
use aether_cluster::membership::{
    MemberInfo, Membership, MembershipEvent, MembershipHealth, probe_subject,
};
use aether_cluster::{ClusterConfig, ClusterError, NodeMetadata};
use aether_core::NodeId;
use aether_testkit::nats_server::{NatsCluster, NatsServer, READY_TIMEOUT};
use async_nats::{Client, ConnectOptions};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const HEARTBEAT: Duration = Duration::from_millis(500);
const MEMBER_TTL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const STABILIZATION: Duration = Duration::from_secs(1);
/// Slack on top of a protocol bound, for a slow shared machine (the server's TTL granularity
/// alone is ~250 ms, and markers reach watchers after that).
const SLACK: Duration = Duration::from_millis(1500);
/// Bound for nodes to agree after a change pushed through the bucket (measured: tens of ms).
const CONVERGE: Duration = Duration::from_secs(2);
/// Longest wait for anything the test itself does (connect, start, leave).
const OP_TIMEOUT: Duration = Duration::from_secs(15);

fn cluster_name(test: &str) -> String {
    format!(
        "mt-{test}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

fn config(cluster: &str, node: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(NodeId::new(node).expect("node id"));
    config.cluster_name = cluster.to_owned();
    config.heartbeat = HEARTBEAT;
    config.member_ttl = MEMBER_TTL;
    config.probe_timeout = PROBE_TIMEOUT;
    config.stabilization_delay = STABILIZATION;
    config.lease_ttl = Duration::from_secs(3);
    config.request_timeout = Duration::from_secs(2);
    config.metadata.address = format!("{node}.test:7000");
    config.metadata.app_version = "test".to_owned();
    config
}

/// When set, a client does not try to reconnect before this instant.
type Hold = Arc<Mutex<Option<std::time::Instant>>>;

/// A connection that retries every 100 ms (the default backs off up to 4 s), or not before
/// `hold`.
async fn connect(url: &str, only_this_server: bool, hold: Option<Hold>) -> Client {
    let mut options = ConnectOptions::new().reconnect_delay_callback(move |_| {
        let every = Duration::from_millis(100);
        let until = hold.as_ref().and_then(|h| *h.lock().unwrap());
        until.map_or(every, |until| {
            until
                .saturating_duration_since(std::time::Instant::now())
                .max(every)
        })
    });
    if only_this_server {
        options = options.ignore_discovered_servers();
    }
    tokio::time::timeout(OP_TIMEOUT, options.connect(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

type Log<T> = Arc<Mutex<Vec<(Instant, T)>>>;

/// One node: its own connection, its membership, and everything it reported.
struct TestNode {
    name: String,
    client: Client,
    membership: Option<Membership>,
    events: Log<MembershipEvent>,
    health: Log<MembershipHealth>,
    recorders: Vec<JoinHandle<()>>,
}

impl TestNode {
    async fn start(url: &str, config: &ClusterConfig, only_this_server: bool) -> Self {
        Self::start_held(url, config, only_this_server, None).await
    }

    async fn start_held(
        url: &str,
        config: &ClusterConfig,
        only_this_server: bool,
        hold: Option<Hold>,
    ) -> Self {
        let name = config.node_id.to_string();
        let client = connect(url, only_this_server, hold).await;
        let store = tokio::time::timeout(OP_TIMEOUT, ClusterStore::open(client.clone(), config))
            .await
            .unwrap_or_else(|_| panic!("{name}: opening the store timed out"))
            .unwrap_or_else(|e| panic!("{name}: open store: {e}"));
        let membership = tokio::time::timeout(OP_TIMEOUT, Membership::start(&store, config))
            .await
            .unwrap_or_else(|_| panic!("{name}: starting membership timed out"))
            .unwrap_or_else(|e| panic!("{name}: start membership: {e}"));
        let events: Log<MembershipEvent> = Arc::default();
        let health: Log<MembershipHealth> = Arc::default();
        let mut receiver = membership.subscribe();
        let log = events.clone();
        let events_task = tokio::spawn(async move {
            while let Ok(event) = receiver.recv().await {
                log.lock().unwrap().push((Instant::now(), event));
            }
        });
        let mut watch = membership.watch_health();
        let log = health.clone();
        let health_task = tokio::spawn(async move {
            loop {
                let current = watch.borrow_and_update().clone();
                log.lock().unwrap().push((Instant::now(), current));
                if watch.changed().await.is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            client,
            membership: Some(membership),
            events,
            health,
            recorders: vec![events_task, health_task],
        }
    }

    fn membership(&self) -> &Membership {
        self.membership
            .as_ref()
            .unwrap_or_else(|| panic!("{} is stopped", self.name))
    }

    fn member_ids(&self) -> Vec<String> {
        self.membership()
            .members()
            .iter()
            .map(|m| m.id.to_string())
            .collect()
    }

    fn events(&self) -> Vec<(Instant, MembershipEvent)> {
        self.events.lock().unwrap().clone()
    }

    /// When this node first reported an event matching `matches`.
    fn first(&self, matches: impl Fn(&MembershipEvent) -> bool) -> Option<Instant> {
        self.events()
            .into_iter()
            .find(|(_, e)| matches(e))
            .map(|(at, _)| at)
    }

    fn count(&self, matches: impl Fn(&MembershipEvent) -> bool) -> usize {
        self.events().iter().filter(|(_, e)| matches(e)).count()
    }

    fn was_frozen(&self) -> bool {
        self.health.lock().unwrap().iter().any(|(_, h)| h.frozen)
    }

    /// Dies without leaving: membership dropped, connection closed.
    async fn crash(&mut self) {
        drop(self.membership.take());
        let _ = tokio::time::timeout(OP_TIMEOUT, self.client.drain()).await;
    }

    async fn leave(&mut self) {
        let membership = self.membership.take().expect("running");
        tokio::time::timeout(OP_TIMEOUT, membership.leave())
            .await
            .unwrap_or_else(|_| panic!("{}: leave timed out", self.name))
            .unwrap_or_else(|e| panic!("{}: leave: {e}", self.name));
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for task in &self.recorders {
            task.abort();
        }
    }
}

fn is_failed(id: &str) -> impl Fn(&MembershipEvent) -> bool + '_ {
    move |e| matches!(e, MembershipEvent::Failed(n) if n == id)
}

fn is_suspected(id: &str) -> impl Fn(&MembershipEvent) -> bool + '_ {
    move |e| matches!(e, MembershipEvent::Suspected(n) if n == id)
}

fn is_recovered(id: &str) -> impl Fn(&MembershipEvent) -> bool + '_ {
    move |e| matches!(e, MembershipEvent::Recovered(n) if n == id)
}

fn any_failed(e: &MembershipEvent) -> bool {
    matches!(e, MembershipEvent::Failed(_))
}

/// Polls `condition` every 20 ms; panics with `what` if it does not hold within `bound`.
/// Returns how long it took.
async fn wait_for(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if condition() {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every running node reports exactly `expected` (ids) and identical member
/// infos; returns the time taken.
async fn wait_agreement(nodes: &[&TestNode], expected: &[&str], bound: Duration) -> Duration {
    let what = format!(
        "nodes {:?} agree on members {expected:?}",
        nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
    );
    wait_for(&what, bound, || {
        let first = nodes[0].membership().members();
        nodes
            .iter()
            .all(|n| n.member_ids() == expected && n.membership().members() == first)
    })
    .await
}

fn members_of(node: &TestNode) -> Vec<MemberInfo> {
    node.membership().members()
}

async fn start_nodes(url: &str, cluster: &str, names: &[&str]) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(TestNode::start(url, &config(cluster, name), false).await);
    }
    nodes
}

fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_converge_leave_fail_and_rejoin() {
    let server = server();
    let cluster = cluster_name("life");
    let mut nodes = start_nodes(&server.url(), &cluster, &["a", "b"]).await;
    let last_started = Instant::now();
    nodes.push(TestNode::start(&server.url(), &config(&cluster, "c"), false).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "c"], CONVERGE).await;
    println!(
        "3 nodes: agreed {:?} after the third began to start",
        last_started.elapsed()
    );
    let c_info = nodes[2].membership().local().clone();
    assert_eq!(
        members_of(&nodes[0])[2],
        c_info,
        "a sees c's own announcement"
    );

    // Graceful leave: removed at once on the others, far under the member TTL.
    let left_at = Instant::now();
    nodes[2].leave().await;
    wait_agreement(&[&nodes[0], &nodes[1]], &["a", "b"], MEMBER_TTL / 2).await;
    println!(
        "graceful leave: removed on both others {:?} after leave() began (member TTL \
         {MEMBER_TTL:?})",
        left_at.elapsed()
    );
    for node in &nodes[..2] {
        assert_eq!(
            node.count(|e| matches!(e, MembershipEvent::Left(n) if n == "c")),
            1,
            "{}: {:?}",
            node.name,
            node.events()
        );
    }

    // c comes back as a new process (new incarnation): joined again everywhere.
    let restarted = Instant::now();
    nodes[2] = TestNode::start(&server.url(), &config(&cluster, "c"), false).await;
    let c2 = nodes[2].membership().local().clone();
    assert_ne!(c2.incarnation, c_info.incarnation);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "c"], CONVERGE).await;
    println!(
        "rejoin: agreed {:?} after c began to start",
        restarted.elapsed()
    );
    for node in &nodes[..2] {
        assert!(
            node.first(|e| matches!(e, MembershipEvent::Joined(i) if *i == c2))
                .is_some(),
            "{}: {:?}",
            node.name,
            node.events()
        );
    }

    // c crashes: suspected, then failed after its key's TTL plus one probe.
    let crashed_at = Instant::now();
    nodes[2].crash().await;
    let bound = MEMBER_TTL + PROBE_TIMEOUT + SLACK;
    wait_for("a and b fail c", bound, || {
        nodes[..2].iter().all(|n| n.first(is_failed("c")).is_some())
    })
    .await;
    for node in &nodes[..2] {
        let suspected = node.first(is_suspected("c")).expect("suspected first");
        let failed = node.first(is_failed("c")).expect("failed");
        println!(
            "{}: crash of c → suspected after {:?}, failed after {:?} (bound {bound:?})",
            node.name,
            suspected - crashed_at,
            failed - crashed_at
        );
        assert!(suspected <= failed, "suspected before failed");
        assert!(
            suspected - crashed_at >= MEMBER_TTL - HEARTBEAT,
            "{}: suspected c after {:?}, before its key could expire",
            node.name,
            suspected - crashed_at
        );
        assert!(
            !node.was_frozen(),
            "{}: one failure of three must not freeze",
            node.name
        );
        assert_eq!(node.count(any_failed), 1, "{:?}", node.events());
    }
    wait_agreement(&[&nodes[0], &nodes[1]], &["a", "b"], CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_member_that_answers_probes_is_kept() {
    let server = server();
    let cluster = cluster_name("zombie");
    let nodes = start_nodes(&server.url(), &cluster, &["a", "b"]).await;

    // The test plays node "z" on its own connection: it announces, then only answers probes.
    let z_config = config(&cluster, "z");
    let z_client = connect(&server.url(), false, None).await;
    let z_store = ClusterStore::open(z_client.clone(), &z_config)
        .await
        .expect("z store");
    let z = MemberInfo::new(z_config.node_id.clone(), z_config.metadata.clone()).expect("z");
    let z_json = Bytes::from(serde_json::to_vec(&z).expect("json"));
    let mut probes = z_client
        .subscribe(probe_subject(&cluster, &z.id))
        .await
        .expect("subscribe");
    let answering = z_client.clone();
    let reply = z_json.clone();
    let responder = tokio::spawn(async move {
        while let Some(probe) = probes.next().await {
            if let Some(to) = probe.reply {
                answering.publish(to, reply.clone()).await.expect("answer");
            }
        }
    });
    let mut last_put = Instant::now();
    for _ in 0..3 {
        last_put = Instant::now();
        z_store
            .put_with_ttl(
                Bucket::Members,
                "z",
                z_json.clone(),
                Expect::Anything,
                MEMBER_TTL,
            )
            .await
            .expect("announce z");
        tokio::time::sleep(HEARTBEAT).await;
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "z"], CONVERGE).await;

    // z stops announcing: its key expires; the probe is answered, so z stays.
    let bound = MEMBER_TTL + PROBE_TIMEOUT + SLACK;
    wait_for("a and b recover z", bound, || {
        nodes.iter().all(|n| n.first(is_recovered("z")).is_some())
    })
    .await;
    for node in &nodes {
        let suspected = node.first(is_suspected("z")).expect("suspected");
        let recovered = node.first(is_recovered("z")).expect("recovered");
        println!(
            "{}: z's key expired → suspected {:?} after its last put, recovered by probe {:?} \
             later",
            node.name,
            suspected - last_put,
            recovered - suspected
        );
        assert!(suspected - last_put >= MEMBER_TTL, "not before the TTL");
    }
    // Kept through two more member TTLs (re-probed, still answering).
    tokio::time::sleep(MEMBER_TTL * 2).await;
    for node in &nodes {
        assert_eq!(node.member_ids(), ["a", "b", "z"], "{}", node.name);
        assert_eq!(node.count(any_failed), 0, "{:?}", node.events());
    }

    // z stops answering too: failed at its next re-probe.
    let silenced = Instant::now();
    responder.abort();
    let _ = responder.await;
    z_client.drain().await.expect("drain z");
    let bound = MEMBER_TTL + 2 * PROBE_TIMEOUT + SLACK;
    let took = wait_for("a and b fail z", bound, || {
        nodes.iter().all(|n| n.first(is_failed("z")).is_some())
    })
    .await;
    println!("z silenced: failed on both after {took:?} (bound {bound:?})");
    for node in &nodes {
        assert!(node.first(is_failed("z")).expect("failed") > silenced);
    }
    wait_agreement(&refs, &["a", "b"], CONVERGE).await;
}

/// Kills the server under three nodes for `outage`, calls `before_restart`, restarts it, and
/// checks that nobody is failed. Returns when it was killed and how long it was down.
async fn outage_fails_nobody(
    server: &mut NatsServer,
    nodes: &[TestNode],
    outage: Duration,
    before_restart: impl FnOnce(),
) -> (Instant, Duration) {
    let killed_at = Instant::now();
    server.kill();
    tokio::time::sleep(outage).await;
    before_restart();
    tokio::task::block_in_place(|| server.restart()).unwrap_or_else(|e| panic!("restart: {e}"));
    let down_for = killed_at.elapsed();
    let restarted_at = Instant::now();
    let refs: Vec<&TestNode> = nodes.iter().collect();
    // Everyone back, synced, nobody suspected (c may be held back for a while).
    let bound = MEMBER_TTL * 3 + SLACK;
    wait_for("all synced, none suspected, all agree", bound, || {
        let first = members_of(&nodes[0]);
        first.len() == 3
            && nodes.iter().all(|n| {
                let health = n.membership().health();
                health.synced && health.suspected.is_empty() && n.membership().members() == first
            })
    })
    .await;
    wait_agreement(&refs, &["a", "b", "c"], CONVERGE).await;
    println!(
        "server down {down_for:?} (member TTL {MEMBER_TTL:?}): all settled {:?} after the \
         restart",
        restarted_at.elapsed()
    );
    for node in nodes {
        let after: Vec<MembershipEvent> = node
            .events()
            .into_iter()
            .filter(|(at, _)| *at >= killed_at)
            .map(|(_, e)| e)
            .collect();
        println!("  {} saw {after:?}", node.name);
        assert!(
            !after
                .iter()
                .any(|e| matches!(e, MembershipEvent::Failed(_) | MembershipEvent::Left(_))),
            "{}: the outage itself removed a member: {after:?}",
            node.name
        );
    }
    (killed_at, down_for)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restarts_fail_nobody() {
    let mut server = server();
    let cluster = cluster_name("restart");
    let url = server.url();
    let hold: Hold = Arc::default();
    let mut nodes = start_nodes(&url, &cluster, &["a", "b"]).await;
    nodes.push(TestNode::start_held(&url, &config(&cluster, "c"), false, Some(hold.clone())).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "c"], CONVERGE).await;

    let incarnations = |nodes: &[TestNode]| -> Vec<u64> {
        nodes
            .iter()
            .map(|n| n.membership().local().incarnation)
            .collect()
    };
    let first = incarnations(&nodes);
    // Killed and restarted at once: shorter than the member TTL.
    let (_, down_for) = outage_fails_nobody(&mut server, &nodes, Duration::ZERO, || {}).await;
    assert!(
        down_for < MEMBER_TTL,
        "the quick restart took {down_for:?}, not shorter than the member TTL"
    );
    assert_eq!(
        incarnations(&nodes),
        first,
        "renewed within the TTL: same incarnations"
    );

    // Longer than the member TTL: every key is due to expire when the server returns, and c
    // reconnects only ~1 s after the others (within their grace of one member TTL), so a and b
    // find c's key expired and c not answering yet: suspected, then back — never failed. Back
    // as a new incarnation: a node whose key expired since its last renewal announces a new
    // one (ADR 0009: it owns nothing of what the earlier one owned).
    let c_delay = Duration::from_millis(1200);
    let (killed_at, down_for) = outage_fails_nobody(&mut server, &nodes, MEMBER_TTL * 2, || {
        *hold.lock().unwrap() = Some(std::time::Instant::now() + c_delay);
    })
    .await;
    assert!(down_for > MEMBER_TTL);
    assert_ne!(
        first[2],
        incarnations(&nodes)[2],
        "c's key expired: c came back as a new incarnation"
    );
    // One new incarnation per lapse, however many renewals were refused.
    for node in &nodes {
        let announced = node
            .events()
            .iter()
            .filter(|(at, e)| {
                *at > killed_at
                    && nodes.iter().any(|other| {
                        other.name != node.name
                            && matches!(e, MembershipEvent::Joined(info) if info.id.as_str() == other.name)
                    })
            })
            .count();
        assert!(
            announced <= 2,
            "{}: {announced} rejoins of 2 peers",
            node.name
        );
    }
    for node in &nodes[..2] {
        let after = |matches: &dyn Fn(&MembershipEvent) -> bool| {
            node.events()
                .iter()
                .any(|(at, e)| *at > killed_at && matches(e))
        };
        let rejoined = |e: &MembershipEvent| matches!(e, MembershipEvent::Joined(info) if info.id.as_str() == "c");
        assert!(
            after(&is_suspected("c")) && after(&rejoined),
            "{}: c's key expired while c was away, so c must have been suspected and \
             come back: {:?}",
            node.name,
            node.events()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_declares_nobody_failed() {
    let mut nats = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let urls = nats.urls();
    let cluster = cluster_name("cutoff");
    let mut nodes = Vec::new();
    for (i, name) in ["a", "b", "x"].into_iter().enumerate() {
        let mut config = config(&cluster, name);
        config.replicas = 3;
        // Each node talks to its own server only, so killing one server cuts off one node.
        nodes.push(TestNode::start(&urls[i], &config, true).await);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "x"], Duration::from_secs(10)).await;

    let killed_at = Instant::now();
    nats.nodes()[2].kill();
    // a and b fail x (it is unreachable). Generous: if the dead server led the R3 bucket, no
    // key can be renewed or expire until a new leader is elected (measured up to ~8 s), and
    // a and b rightly judge nobody meanwhile.
    let bound = MEMBER_TTL + PROBE_TIMEOUT + Duration::from_secs(30);
    let took = wait_for("a and b fail x", bound, || {
        nodes[..2].iter().all(|n| n.first(is_failed("x")).is_some())
    })
    .await;
    println!("x's server killed: a and b failed x after {took:?}");
    for node in &nodes[..2] {
        let timeline: Vec<String> = node
            .events()
            .iter()
            .filter(|(at, _)| *at > killed_at)
            .map(|(at, e)| format!("{:?} {e:?}", *at - killed_at))
            .collect();
        let health: Vec<String> = node
            .health
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at > killed_at)
            .map(|(at, h)| {
                format!(
                    "{:?} synced={} frozen={}",
                    *at - killed_at,
                    h.synced,
                    h.frozen
                )
            })
            .collect();
        println!("  {}: {timeline:?}\n    health {health:?}", node.name);
    }
    // Stay cut off a while longer than a member TTL plus a probe.
    tokio::time::sleep(MEMBER_TTL + PROBE_TIMEOUT).await;
    let x = &nodes[2];
    assert!(!x.membership().health().synced, "x must know it is cut off");
    assert_eq!(x.member_ids(), ["a", "b", "x"], "x keeps its view");

    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| {
        let node = &mut nats.nodes()[2];
        node.start()?;
        node.wait_ready(READY_TIMEOUT)
    })
    .unwrap_or_else(|e| panic!("restart x's server: {e}"));
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let agreed = wait_agreement(&refs, &["a", "b", "x"], Duration::from_secs(20)).await;
    wait_for("x synced again", Duration::from_secs(10), || {
        nodes[2].membership().health().synced
    })
    .await;
    println!(
        "x cut off for {:?}; after its server returned all agreed in {agreed:?}",
        restarted_at - killed_at
    );
    let x_events = nodes[2].events();
    assert!(
        !x_events.iter().any(|(_, e)| matches!(
            e,
            MembershipEvent::Suspected(_) | MembershipEvent::Failed(_)
        )),
        "x, cut off, judged others: {x_events:?}"
    );
    for node in &nodes[..2] {
        let other = if node.name == "a" { "b" } else { "a" };
        assert_eq!(
            node.count(is_failed(other)),
            0,
            "{} failed {other} because of the NATS outage: {:?}",
            node.name,
            node.events()
        );
        assert!(
            node.events().iter().any(|(at, e)| *at > restarted_at
                && matches!(e, MembershipEvent::Joined(i) if i.id == "x")),
            "{}: x joined again: {:?}",
            node.name,
            node.events()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_crashing_at_once_freezes_the_survivors_until_stable() {
    let server = server();
    let cluster = cluster_name("mass");
    let mut nodes = start_nodes(&server.url(), &cluster, &["a", "b", "c", "d"]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_agreement(&refs, &["a", "b", "c", "d"], CONVERGE).await;
    for node in &nodes {
        assert!(!node.membership().health().frozen);
    }

    let crashed_at = Instant::now();
    let (survivors, victims) = nodes.split_at_mut(2);
    for victim in victims.iter_mut() {
        victim.crash().await;
    }
    let bound = MEMBER_TTL + PROBE_TIMEOUT + SLACK;
    wait_for("a and b frozen", bound, || {
        survivors.iter().all(|n| n.membership().health().frozen)
    })
    .await;
    let froze = crashed_at.elapsed();
    let bound = MEMBER_TTL + PROBE_TIMEOUT + STABILIZATION + SLACK * 2;
    wait_for("a and b stable again", bound, || {
        survivors.iter().all(|n| {
            let health = n.membership().health();
            !health.frozen && n.member_ids() == ["a", "b"]
        })
    })
    .await;
    println!(
        "2 of 4 crashed: both survivors frozen {froze:?} and unfrozen {:?} after the crash \
         (bounds {:?}, {bound:?})",
        crashed_at.elapsed(),
        MEMBER_TTL + PROBE_TIMEOUT + SLACK
    );
    for node in survivors.iter() {
        assert_eq!(node.count(is_failed("c")), 1, "{:?}", node.events());
        assert_eq!(node.count(is_failed("d")), 1, "{:?}", node.events());
        let last_change = node.events().last().map(|(at, _)| *at).expect("events");
        let thaw = node
            .health
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, h)| !h.frozen)
            .map(|(at, _)| *at)
            .expect("thawed");
        // The recorder sees an event a moment after the view made it (≤ a few ms).
        assert!(
            thaw - last_change >= STABILIZATION - Duration::from_millis(50),
            "{}: unfrozen {:?} after the last change, before the stabilisation delay",
            node.name,
            thaw - last_change
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_written() {
    let server = server();
    let cluster = cluster_name("bad");
    let client = connect(&server.url(), false, None).await;
    let base = config(&cluster, "bad");
    let store = ClusterStore::open(client.clone(), &base)
        .await
        .expect("store");

    let mut cases: Vec<(&str, ClusterConfig)> = Vec::new();
    let mut huge = base.clone();
    huge.metadata.address = "h".repeat(100_000);
    cases.push(("address", huge));
    let mut control = base.clone();
    control.metadata = NodeMetadata::default();
    control.metadata.app_version = "1.0\r\nX-Evil: 1".to_owned();
    cases.push(("control character", control));
    let mut timings = base.clone();
    timings.member_ttl = timings.heartbeat;
    cases.push(("twice the heartbeat", timings));
    for (expected, config) in cases {
        match Membership::start(&store, &config).await {
            Err(ClusterError::InvalidConfig(message)) => {
                assert!(message.contains(expected), "{expected}: {message}");
            }
            other => panic!("{expected}: expected InvalidConfig, got {other:?}"),
        }
    }
    // The test's own handle on the members bucket.
    let members = async_nats::jetstream::new(client.clone())
        .get_key_value(store.members_bucket())
        .await
        .expect("members bucket");
    let written = members.get("bad").await.expect("get");
    assert_eq!(written, None, "nothing written for refused configs");
    let probe = client
        .request(probe_subject(&cluster, &base.node_id), Bytes::new())
        .await;
    assert!(probe.is_err(), "nobody answers probes for a refused node");

    // A second live node with the same id is refused; the first keeps its key.
    let first = Membership::start(&store, &base).await.expect("first");
    let other_client = connect(&server.url(), false, None).await;
    let other_store = ClusterStore::open(other_client, &base)
        .await
        .expect("store");
    match Membership::start(&other_store, &base).await {
        Err(ClusterError::InvalidConfig(message)) => {
            assert!(message.contains("already used"), "{message}");
        }
        other => panic!("duplicate id: expected InvalidConfig, got {other:?}"),
    }
    let entry = members.get("bad").await.expect("get").expect("key");
    let announced: MemberInfo = serde_json::from_slice(&entry).expect("json");
    assert_eq!(announced, first.local());
    first.leave().await.expect("leave");
    assert_eq!(members.get("bad").await.expect("get"), None);
}

/// A bucket whose stream does not answer yet (as on a 3-server cluster right after another
/// node created it: "no responders" until this server knows its leader) makes the first
/// announcement wait and retry within `ready_timeout`, not fail the start at once. Made
/// deterministic by deleting the members stream after the store was opened and creating it
/// again while the node is starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_announcement_waits_for_a_stream_that_does_not_answer_yet() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = cluster_name("notyet");
    let mut config = config(&cluster, "late");
    config.ready_timeout = Duration::from_secs(10);
    let client = connect(&server.url(), false, None).await;
    let store = ClusterStore::open(client.clone(), &config)
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    let js = async_nats::jetstream::new(client.clone());
    let members_stream = format!("KV_{}", store.members_bucket());
    js.delete_stream(&members_stream)
        .await
        .unwrap_or_else(|e| panic!("delete {members_stream}: {e}"));

    let starting = tokio::spawn({
        let (store, config) = (store.clone(), config.clone());
        async move { Membership::start(&store, &config).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !starting.is_finished(),
        "the start must wait for the stream, not fail at once: {:?}",
        starting.await
    );
    // The stream comes back (another node opening the cluster creates it).
    let other = connect(&server.url(), false, None).await;
    ClusterStore::open(other, &config)
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    let membership = tokio::time::timeout(OP_TIMEOUT, starting)
        .await
        .expect("the start finishes once the stream answers")
        .expect("the start task")
        .unwrap_or_else(|e| panic!("start membership: {e}"));
    assert_eq!(membership.local().id.as_str(), "late");
    membership
        .leave()
        .await
        .unwrap_or_else(|e| panic!("leave: {e}"));
}
