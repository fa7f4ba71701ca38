//! The leader lease against real `nats-server` processes, with test timings (lease TTL 3 s,
//! margin 500 ms, renewal every second). What must hold, and why:
//!
//! - **one leader, agreed**: three electors on three connections elect exactly one leader
//!   within 5 s, all report the same leader and epoch, and the lease survives past its TTL
//!   (renewals work);
//! - **crash**: a leader that stops renewing (its task aborted without release) is replaced
//!   within TTL + 1 s of its last renewal, never before TTL (the server must not expire a
//!   lease early), with a strictly higher epoch;
//! - **graceful handover**: a released lease is taken over well under the TTL;
//! - **partition**: a leader cut off from NATS stops leading by its own deadline, and that
//!   deadline is not later than the moment the next leader's acquisition was even sent — the
//!   fencing guarantee (no two nodes ever act as leader at once);
//! - **zombie**: an old lease object cannot renew (nor release) after another node took over,
//!   and was invalid by its own deadline before the new epoch existed;
//! - **async-nats pitfall**: a lease acquired over a delete or purge marker still has its TTL
//!   (0.51's `create_with_ttl` drops it there, so a crashed leader would hold forever);
//! - **lost answers**: a renewal whose answer was lost does not cost the lease;
//! - **NATS faults**: after a nats-server restart the electors end with exactly one agreed
//!   leader; in a 3-node NATS cluster (R3 buckets), killing a server that is neither the lease
//!   bucket's stream leader nor the leader's own server changes nothing (same leader, same
//!   epoch); killing the stream leader is reported with what happened.
//!
//! Throughout the fault tests a sampler checks that no two electors ever claim to lead at the
//! same time. Measured times are printed with `--nocapture`.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;
#[path = "support/store.rs"]
mod store;

use aether_cluster::{Epoch, Revision};
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_cluster::kv::{Bucket, ClusterStore, Expect, LEASE_KEY};
use aether_cluster::lease::{LeaderElector, LeaderLease, LeaderState, Lease, LeaseHolder};
use aether_cluster::{ClusterConfig, ClusterError};
use aether_core::NodeId;
use aether_testkit::nats_server::{NatsCluster, NatsServer, READY_TIMEOUT};
use common::{STEP, base_config, connect, in_time, node, start_server, within};
use store::{acquire, leader_lease, open};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(500);

/// A cluster name no other test uses.
fn cluster_name() -> String {
    common::cluster_name("lease")
}

fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = base_config(cluster, id, TTL, Duration::from_secs(1));
    config.heartbeat = Duration::from_millis(500);
    config.member_ttl = Duration::from_secs(2);
    config
}

/// The lease of node `id` of `cluster`, on its own connection to `url`.
async fn lease_on(url: &str, cluster: &str, id: &str) -> LeaderLease {
    let config = config(cluster, id);
    leader_lease(open(url, &config).await, &config)
}

/// Node a of a fresh cluster on `server`, holding the lease: its store, its lease handle and
/// the lease.
async fn a_holding_the_lease(server: &NatsServer) -> (ClusterStore, LeaderLease, Lease) {
    let config = config(&cluster_name(), "a");
    let store = open(&server.url(), &config).await;
    let a = leader_lease(store.clone(), &config);
    let lease = acquire(&a).await;
    (store, a, lease)
}

/// The current holder as the store shows it; `none` is the panic message if there is none.
async fn holder(lease: &LeaderLease, none: &str) -> LeaseHolder {
    within("current", lease.current())
        .await
        .unwrap_or_else(|| panic!("{none}"))
}

/// Writes `value` to the lease key over `revision`, behind the lease's back; the new revision.
async fn write_behind(store: &ClusterStore, value: bytes::Bytes, revision: Revision) -> Revision {
    within(
        "write",
        store.put_with_ttl(
            Bucket::Coord,
            LEASE_KEY,
            value,
            Expect::Revision(revision),
            TTL,
        ),
    )
    .await
}

