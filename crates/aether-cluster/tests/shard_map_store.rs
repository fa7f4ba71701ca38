//! The fenced shard map and its history against a real `nats-server`. What must hold, and why:
//!
//! - **a linear chain**: every write is version + 1 under the writer's epoch, the history stream
//!   has exactly one record per version (with the moved shards and the reason), and a watcher
//!   on another connection sees every version in order and ends on the stored map;
//! - **no fork, even with two valid leases**: two writers whose leases are both valid (which
//!   the lease protocol forbids; simulated with leases from two different lease buckets) race
//!   on the same revision round after round — exactly one write wins each round, versions
//!   strictly increase by one, each version is written once, epochs never decrease;
//! - **fencing**: a write under a lower epoch than the stored map's, under an expired or a
//!   released lease, or on a stale revision is refused with a typed error and changes nothing
//!   (map, revision and history as before);
//! - **bad input**: a map with another shard count than the configuration or the stored map is
//!   refused with [`ClusterError::InvalidConfig`] and nothing is written;
//! - **history repair**: a history record lost after its map write (simulated by deleting it)
//!   is re-created exactly (same moves and reason) by the next write or by `repair_history`; a
//!   history missing more than its last record blocks writes instead of being papered over;
//! - **watch filtering**: maps written outside the fence with a lower epoch (or a version not
//!   above the last one) are not yielded by the watch.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;
#[path = "support/store.rs"]
mod store;

use std::time::Duration;

use aether_cluster::kv::{ClusterStore, MAP_KEY};
use aether_cluster::lease::{Lease, LeaseFence};
use aether_cluster::shard_map_store::{
    MapChange, MapWritten, ShardMapStore, ShardMapWatch, StoredShardMap,
};
use aether_cluster::{ClusterConfig, ClusterError};
use aether_core::{Member, ShardCount, ShardMap, assign_shards, shard_moves};
use common::{STEP, base_config, in_time, node, start_server, within};
use futures::StreamExt;
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

/// A map store of the same cluster on its own connection.
async fn maps_elsewhere(url: &str, config: &ClusterConfig) -> ShardMapStore {
    ShardMapStore::new(open(url, config).await, config)
}

