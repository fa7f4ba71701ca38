//! Helpers for the tests that work on the cluster store and its leader lease directly (not
//! through electors or managers): opening the store and taking the lease. Included, next to
//! `common.rs`, with `#[path = "support/store.rs"] mod store;`.

use aether_cluster::ClusterConfig;
use aether_cluster::kv::ClusterStore;
use aether_cluster::lease::{LeaderLease, Lease};

use crate::common::{connect, within};

pub(crate) async fn open(url: &str, config: &ClusterConfig) -> ClusterStore {
    let client = connect(url).await;
    within(
        &format!("opening the cluster store at {url}"),
        ClusterStore::open(client, config),
    )
    .await
}

pub(crate) fn leader_lease(store: ClusterStore, config: &ClusterConfig) -> LeaderLease {
    LeaderLease::new(store, config).unwrap_or_else(|e| panic!("{e}"))
}

/// A free lease, taken.
pub(crate) async fn acquire(lease: &LeaderLease) -> Lease {
    within("acquire", lease.try_acquire())
        .await
        .unwrap_or_else(|| panic!("{} could not acquire a free lease", lease.node()))
}