/// Starts one elector per id, each on its own connection to the matching URL.
async fn electors(urls: &[String], cluster: &str, ids: &[&str]) -> Vec<LeaderElector> {
    let mut electors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let config = config(cluster, id);
        let store = open(&urls[i % urls.len()], &config).await;
        electors.push(LeaderElector::start(store, &config).unwrap_or_else(|e| panic!("{e}")));
    }
    electors
}

/// Electors n1, n2 and n3 of a fresh cluster on `server`, once they agree on a first leader
/// (within 5 s): the electors, the leader and its epoch.
async fn three_electors(server: &NatsServer) -> (Vec<LeaderElector>, NodeId, Epoch) {
    let electors = electors(&[server.url()], &cluster_name(), &["n1", "n2", "n3"]).await;
    let all: Vec<&LeaderElector> = electors.iter().collect();
    let (leader, epoch, _) = wait_agreed(&all, Duration::from_secs(5), "first election").await;
    (electors, leader, epoch)
}

/// The leader and epoch if exactly one elector leads and every elector agrees on it.
fn agreed(electors: &[&LeaderElector]) -> Option<(NodeId, Epoch)> {
    let states: Vec<LeaderState> = electors.iter().map(|e| e.state()).collect();
    let mut leading = electors
        .iter()
        .zip(&states)
        .filter(|(_, s)| s.this_node_leads);
    let (leader, state) = leading.next()?;
    if leading.next().is_some() || state.leader.as_ref() != Some(leader.node()) {
        return None;
    }
    let epoch = state.epoch;
    states
        .iter()
        .all(|s| s.leader.as_ref() == Some(leader.node()) && s.epoch == epoch)
        .then(|| (leader.node().clone(), epoch))
}

/// Waits until [`agreed`] (polling), up to `limit`; returns it and when it was first seen.
async fn wait_agreed(
    electors: &[&LeaderElector],
    limit: Duration,
    what: &str,
) -> (NodeId, Epoch, Instant) {
    let started = Instant::now();
    loop {
        if let Some((leader, epoch)) = agreed(electors) {
            return (leader, epoch, Instant::now());
        }
        if started.elapsed() > limit {
            let states: Vec<LeaderState> = electors.iter().map(|e| e.state()).collect();
            panic!("{what}: no agreed leader after {limit:?}; states: {states:#?}");
        }
        sleep(Duration::from_millis(5)).await;
    }
}

fn index_of(electors: &[LeaderElector], leader: &NodeId) -> usize {
    electors
        .iter()
        .position(|e| e.node() == leader)
        .unwrap_or_else(|| panic!("{leader} is not one of the electors"))
}

/// Waits until the elector has renewed since `since` (so no renewal is in flight for the
/// next TTL/3), and returns the new renewal time.
async fn wait_renewal(elector: &LeaderElector, since: Option<Instant>) -> Instant {
    let started = Instant::now();
    loop {
        let now = elector.renewed_at();
        if now.is_some() && now != since {
            return now.unwrap_or_else(|| unreachable!());
        }
        assert!(
            started.elapsed() < TTL,
            "{} did not renew within the TTL",
            elector.node()
        );
        sleep(Duration::from_millis(2)).await;
    }
}

/// Samples every 2 ms how many live electors claim to lead (keeps the maximum), and records
/// every change of the electors' states as a timeline.
struct OverlapSampler {
    max: Arc<AtomicUsize>,
    timeline: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl OverlapSampler {
    fn start(receivers: Vec<watch::Receiver<LeaderState>>) -> Self {
        let max = Arc::new(AtomicUsize::new(0));
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (max_in, timeline_in, stop_in) =
            (Arc::clone(&max), Arc::clone(&timeline), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let mut last = String::new();
            while !stop_in.load(Ordering::Relaxed) {
                let mut leading = 0;
                let mut views = Vec::new();
                for rx in &receivers {
                    // A closed channel is a stopped elector: its last state is stale.
                    if rx.has_changed().is_err() {
                        views.push("stopped".to_owned());
                        continue;
                    }
                    let state = rx.borrow().clone();
                    leading += usize::from(state.this_node_leads);
                    views.push(format!(
                        "{}@{}{}",
                        state.leader.as_ref().map_or("-", NodeId::as_str),
                        state.epoch,
                        if state.this_node_leads { "*" } else { "" }
                    ));
                }
                max_in.fetch_max(leading, Ordering::Relaxed);
                let view = views.join(" ");
                if view != last {
                    if let Ok(mut timeline) = timeline_in.lock() {
                        timeline.push((Instant::now(), view.clone()));
                    }
                    last = view;
                }
                sleep(Duration::from_millis(2)).await;
            }
        });
        Self {
            max,
            timeline,
            stop,
            task,
        }
    }