async fn load(maps: &ShardMapStore) -> Option<(StoredShardMap, u64)> {
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
    revision: u64,
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

async fn next_map(watch: &mut ShardMapWatch) -> (StoredShardMap, u64) {
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
            i as u64 + 1,
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
    let (mut previous, mut revision) = (None::<ShardMap>, 0);
    for (i, members) in steps.iter().enumerate() {
        let next = map_of(previous.as_ref(), members, 100);
        let reason = format!("members {members:?}");
        let outcome = within(
            &format!("write {i}"),
            maps.write(&lease, next.clone(), &reason, revision),
        )
        .await;
        assert!(
            outcome.history_error.is_none(),
            "{:?}",
            outcome.history_error
        );
        assert_eq!(outcome.stored.version, i as u64 + 1);
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
async fn two_writers_with_valid_leases_racing_never_fork_the_map() {
    let server = start_server();
    let (cluster_x, cluster_y) = (cluster_name(), cluster_name());
    let (config_x, config_y) = (config(&cluster_x, "x"), config(&cluster_y, "y"));
    // x and y take their leases from two different lease buckets, so both hold a valid lease
    // at once — a split brain the lease itself forbids — but share x's map and history.
    let store_x = open(&server.url(), &config_x).await;
    let mut store_y = open(&server.url(), &config_y).await;
    store_y.shard_map = store_x.shard_map.clone();
    store_y.history = store_x.history.clone();
    store_y.history_subject = store_x.history_subject.clone();
    let lease_x = leader_lease(store_x.clone(), &config_x);
    let lease_y = leader_lease(store_y.clone(), &config_y);
    let maps_x = ShardMapStore::new(store_x, &config_x);
    let maps_y = ShardMapStore::new(store_y, &config_y);
    let watcher = maps_elsewhere(&server.url(), &config_x).await;
    let mut watching = watch(&watcher).await;

    let x = acquire(&lease_x).await;
    let mut y = acquire(&lease_y).await;
    assert!(x.is_valid() && y.is_valid());
    assert_eq!(x.epoch(), y.epoch(), "both first leases of fresh buckets");

    // Equal epochs: only the CAS decides, every round.
    const ROUNDS: usize = 25;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let current = load(&maps_x).await;
        let (previous, revision) = match &current {
            Some((stored, revision)) => (Some(&stored.map), *revision),
            None => (None, 0),
        };
        let map_x = map_of(previous, &[1 + round % 3, 4], 100);
        let map_y = map_of(previous, &[1 + round % 3, 5], 100);
        let (reason_x, reason_y) = (format!("x round {round}"), format!("y round {round}"));
        let (from_x, from_y) = tokio::join!(
            maps_x.write(&x, map_x, &reason_x, revision),
            maps_y.write(&y, map_y, &reason_y, revision),
        );
        match (from_x, from_y) {
            (Ok(won), Err(ClusterError::Conflict { .. }))
            | (Err(ClusterError::Conflict { .. }), Ok(won)) => {
                assert!(won.history_error.is_none(), "{:?}", won.history_error);
                assert_eq!(won.stored.version, round as u64 + 1);
                winners.push(won.stored);
            }
            (from_x, from_y) => panic!(
                "round {round}: expected one winner and one conflict, got {from_x:?} / {from_y:?}"
            ),
        }
    }
    let x_wins = winners.iter().filter(|w| w.leader == node("x")).count();
    println!(
        "equal epochs, {ROUNDS} racing rounds: x won {x_wins}, y won {}",
        ROUNDS - x_wins
    );

    // y re-acquires: a higher epoch. Its write wins; x's later write (with the right revision)
    // is refused as a stale epoch and changes nothing.
    within("release", y.release()).await;
    y = acquire(&lease_y).await;
    assert!(y.epoch() > x.epoch());
    let (current, revision) = load(&maps_x).await.unwrap_or_else(|| panic!("no map"));
    let newer = write_members(
        &maps_y,
        &y,
        Some(&current.map),
        &[5, 6],
        "y, newer epoch",
        revision,
    )
    .await
    .unwrap_or_else(|e| panic!("the newer epoch's write: {e}"));
    winners.push(newer.stored.clone());
    let records_before = history(&maps_x).await;
    let stale = write_members(
        &maps_x,
        &x,
        Some(&newer.stored.map),
        &[1],
        "x, stale",
        newer.revision,
    )
    .await;
    assert!(
        matches!(stale, Err(ClusterError::NotLeader)),
        "stale-epoch write: {stale:?}"
    );
    assert!(
        x.is_valid(),
        "x's lease is still valid: only the epoch refused it"
    );
    assert_eq!(
        load(&maps_x).await,
        Some((newer.stored.clone(), newer.revision)),
        "the refused write changed the map"
    );
    assert_eq!(
        history(&maps_x).await,
        records_before,
        "the refused write changed the history"
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
    let first = write_members(&maps, &lease, None, &[1, 2], "first", 0)
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
    let stale = write_members(&maps, &lease, None, &[3], "stale view", 0).await;
    assert!(
        matches!(stale, Err(ClusterError::Conflict { expected: 0, .. })),
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
        maps.write(&lease, map_of(None, &[1], 64), "64 shards", 0),
    )
    .await;
    assert_shard_count_refused(wrong);
    assert!(load(&maps).await.is_none(), "a refused map was stored");
    assert!(
        history(&maps).await.is_empty(),
        "a refused map reached the history"
    );

    // Against the stored map, from a node configured with another shard count.
    let first = write_members(&maps, &lease, None, &[1, 2], "first", 0)
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

/// Deletes the history's last record, as if its append had never happened.
async fn lose_last_history_record(store: &ClusterStore) -> u64 {
    let last = within(
        "reading the history",
        store
            .history
            .get_last_raw_message_by_subject(&store.history_subject),
    )
    .await;
    let deleted = within("delete", store.history.delete_message(last.sequence)).await;
    assert!(deleted);
    last.sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_history_record_is_rebuilt_exactly_by_the_next_write_or_a_repair() {
    let server = start_server();
    let (_, store, maps, lease) = one_writer(&server.url()).await;
    let write = |previous: Option<ShardMap>, members: &'static [usize], revision: u64| {
        let (maps, lease) = (&maps, &lease);
        async move {
            let reason = format!("members {members:?}");
            write_members(maps, lease, previous.as_ref(), members, &reason, revision)
                .await
                .unwrap_or_else(|e| panic!("write: {e}"))
        }
    };

    let v1 = write(None, &[1, 2], 0).await;
    let v2 = write(Some(v1.stored.map.clone()), &[1, 2, 3], v1.revision).await;
    let complete = history(&maps).await;
    assert_eq!(complete.len(), 2);

    // v2's record is lost; the next write first re-creates it, identical.
    lose_last_history_record(&store).await;
    assert_eq!(history(&maps).await, complete[..1]);
    let v3 = write(Some(v2.stored.map.clone()), &[2, 3], v2.revision).await;
    assert!(v3.history_error.is_none());
    let records = history(&maps).await;
    assert_chain(&records);
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[..2],
        complete[..],
        "the repaired record differs from the lost one"
    );
    assert_eq!(
        records[2].moved,
        shard_moves(&v2.stored.map, &v3.stored.map)
    );

    // v3's record is lost; repair_history puts it back, once.
    lose_last_history_record(&store).await;
    let repaired = in_time("repair", maps.repair_history()).await;
    assert!(matches!(repaired, Ok(true)), "{repaired:?}");
    assert_eq!(history(&maps).await, records);
    let again = in_time("repair", maps.repair_history()).await;
    assert!(matches!(again, Ok(false)), "{again:?}");

    // Two records missing cannot be rebuilt: writes are refused, nothing changes.
    lose_last_history_record(&store).await;
    lose_last_history_record(&store).await;
    let blocked = write_members(
        &maps,
        &lease,
        Some(&v3.stored.map),
        &[1],
        "blocked",
        v3.revision,
    )
    .await;
    match blocked {
        Err(ClusterError::Backend { message, .. }) => {
            assert!(message.contains("history"), "{message}")
        }
        other => panic!("expected a Backend error about the history, got {other:?}"),
    }
    assert_eq!(load(&maps).await, Some((v3.stored, v3.revision)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_skips_maps_with_a_lower_epoch_or_an_old_version() {
    let server = start_server();
    let (config, store, maps, lease) = one_writer(&server.url()).await;
    let watcher = maps_elsewhere(&server.url(), &config).await;
    let mut watching = watch(&watcher).await;
    let v1 = write_members(&maps, &lease, None, &[1, 2], "first", 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next_map(&mut watching).await.0, v1.stored);

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
    let low_epoch = lease.epoch() - 1;
    for value in [
        rogue(2, low_epoch, &[3]),
        rogue(1, lease.epoch() + 10, &[4]),
    ] {
        within("put", store.shard_map.put(MAP_KEY, value.into())).await;
    }
    let valid = rogue(3, lease.epoch() + 10, &[5]);
    within("put", store.shard_map.put(MAP_KEY, valid.into())).await;
    let (seen, _) = next_map(&mut watching).await;
    assert_eq!(
        (seen.version, seen.epoch),
        (3, lease.epoch() + 10),
        "the watch yielded a stale map: {seen:?}"
    );
    assert_eq!(watching.max_epoch(), lease.epoch() + 10);
    // And the fenced writer, now behind the stored epoch, is refused.
    let (_, revision) = load(&maps).await.unwrap_or_else(|| panic!("no map"));
    let refused = write_members(&maps, &lease, None, &[1], "behind", revision).await;
    assert!(
        matches!(refused, Err(ClusterError::NotLeader)),
        "{refused:?}"
    );
}
