//! The fenced shard map and its history against a real `nats-server`. What must hold, and why:
//!
//! - **a linear chain**: every write is version + 1 under the writer's epoch, the history
//!   has exactly one record per version (with the moved shards and the reason), and a watcher
//!   on another connection sees every version in order and ends on the stored map;
//! - **no fork**: two writers on their own connections, fenced by the same valid lease, race on
//!   the same revision round after round — exactly one write wins each round, versions
//!   strictly increase by one, each version is written once;
//! - **fencing**: a write under a lower epoch than the stored map's, under an expired or a
//!   released lease, or on a stale revision is refused with a typed error and changes nothing
//!   (map, revision and history as before);
//! - **the server checks the lease**: a write follows its own lease's renewals (also one the
//!   fence has not seen yet), and once anyone else has written the lease key the server
//!   refuses the write ([`ClusterError::Fenced`]) though the writer's local fence is still
//!   valid, storing neither the map nor its history record (the stalled-leader case, which
//!   needs a seam inside the crate, is `src/shard_map_store/tests.rs`);
//! - **bad input**: a map with another shard count than the configuration or the stored map is
//!   refused with [`ClusterError::InvalidConfig`] and nothing is written;
//! - **no holes**: the stream refuses to delete a history record;
//! - **lost races on R3**: on a 3-replica cluster, where a lost race can come back as 10164,
//!   racing TTL writes and map writes give one winner and conflicts, never a backend error;
//! - **watch filtering**: maps written outside the fence with a lower epoch (or a version not
//!   above the last one) are not yielded by the watch.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;
#[path = "support/store.rs"]
mod store;

use aether_cluster::{MapVersion, Revision};
use std::time::Duration;

use aether_cluster::kv::{Bucket, ClusterStore, Expect, LEASE_KEY, MAP_KEY};
use aether_cluster::lease::{Lease, LeaseFence};
use aether_cluster::shard_map_store::{
    MapChange, MapWritten, ShardMapStore, ShardMapWatch, StoredShardMap,
};
use aether_cluster::{ClusterConfig, ClusterError};
use aether_core::{Member, ShardCount, ShardMap, assign_shards, shard_moves};
use aether_testkit::nats_server::NatsCluster;
use common::{STEP, base_config, in_time, node, start_server, within};
use futures::StreamExt;
use futures::future::join_all;
use store::{acquire, leader_lease, open};
use tokio::time::{sleep, timeout};

fn shards(count: u32) -> ShardCount {
    ShardCount::new(count).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster name no other test uses.
fn cluster_name() -> String {
    common::cluster_name("smap")
}

/// 100 shards; a 10 s lease (no renewal needed within a test) unless a test shortens it.
fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = base_config(cluster, id, Duration::from_secs(10), Duration::from_secs(2));
    config.shard_count = shards(100);
    config
}

/// Node n1 of a fresh cluster on `url`: its configuration, store, map store and a lease.
async fn one_writer(url: &str) -> (ClusterConfig, ClusterStore, ShardMapStore, Lease) {
    let config = config(&cluster_name(), "n1");
    let store = open(url, &config).await;
    let maps = ShardMapStore::new(store.clone(), &config);
    let lease = acquire(&leader_lease(store.clone(), &config)).await;
    (config, store, maps, lease)
}

/// The coordination bucket of `store`, on a connection of the test's own.
async fn raw_coord(url: &str, store: &ClusterStore) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(common::connect(url).await);
    within("open the bucket", js.get_key_value(store.coord_bucket())).await
}

/// A map store of the same cluster on its own connection.
async fn maps_elsewhere(url: &str, config: &ClusterConfig) -> ShardMapStore {
    ShardMapStore::new(open(url, config).await, config)
}

async fn load(maps: &ShardMapStore) -> Option<(StoredShardMap, Revision)> {
    within("load", maps.load()).await
}

async fn history(maps: &ShardMapStore) -> Vec<MapChange> {
    within("reading the history", maps.history()).await
}