    /// Prints the timeline from `since` on (`*` marks an elector that claims to lead).
    fn print_since(&self, since: Instant, title: &str) {
        println!("{title} (per elector: leader@epoch, * = leads):");
        if let Ok(timeline) = self.timeline.lock() {
            for (at, view) in timeline.iter().filter(|(at, _)| *at >= since) {
                println!("  +{:>8.3}s  {view}", (*at - since).as_secs_f64());
            }
        }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max.load(Ordering::Relaxed)
    }

    /// Stops sampling; never more (nor fewer) than one elector may have led at once.
    async fn assert_no_overlap(self) {
        assert_eq!(
            self.finish().await,
            1,
            "two electors claimed to lead at once"
        );
    }
}

fn receivers(electors: &[LeaderElector]) -> Vec<watch::Receiver<LeaderState>> {
    electors.iter().map(LeaderElector::subscribe).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_electors_agree_on_one_leader_within_5s_and_it_keeps_leading() {
    let server = start_server();
    let cluster = cluster_name();
    let started = Instant::now();
    let electors = electors(&[server.url()], &cluster, &["n1", "n2", "n3"]).await;
    let all: Vec<&LeaderElector> = electors.iter().collect();
    let (leader, epoch, at) = wait_agreed(&all, Duration::from_secs(5), "first election").await;
    println!(
        "first leader {leader} (epoch {epoch}) agreed by all three after {:?} (incl. connecting)",
        at - started
    );
    assert!(at - started <= Duration::from_secs(5));

    // The store agrees too.
    let observer = lease_on(&server.url(), &cluster, "observer").await;
    let first = holder(&observer, "the store shows no holder").await;
    assert_eq!((first.node.clone(), first.epoch), (leader.clone(), epoch));

    // Twice the TTL later: same leader, same epoch (renewals work), and later revisions.
    let sampler = OverlapSampler::start(receivers(&electors));
    sleep(2 * TTL).await;
    assert_eq!(
        agreed(&all),
        Some((leader.clone(), epoch)),
        "the leader changed while healthy"
    );
    let later = holder(&observer, "the store shows no holder").await;
    assert_eq!((later.node.clone(), later.epoch), (leader.clone(), epoch));
    assert!(
        later.revision > first.revision,
        "no renewal reached the store"
    );
    sampler.assert_no_overlap().await;
    let leader_elector = &electors[index_of(&electors, &leader)];
    let fence = leader_elector
        .fence()
        .unwrap_or_else(|| panic!("the leader has no fence"));
    assert_eq!(fence.epoch(), epoch);
    assert!(fence.is_valid());
    for elector in &electors {
        if elector.node() != &leader {
            assert!(elector.fence().is_none(), "a follower has a fence");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_is_replaced_within_ttl_plus_1s_with_a_higher_epoch() {
    let server = start_server();
    let (mut electors, leader, epoch) = three_electors(&server).await;
    let sampler = OverlapSampler::start(receivers(&electors));

    let crashed = electors.remove(index_of(&electors, &leader));
    let last_renewal = wait_renewal(&crashed, crashed.renewed_at()).await;
    crashed.abort().await;
    let rest: Vec<&LeaderElector> = electors.iter().collect();
    let (next, next_epoch, at) = wait_agreed(&rest, TTL + Duration::from_secs(5), "failover").await;
    let gap = at - last_renewal;
    println!(
        "{leader} stopped renewing; {next} leads (epoch {epoch} -> {next_epoch}) {gap:?} after its last renewal"
    );
    assert_ne!(next, leader);
    assert!(
        next_epoch > epoch,
        "epoch went from {epoch} to {next_epoch}"
    );
    assert!(
        gap >= TTL,
        "the lease was taken over {gap:?} after its last renewal, before the TTL"
    );
    assert!(
        gap <= TTL + Duration::from_secs(1),
        "failover took {gap:?} (bound: TTL + 1 s)"
    );
    sampler.assert_no_overlap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_well_under_the_ttl() {
    let server = start_server();
    let (mut electors, leader, epoch) = three_electors(&server).await;
    let sampler = OverlapSampler::start(receivers(&electors));

    let leaving = electors.remove(index_of(&electors, &leader));
    let fence = leaving
        .fence()
        .unwrap_or_else(|| panic!("the leader has no fence"));
    let asked = Instant::now();
    in_time("shutdown", leaving.shutdown())
        .await
        .unwrap_or_else(|e| panic!("releasing the lease: {e}"));
    assert!(
        !fence.is_valid(),
        "the fence of a released lease is still valid"
    );
    let rest: Vec<&LeaderElector> = electors.iter().collect();
    let (next, next_epoch, at) = wait_agreed(&rest, TTL, "handover").await;
    let handover = at - asked;
    println!(
        "{leader} released; {next} leads (epoch {epoch} -> {next_epoch}) {handover:?} after shutdown was asked"
    );
    assert!(next_epoch > epoch);
    assert!(
        handover < TTL / 3,
        "handover took {handover:?}; a release should not wait for the TTL ({TTL:?})"
    );
    sampler.assert_no_overlap().await;
}

/// A TCP proxy in front of the server that can cut every connection through it (and refuse
/// new ones): a network partition of one node.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: &str) -> Self {
        let target = target.trim_start_matches("nats://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy: {e}"));
        let url = format!(
            "nats://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let cut = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let (cut_in, live_in) = (Arc::clone(&cut), Arc::clone(&live));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_in.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let clones = (client.try_clone(), server.try_clone());
                let (Ok(client_2), Ok(server_2)) = clones else {
                    continue;
                };
                if let Ok(mut live) = live_in.lock() {
                    live.extend(client.try_clone());
                    live.extend(server.try_clone());
                }
                pipe(client, server_2);
                pipe(server, client_2);
            }
        });
        Self { url, cut, live }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut live) = self.live.lock() {
            for stream in live.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_by_its_deadline_before_the_next_leader_acquires() {
    let server = start_server();
    let cluster = cluster_name();
    let proxy = Proxy::start(&server.url());
    // n1 goes through the proxy and starts first, so it leads.
    let mut electors = electors(std::slice::from_ref(&proxy.url), &cluster, &["n1"]).await;
    let (leader, epoch, _) = wait_agreed(&[&electors[0]], Duration::from_secs(5), "n1 alone").await;
    assert_eq!(leader, node("n1"));
    electors.extend(self::electors(&[server.url()], &cluster, &["n2", "n3"]).await);
    let all: Vec<&LeaderElector> = electors.iter().collect();
    let (agreed_leader, agreed_epoch, _) = wait_agreed(&all, Duration::from_secs(5), "join").await;
    assert_eq!((agreed_leader, agreed_epoch), (leader.clone(), epoch));
    let sampler = OverlapSampler::start(receivers(&electors));

    let old_fence = electors[0]
        .fence()
        .unwrap_or_else(|| panic!("n1 has no fence"));
    let last_renewal = wait_renewal(&electors[0], electors[0].renewed_at()).await;
    proxy.cut();
    let cut_at = Instant::now();
    // n1 must stop by its own deadline, with no network.
    timeout(TTL, old_fence.invalidated())
        .await
        .unwrap_or_else(|_| panic!("n1's fence stayed valid for the whole TTL after the cut"));
    let invalid_at = Instant::now();
    let deadline = old_fence.deadline();
    assert_eq!(
        electors[0].renewed_at(),
        Some(last_renewal),
        "a renewal got through the cut"
    );
    assert_eq!(deadline, last_renewal + TTL - MARGIN);
    let mut n1_state = electors[0].subscribe();
    timeout(
        Duration::from_millis(500),
        n1_state.wait_for(|s| !s.this_node_leads),
    )
    .await
    .unwrap_or_else(|_| panic!("n1 still claims to lead 500 ms after its deadline"))
    .unwrap_or_else(|e| panic!("{e}"));
    let stepped_down = Instant::now();

    let rest: Vec<&LeaderElector> = electors[1..].iter().collect();
    let (next, next_epoch, at) = wait_agreed(&rest, TTL + Duration::from_secs(5), "failover").await;
    let next_fence = electors[index_of(&electors, &next)]
        .fence()
        .unwrap_or_else(|| panic!("the new leader has no fence"));
    println!(
        "partition: cut {:?} after n1's last renewal; n1's fence invalid {:?} after it (deadline \
         {:?}), n1 stepped down {:?} after it; {next} acquired (epoch {epoch} -> {next_epoch}) \
         {:?} after n1's last renewal, {:?} after n1's deadline; agreed {:?} after the renewal",
        cut_at - last_renewal,
        invalid_at - last_renewal,
        deadline - last_renewal,
        stepped_down - last_renewal,
        next_fence.acquired_at() - last_renewal,
        next_fence.acquired_at() - deadline,
        at - last_renewal,
    );
    assert!(invalid_at >= deadline);
    assert!(
        invalid_at - deadline < Duration::from_millis(200),
        "the fence turned invalid late"
    );
    assert!(next_epoch > epoch);
    assert!(
        deadline <= next_fence.acquired_at(),
        "n1 could act until {deadline:?} but {next} acquired at {:?}",
        next_fence.acquired_at()
    );
    assert!(
        at - last_renewal <= TTL + Duration::from_secs(1),
        "failover took {:?}",
        at - last_renewal
    );

    // Healed: n1 reconnects and follows the new leader.
    proxy.heal();
    let (healed_leader, healed_epoch, healed_at) =
        wait_agreed(&all, Duration::from_secs(15), "after healing").await;
    println!(
        "healed: all three agree on {healed_leader} (epoch {healed_epoch}) {:?} after healing",
        healed_at - at
    );
    assert!(healed_epoch >= next_epoch);
    sampler.assert_no_overlap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_lease_cannot_renew_or_release_after_another_node_took_over() {
    let server = start_server();
    let cluster = cluster_name();
    let a = lease_on(&server.url(), &cluster, "a").await;
    let b = lease_on(&server.url(), &cluster, "b").await;

    let mut zombie = acquire(&a).await;
    assert!(zombie.is_valid());
    assert_eq!(zombie.deadline(), zombie.renewed_at() + TTL - MARGIN);
    let busy = within("acquire", b.try_acquire()).await;
    assert!(busy.is_none(), "b acquired a held lease");
    let held = holder(&b, "no holder").await;
    assert_eq!((held.node, held.epoch), (node("a"), zombie.epoch()));

    // a stops renewing (paused); b polls until the server expires a's lease.
    let taken = loop {
        if let Some(lease) = within("acquire", b.try_acquire()).await {
            break lease;
        }
        assert!(
            zombie.renewed_at().elapsed() < TTL + Duration::from_secs(3),
            "a's lease never expired"
        );
        sleep(Duration::from_millis(20)).await;
    };
    let gap = taken.acquired_at() - zombie.renewed_at();
    println!(
        "b acquired {gap:?} after a's last write (epoch {} -> {})",
        zombie.epoch(),
        taken.epoch()
    );
    assert!(taken.epoch() > zombie.epoch());
    assert!(
        gap >= TTL,
        "a's lease expired {gap:?} after its write, before the TTL"
    );
    assert!(gap <= TTL + Duration::from_secs(1), "expiry took {gap:?}");
    assert!(
        zombie.deadline() <= taken.acquired_at(),
        "a was still valid when b acquired"
    );
    assert!(!zombie.is_valid());

    let renew = in_time("renew", zombie.renew()).await;
    assert!(
        matches!(renew, Err(ClusterError::NotLeader)),
        "zombie renew: {renew:?}"
    );
    let release = in_time("release", zombie.release()).await;
    assert!(
        matches!(release, Err(ClusterError::NotLeader)),
        "zombie release: {release:?}"
    );
    let held = holder(&a, "the zombie's release removed b's lease").await;
    assert_eq!((held.node, held.epoch), (node("b"), taken.epoch()));
    assert!(taken.is_valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_whose_cas_fails_is_lost_for_good_even_before_its_deadline() {
    let server = start_server();
    let (store, _a, mut lease) = a_holding_the_lease(&server).await;
    let fence = lease.fence();
    // Someone else's write lands on the key (as if the lease had been taken).
    let foreign = bytes::Bytes::from_static(br#"{"node":"b"}"#);
    write_behind(&store, foreign, lease.revision()).await;
    assert!(
        lease.is_valid(),
        "no network check: still before the deadline"
    );
    let renew = in_time("renew", lease.renew()).await;
    assert!(
        matches!(renew, Err(ClusterError::NotLeader)),
        "renew after a foreign write: {renew:?}"
    );
    assert!(
        !lease.is_valid() && !fence.is_valid(),
        "a refused renewal left the lease valid"
    );
    let again = in_time("renew", lease.renew()).await;
    assert!(
        matches!(again, Err(ClusterError::NotLeader)),
        "a lost lease renewed: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_acquired_over_a_delete_or_purge_marker_still_expires() {
    let server = start_server();
    let cluster = cluster_name();
    let a = lease_on(&server.url(), &cluster, "a").await;
    let acquire = || within("acquire", a.try_acquire());
    let first = acquire().await.unwrap_or_else(|| panic!("no first lease"));
    within("release", first.release()).await;

    // Acquired over the delete marker, then (after it expired) over the purge marker: each
    // must expire again when its holder crashes.
    let mut lease = acquire()
        .await
        .unwrap_or_else(|| panic!("no lease over the delete marker"));
    for marker in ["delete", "purge"] {
        let written = lease.renewed_at();
        let epoch = lease.epoch();
        drop(lease); // crashed: never renewed, never released
        let next = loop {
            if let Some(next) = acquire().await {
                break next;
            }
            assert!(
                written.elapsed() < TTL + Duration::from_secs(3),
                "the lease acquired over the {marker} marker never expired (no TTL?)"
            );
            sleep(Duration::from_millis(20)).await;
        };
        let gap = next.acquired_at() - written;
        println!(
            "lease over the {marker} marker (epoch {epoch}) expired; re-acquired {gap:?} after its write"
        );
        assert!(
            gap >= TTL && gap <= TTL + Duration::from_secs(1),
            "{marker}: {gap:?}"
        );
        assert!(next.epoch() > epoch);
        lease = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_whose_answer_was_lost_does_not_cost_the_lease() {
    let server = start_server();
    let (store, a, mut lease) = a_holding_the_lease(&server).await;
    // Exactly what the lease's renewal writes, written behind its back: the lease's revision
    // is now stale, as after a renewal that reached the server but whose answer was lost.
    let same = serde_json::to_vec(&serde_json::json!({"node": "a", "epoch": lease.epoch()}))
        .unwrap_or_else(|e| panic!("{e}"));
    let landed = write_behind(&store, same.into(), lease.revision()).await;
    let before = lease.renewed_at();
    in_time("renew", lease.renew())
        .await
        .unwrap_or_else(|e| panic!("the renewal after a lost answer failed: {e}"));
    assert!(
        lease.revision() > landed,
        "renewed on revision {} (landed: {landed})",
        lease.revision()
    );
    assert!(lease.renewed_at() > before && lease.is_valid());
    let held = holder(&a, "no holder").await;
    assert_eq!(
        (held.node, held.epoch, held.revision),
        (node("a"), lease.epoch(), lease.revision())
    );
}

async fn restart(mut server: NatsServer) -> NatsServer {
    let restart = tokio::task::spawn_blocking(move || server.restart().map(|()| server));
    timeout(READY_TIMEOUT + STEP, restart)
        .await
        .unwrap_or_else(|_| panic!("restart timed out"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electors_end_with_one_agreed_leader_after_a_nats_server_restart() {
    let mut server = start_server();
    let (electors, leader, epoch) = three_electors(&server).await;
    let all: Vec<&LeaderElector> = electors.iter().collect();
    let sampler = OverlapSampler::start(receivers(&electors));

    // A quick restart (SIGKILL, then start on the same port and store).
    let down = Instant::now();
    server = restart(server).await;
    let outage = down.elapsed();
    let (after, after_epoch, at) =
        wait_agreed(&all, Duration::from_secs(30), "after the restart").await;
    println!(
        "quick restart (down {outage:?}): before {leader} epoch {epoch}, after {after} epoch \
         {after_epoch}, agreed {:?} after the kill ({})",
        at - down,
        if after_epoch == epoch {
            "same lease"
        } else {
            "re-elected"
        }
    );
    assert!(after_epoch >= epoch);
    if after_epoch == epoch {
        assert_eq!(after, leader);
    }
    sleep(TTL).await;
    let held = agreed(&all).unwrap_or_else(|| panic!("no agreed leader a TTL after recovery"));
    assert_eq!(held, (after.clone(), after_epoch));

    // An outage longer than the TTL: the leader must step down by its own deadline, and
    // nobody may claim to lead while NATS is down.
    let fence = electors[index_of(&electors, &after)]
        .fence()
        .unwrap_or_else(|| panic!("the leader has no fence"));
    let down = Instant::now();
    server.kill();
    sleep(TTL + Duration::from_secs(1)).await;
    assert!(
        !fence.is_valid(),
        "the leader's fence is valid after a TTL without NATS"
    );
    let claiming: Vec<&NodeId> = electors
        .iter()
        .filter(|e| e.state().this_node_leads)
        .map(LeaderElector::node)
        .collect();
    assert!(
        claiming.is_empty(),
        "{claiming:?} claim to lead with NATS down for a TTL"
    );
    let server = restart(server).await;
    let (last, last_epoch, at) =
        wait_agreed(&all, Duration::from_secs(30), "after the long outage").await;
    println!(
        "long outage ({:?}): {last} leads with epoch {last_epoch} (was {after} epoch \
         {after_epoch}), agreed {:?} after the kill",
        TTL + Duration::from_secs(1),
        at - down
    );
    sampler.print_since(down, "long outage timeline");
    assert!(last_epoch > after_epoch, "the expired lease came back");
    sleep(TTL).await;
    assert_eq!(
        agreed(&all),
        Some((last, last_epoch)),
        "not stable after recovery"
    );
    sampler.assert_no_overlap().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_node_nats_cluster_losing_one_server_keeps_the_leader() {
    let mut nats = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let urls = nats.urls();
    let cluster = cluster_name();
    let mut electors = Vec::new();
    for (i, id) in ["n1", "n2", "n3"].iter().enumerate() {
        let mut config = config(&cluster, id);
        config.replicas = 3;
        config.request_timeout = Duration::from_secs(2);
        let store = open(&urls[i], &config).await;
        electors.push(LeaderElector::start(store, &config).unwrap_or_else(|e| panic!("{e}")));
    }
    let all: Vec<&LeaderElector> = electors.iter().collect();
    let (leader, epoch, _) = wait_agreed(&all, Duration::from_secs(10), "first election").await;
    let leader_server = index_of(&electors, &leader); // elector i talks to server i
    let names: Vec<String> = nats.nodes().iter().map(|n| n.name().to_owned()).collect();
    let sampler = OverlapSampler::start(receivers(&electors));

    let stream_leader = || async {
        let js = async_nats::jetstream::new(connect(&urls[leader_server]).await);
        let mut stream = within("stream info", js.get_stream(format!("KV_{cluster}-coord"))).await;
        let info = within("stream info", stream.info()).await;
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .unwrap_or_else(|| panic!("the coordination bucket has no stream leader"))
    };

    // Phase 1: kill a server that is neither the stream leader nor the leader's own server.
    let stream_leader_name = stream_leader().await;
    let victim = (0..3)
        .find(|&i| i != leader_server && names[i] != stream_leader_name)
        .unwrap_or_else(|| unreachable!("3 servers, at most 2 excluded"));
    let renewed_before = electors[leader_server].renewed_at();
    nats.nodes()[victim].kill();
    println!(
        "killed {} (stream leader {stream_leader_name}, leader {leader} on {})",
        names[victim], names[leader_server]
    );
    sleep(2 * TTL).await;
    let others: Vec<&LeaderElector> = electors
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, e)| e)
        .collect();
    let (still, still_epoch, _) =
        wait_agreed(&others, Duration::from_secs(5), "after the kill").await;
    assert_eq!(
        (still.clone(), still_epoch),
        (leader.clone(), epoch),
        "the leader changed"
    );
    assert!(
        electors[leader_server].renewed_at() > renewed_before,
        "no renewal after the kill"
    );
    let (all_leader, all_epoch, _) =
        wait_agreed(&all, Duration::from_secs(15), "the victim's elector").await;
    assert_eq!((all_leader, all_epoch), (leader.clone(), epoch));
    println!("phase 1: {leader} kept leading with epoch {epoch}; the victim's elector agrees");

    // Phase 2 (observed, reported): bring the victim back, then kill the stream leader.
    {
        let node = &mut nats.nodes()[victim];
        node.start().unwrap_or_else(|e| panic!("{e}"));
        node.wait_ready(READY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    sleep(Duration::from_secs(2)).await;
    let stream_leader_name = stream_leader().await;
    let victim = (0..3)
        .find(|&i| names[i] == stream_leader_name)
        .unwrap_or_else(|| panic!("stream leader {stream_leader_name} is not a cluster node"));
    let killed_at = Instant::now();
    nats.nodes()[victim].kill();
    let phase_2 = killed_at;
    let (after, after_epoch, at) = wait_agreed(
        &all,
        Duration::from_secs(30),
        "after killing the stream leader",
    )
    .await;
    sleep(2 * TTL).await;
    let (held, held_epoch, _) = wait_agreed(&all, Duration::from_secs(10), "a while later").await;
    println!(
        "phase 2: killed the stream leader {stream_leader_name} (leader {leader} on {}): agreed \
         on {after} epoch {after_epoch} {:?} later; 2 TTLs later {held} epoch {held_epoch} ({})",
        names[leader_server],
        at - killed_at,
        if held_epoch == epoch {
            "lease kept"
        } else {
            "re-elected"
        }
    );
    sampler.print_since(phase_2, "phase 2 timeline");
    assert!(held_epoch >= epoch);
    sampler.assert_no_overlap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_timings_that_cannot_work_are_refused() {
    let server = start_server();
    let cluster = cluster_name();
    let mut bad = config(&cluster, "a");
    bad.lease_margin = Duration::from_secs(2); // ≥ 2/3 of 3 s
    let store = open(&server.url(), &bad).await;
    let error = LeaderLease::new(store.clone(), &bad)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(error, ClusterError::InvalidConfig(_)), "{error:?}");
    assert!(error.to_string().contains("lease_margin"), "{error}");
    let error = LeaderElector::start(store, &bad).map(|_| ()).unwrap_err();
    assert!(matches!(error, ClusterError::InvalidConfig(_)), "{error:?}");
}