async fn watch(maps: &ShardMapStore) -> ShardMapWatch {
    within("watch", maps.watch()).await
}

/// Writes the 100-shard map of `members` (sticky to `previous`); the outcome, within [`STEP`].
async fn write_members(
    maps: &ShardMapStore,
    lease: &impl AsRef<LeaseFence>,
    previous: Option<&ShardMap>,
    members: &[usize],
    reason: &str,
    revision: Revision,
) -> Result<MapWritten, ClusterError> {
    let next = map_of(previous, members, 100);
    in_time("write", maps.write(lease, next, reason, revision)).await
}

/// A successor of `after` written under `fence` must be refused with `NotLeader`.
async fn refused_as_not_leader(
    maps: &ShardMapStore,
    fence: &impl AsRef<LeaseFence>,
    after: &MapWritten,
    reason: &str,
) {
    let result = write_members(
        maps,
        fence,
        Some(&after.stored.map),
        &[3],
        reason,
        after.revision,
    )
    .await;
    assert!(matches!(result, Err(ClusterError::NotLeader)), "{result:?}");
}

/// A write refused for its shard count (64) against 100 configured or stored shards.
fn assert_shard_count_refused(result: Result<MapWritten, ClusterError>) {
    match result {
        Err(ClusterError::InvalidConfig(message)) => {
            assert!(
                message.contains("64") && message.contains("100"),
                "{message}"
            );
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

async fn next_map(watch: &mut ShardMapWatch) -> (StoredShardMap, Revision) {
    timeout(STEP, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no map from the watch within {STEP:?}"))
        .unwrap_or_else(|| panic!("the watch ended"))
        .unwrap_or_else(|e| panic!("watch: {e}"))
}

/// The balanced map of `members` (ids `n<i>`), sticky to `previous`.
fn map_of(previous: Option<&ShardMap>, members: &[usize], count: u32) -> ShardMap {
    let members: Vec<Member> = members
        .iter()
        .map(|i| Member::new(node(&format!("n{i}"))))
        .collect();
    assign_shards(previous, &members, shards(count)).unwrap_or_else(|e| panic!("{e}"))
}

/// The history must be one chain: versions 1..=n each once, epochs non-decreasing, and each
/// record's moves the difference between consecutive maps (when the maps are known).
fn assert_chain(records: &[MapChange]) {
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record.version,
            MapVersion::new(i as u64 + 1),
            "history record {i}: {records:#?}"
        );
        if i > 0 {
            assert!(
                record.epoch >= records[i - 1].epoch,
                "the epoch went down at version {}",
                record.version
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_chain_in_kv_and_history_and_a_watcher_elsewhere_sees_every_one() {
    let server = start_server();
    let cluster = cluster_name();
    let config = config(&cluster, "n1");
    let store = open(&server.url(), &config).await;
    let maps = ShardMapStore::new(store.clone(), &config);
    // The watcher has its own connection and starts before any map exists.
    let watcher = maps_elsewhere(&server.url(), &config).await;
    let mut watching = watch(&watcher).await;
    assert!(load(&maps).await.is_none());
    assert!(history(&maps).await.is_empty());

    let lease = acquire(&leader_lease(store, &config)).await;
    let steps: [&[usize]; 8] = [
        &[1],
        &[1, 2],
        &[1, 2, 3],
        &[1, 3],
        &[1, 3, 4],
        &[3, 4],
        &[3, 4, 5],
        &[],
    ];
    let mut written = Vec::new();
    let (mut previous, mut revision) = (None::<ShardMap>, Revision::default());
    for (i, members) in steps.iter().enumerate() {
        let next = map_of(previous.as_ref(), members, 100);
        let reason = format!("members {members:?}");
        let outcome = within(
            &format!("write {i}"),
            maps.write(&lease, next.clone(), &reason, revision),
        )
        .await;
        assert_eq!(outcome.stored.version, MapVersion::new(i as u64 + 1));
        assert_eq!(outcome.stored.epoch, lease.epoch());
        assert_eq!(outcome.stored.leader, node("n1"));
        assert_eq!(outcome.stored.reason, reason);
        assert_eq!(outcome.stored.map, next);
        assert!(outcome.revision > revision);
        revision = outcome.revision;
        written.push(outcome.stored);
        previous = Some(next);
    }
    let (stored, stored_revision) = load(&maps).await.unwrap_or_else(|| panic!("no map stored"));
    assert_eq!(
        (&stored, stored_revision),
        (written.last().unwrap_or_else(|| unreachable!()), revision)
    );

    let records = history(&maps).await;
    assert_chain(&records);
    assert_eq!(records.len(), written.len());
    let mut before = ShardMap::unassigned(shards(100));
    for (record, stored) in records.iter().zip(&written) {
        assert_eq!(
            (record.epoch, &record.leader, &record.reason),
            (stored.epoch, &stored.leader, &stored.reason)
        );
        assert_eq!(
            record.moved,
            shard_moves(&before, &stored.map),
            "moves of version {}",
            record.version
        );
        before = stored.map.clone();
    }
    assert_eq!(
        records[0].moved.len(),
        100,
        "the first map moves every shard from nobody"
    );

    for expected in &written {
        let (seen, _) = next_map(&mut watching).await;
        assert_eq!(
            &seen, expected,
            "the watcher saw another map at version {}",
            expected.version
        );
    }
    // A watcher that starts now gets the stored map first.
    let (first, first_revision) = next_map(&mut watch(&watcher).await).await;
    assert_eq!((first, first_revision), (stored, revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_under_one_lease_never_fork_the_map() {
    let server = start_server();
    let (config, _, maps_x, lease) = one_writer(&server.url()).await;
    // y writes through its own connection, fenced by the same lease.
    let maps_y = maps_elsewhere(&server.url(), &config).await;
    let watcher = maps_elsewhere(&server.url(), &config).await;
    let mut watching = watch(&watcher).await;

    const ROUNDS: usize = 25;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let current = load(&maps_x).await;
        let (previous, revision) = match &current {
            Some((stored, revision)) => (Some(&stored.map), *revision),
            None => (None, Revision::default()),
        };
        let map_x = map_of(previous, &[1 + round % 3, 4], 100);
        let map_y = map_of(previous, &[1 + round % 3, 5], 100);
        let (reason_x, reason_y) = (format!("x round {round}"), format!("y round {round}"));
        let (from_x, from_y) = tokio::join!(
            maps_x.write(&lease, map_x, &reason_x, revision),
            maps_y.write(&lease, map_y, &reason_y, revision),
        );
        match (from_x, from_y) {
            (Ok(won), Err(ClusterError::Conflict { .. }))
            | (Err(ClusterError::Conflict { .. }), Ok(won)) => {
                assert_eq!(won.stored.version, MapVersion::new(round as u64 + 1));
                winners.push(won.stored);
            }
            (from_x, from_y) => panic!(
                "round {round}: expected one winner and one conflict, got {from_x:?} / {from_y:?}"
            ),
        }
    }
    let x_wins = winners.iter().filter(|w| w.reason.starts_with('x')).count();
    println!(
        "{ROUNDS} racing rounds: x won {x_wins}, y won {}",
        ROUNDS - x_wins
    );

    // The history is one chain, written once per version, matching the winners.
    let records = history(&maps_x).await;
    assert_chain(&records);
    assert_eq!(records.len(), winners.len());
    for (record, winner) in records.iter().zip(&winners) {
        assert_eq!(
            (record.version, record.epoch, &record.leader, &record.reason),
            (winner.version, winner.epoch, &winner.leader, &winner.reason)
        );
    }
    // The watcher (another connection) saw every version in order, and agrees.
    for winner in &winners {
        let (seen, _) = next_map(&mut watching).await;
        assert_eq!(&seen, winner);
    }
}

/// The lease value a renewal of `lease` writes (`{"node", "epoch"}`).
fn lease_value(node: &str, epoch: impl serde::Serialize) -> bytes::Bytes {
    serde_json::to_vec(&serde_json::json!({ "node": node, "epoch": epoch }))
        .unwrap_or_else(|e| panic!("{e}"))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_lets_a_write_follow_its_own_lease_and_refuses_it_once_anyone_else_wrote_it() {
    let server = start_server();
    let (config, store, maps, mut lease) = one_writer(&server.url()).await;
    let v1 = write_members(&maps, &lease, None, &[1], "v1", Revision::default())
        .await
        .unwrap_or_else(|e| panic!("v1: {e}"));

    // A renewal through the lease: the fence follows it.
    within("renew", lease.renew()).await;
    assert!(lease.revision().get() > lease.epoch().get());
    assert_eq!(lease.fence().revision(), lease.revision());
    let v2 = write_members(
        &maps,
        &lease,
        Some(&v1.stored.map),
        &[1, 2],
        "v2",
        v1.revision,
    )
    .await
    .unwrap_or_else(|e| panic!("v2 after a renewal: {e}"));

    // A renewal of the same lease the fence has not seen (as when its answer is still on the
    // way): the server refuses the first batch, the write sees its own lease and tries again.
    let fence = lease.fence();
    let renewed = within(
        "renew behind the fence",
        store.put_with_ttl(
            Bucket::Coord,
            LEASE_KEY,
            lease_value("n1", lease.epoch()),
            Expect::Revision(lease.revision()),
            config.lease_ttl,
        ),
    )
    .await;
    assert!(fence.revision() < renewed);
    let v3 = write_members(&maps, &fence, Some(&v2.stored.map), &[2], "v3", v2.revision)
        .await
        .unwrap_or_else(|e| panic!("v3 after an unseen renewal: {e}"));

    // Someone else writes the lease key: the local fence is still valid, the server refuses.
    within(
        "take the lease behind n1's back",
        store.put_with_ttl(
            Bucket::Coord,
            LEASE_KEY,
            lease_value("intruder", renewed),
            Expect::Revision(renewed),
            config.lease_ttl,
        ),
    )
    .await;
    let records = history(&maps).await;
    assert!(fence.is_valid(), "only the server can refuse this write");
    let refused = write_members(&maps, &fence, Some(&v3.stored.map), &[3], "v4", v3.revision).await;
    assert!(
        matches!(
            refused,
            Err(ClusterError::Fenced { epoch, lease_revision })
                if epoch == lease.epoch() && lease_revision == fence.revision()
        ),
        "a write under a lease someone else wrote: {refused:?}"
    );
    assert_eq!(load(&maps).await, Some((v3.stored, v3.revision)));
    assert_eq!(
        history(&maps).await,
        records,
        "a refused write reached the history"
    );
    assert_eq!(records.len(), 3);
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_records_cannot_be_deleted() {
    let server = start_server();
    let (_, store, maps, lease) = one_writer(&server.url()).await;
    write_members(&maps, &lease, None, &[1], "v1", Revision::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let coord = raw_coord(&server.url(), &store).await;
    let record = within(
        "reading the history record",
        coord
            .stream
            .get_last_raw_message_by_subject(&store.history_subject(MapVersion::new(1))),
    )
    .await;
    let deleted = in_time("delete", coord.stream.delete_message(record.sequence)).await;
    assert!(
        deleted.is_err(),
        "a history record was deleted: {deleted:?}"
    );
    assert_eq!(history(&maps).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_an_expired_or_released_lease_or_a_stale_revision_change_nothing() {
    let server = start_server();
    let cluster = cluster_name();
    let mut config = config(&cluster, "n1");
    config.lease_ttl = Duration::from_secs(3);
    let store = open(&server.url(), &config).await;
    let maps = ShardMapStore::new(store.clone(), &config);
    let leases = leader_lease(store, &config);
    let lease = acquire(&leases).await;
    let first = write_members(&maps, &lease, None, &[1, 2], "first", Revision::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let unchanged = |what: &'static str| {
        let maps = &maps;
        let first = &first;
        async move {
            assert_eq!(
                load(maps).await,
                Some((first.stored.clone(), first.revision)),
                "{what} changed the map"
            );
            assert_eq!(history(maps).await.len(), 1, "{what} changed the history");
        }
    };

    // A stale revision (as from a leader whose view is behind): Conflict.
    let stale = write_members(&maps, &lease, None, &[3], "stale view", Revision::default()).await;
    assert!(
        matches!(stale, Err(ClusterError::Conflict { expected, .. }) if expected == Revision::default()),
        "{stale:?}"
    );
    unchanged("a stale-revision write").await;

    // Expired by its own deadline (never renewed): NotLeader, without touching NATS.
    let fence = lease.fence();
    timeout(Duration::from_secs(3), fence.invalidated())
        .await
        .unwrap_or_else(|_| panic!("the lease did not expire by its deadline"));
    refused_as_not_leader(&maps, &lease, &first, "expired").await;
    unchanged("a write under an expired lease").await;

    // Released: the fence is invalid at once.
    drop(lease);
    let again = loop {
        if let Some(lease) = within("acquire", leases.try_acquire()).await {
            break lease;
        }
        sleep(Duration::from_millis(50)).await;
    };
    let fence = again.fence();
    within("release", again.release()).await;
    refused_as_not_leader(&maps, &fence, &first, "released").await;
    unchanged("a write under a released lease").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_with_another_shard_count_is_refused_and_nothing_is_written() {
    let server = start_server();
    let (config, store, maps, lease) = one_writer(&server.url()).await;

    // Against the configuration (no map yet).
    let wrong = in_time(
        "write",
        maps.write(
            &lease,
            map_of(None, &[1], 64),
            "64 shards",
            Revision::default(),
        ),
    )
    .await;
    assert_shard_count_refused(wrong);
    assert!(load(&maps).await.is_none(), "a refused map was stored");
    assert!(
        history(&maps).await.is_empty(),
        "a refused map reached the history"
    );

    // Against the stored map, from a node configured with another shard count.
    let first = write_members(&maps, &lease, None, &[1, 2], "first", Revision::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut other_config = config.clone();
    other_config.shard_count = shards(64);
    let other = ShardMapStore::new(store, &other_config);
    let wrong = in_time(
        "write",
        other.write(&lease, map_of(None, &[1], 64), "64 shards", first.revision),
    )
    .await;
    assert_shard_count_refused(wrong);
    assert_eq!(
        load(&maps).await,
        Some((first.stored, first.revision)),
        "the refused map changed the stored one"
    );
    assert_eq!(
        history(&maps).await.len(),
        1,
        "the refused map reached the history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_skips_maps_with_a_lower_epoch_or_an_old_version() {
    let server = start_server();
    let (config, store, maps, lease) = one_writer(&server.url()).await;
    let watcher = maps_elsewhere(&server.url(), &config).await;
    let mut watching = watch(&watcher).await;
    let v1 = write_members(&maps, &lease, None, &[1, 2], "first", Revision::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next_map(&mut watching).await.0, v1.stored);

    let coord = raw_coord(&server.url(), &store).await;
    // Unfenced writes straight into KV (a rogue writer): a lower epoch, then an old version
    // under a high epoch, then a valid successor.
    let rogue = |version: u64, epoch: u64, members: &[usize]| {
        serde_json::to_vec(&serde_json::json!({
            "version": version,
            "epoch": epoch,
            "leader": "rogue",
            "reason": format!("rogue v{version} e{epoch}"),
            "map": map_of(Some(&v1.stored.map), members, 100),
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let epoch = lease.epoch().get();
    let low_epoch = epoch - 1;
    for value in [rogue(2, low_epoch, &[3]), rogue(1, epoch + 10, &[4])] {
        within("put", coord.put(MAP_KEY, value.into())).await;
    }
    let valid = rogue(3, epoch + 10, &[5]);
    within("put", coord.put(MAP_KEY, valid.into())).await;
    let (seen, _) = next_map(&mut watching).await;
    assert_eq!(
        (seen.version.get(), seen.epoch.get()),
        (3, epoch + 10),
        "the watch yielded a stale map: {seen:?}"
    );
    assert_eq!(watching.max_epoch().get(), epoch + 10);
    // And the fenced writer, now behind the stored epoch, is refused.
    let (_, revision) = load(&maps).await.unwrap_or_else(|| panic!("no map"));
    let refused = write_members(&maps, &lease, None, &[1], "behind", revision).await;
    assert!(
        matches!(refused, Err(ClusterError::NotLeader)),
        "{refused:?}"
    );
}

/// Racing rounds per phase of the R3 test.
const R3_ROUNDS: usize = 30;

fn r3_config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = base_config(cluster, id, Duration::from_secs(10), Duration::from_secs(5));
    config.replicas = 3;
    config.shard_count = ShardCount::new(16).unwrap_or_else(|e| panic!("{e}"));
    config
}

/// One store per server of `nats`, all of node `n1` of one cluster.
async fn r3_stores(nats: &NatsCluster) -> (ClusterConfig, Vec<ClusterStore>) {
    let config = r3_config(&common::cluster_name("r3"), "n1");
    let mut stores = Vec::new();
    for url in nats.urls() {
        stores.push(open(&url, &config).await);
    }
    (config, stores)
}

/// Exactly one `Ok` and conflicts otherwise; the winner's value.
fn one_winner<T: std::fmt::Debug>(round: usize, results: Vec<Result<T, ClusterError>>) -> T {
    let mut winner = None;
    for result in results {
        match result {
            Ok(won) if winner.is_none() => winner = Some(won),
            Err(ClusterError::Conflict { .. }) => {}
            other => panic!("round {round}: expected one winner and conflicts, got {other:?}"),
        }
    }
    winner.unwrap_or_else(|| panic!("round {round}: nobody won"))
}

/// On a 3-replica cluster a CAS that loses because another expected-sequence write to the
/// subject is in flight comes back as 10164 (async-nats: `PublishErrorKind::Other`), not 10071.
/// Each round one writer per server races on the same revision, for TTL writes (the lease's
/// and the member keys' CAS) and for map writes: exactly one wins, every other one gets
/// `Conflict`, never a backend error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_races_on_a_3_replica_cluster_are_conflicts() {
    let nats = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let (config, stores) = r3_stores(&nats).await;

    // TTL writes (the lease's and the member keys' CAS), one writer per server.
    let mut revision = Revision::default();
    for round in 0..R3_ROUNDS {
        let writes = stores.iter().enumerate().map(|(i, store)| {
            store.put_with_ttl(
                Bucket::Members,
                "race",
                format!("writer {i}").into(),
                Expect::Revision(revision),
                Duration::from_secs(30),
            )
        });
        let results = in_time("a racing round", join_all(writes)).await;
        revision = one_winner(round, results);
    }

    // Shard-map writes under one lease, one writer per server.
    let lease = acquire(&leader_lease(stores[0].clone(), &config)).await;
    let maps: Vec<ShardMapStore> = stores
        .iter()
        .map(|store| ShardMapStore::new(store.clone(), &config))
        .collect();
    let (mut previous, mut revision) = (None, Revision::default());
    for round in 0..R3_ROUNDS {
        let writes = maps.iter().enumerate().map(|(i, maps)| {
            let members = [Member::new(node(&format!("m{}", (round + i) % 5)))];
            let next = assign_shards(previous.as_ref(), &members, config.shard_count)
                .unwrap_or_else(|e| panic!("{e}"));
            let reason = format!("round {round} writer {i}");
            let lease = &lease;
            async move { maps.write(lease, next, &reason, revision).await }
        });
        let results = in_time("a racing round", join_all(writes)).await;
        let won = one_winner(round, results);
        assert_eq!(won.stored.version, MapVersion::new(round as u64 + 1));
        revision = won.revision;
        previous = Some(won.stored.map);
    }
    let history = in_time("history", maps[0].history()).await;
    assert_eq!(history.map(|h| h.len()).ok(), Some(R3_ROUNDS));
}
