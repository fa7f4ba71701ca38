//! The cluster's metrics: membership, the leader lease, the shard map and rebalancing. Names,
//! units and labels are listed in `docs/metrics.md`.

use metrics::{Unit, describe_counter, describe_gauge};

/// Registers the description and unit of every cluster metric with the installed recorder.
pub fn describe() {
    let counters = [
        (
            "aether_cluster_membership_events_total",
            "Membership changes this node saw (label event: joined, left, suspected, failed, recovered).",
        ),
        (
            "aether_cluster_lease_acquired_total",
            "Times this node became the leader.",
        ),
        (
            "aether_cluster_lease_lost_total",
            "Times this node lost the leader lease.",
        ),
        (
            "aether_cluster_shard_map_writes_total",
            "Shard maps this node wrote as the leader.",
        ),
        (
            "aether_cluster_shard_map_fenced_total",
            "Shard-map writes refused because a newer leader fenced this one.",
        ),
        (
            "aether_cluster_shard_moves_total",
            "Shards whose owner changed in the shard maps this node wrote (rebalancing moves).",
        ),
        (
            "aether_cluster_handoffs_settled_total",
            "Shard maps written to settle moves whose earlier owners released their shards.",
        ),
        (
            "aether_cluster_rebalance_conflicts_total",
            "Rebalancing steps that found the shard map changed meanwhile and recomputed.",
        ),
    ];
    for (name, what) in counters {
        describe_counter!(name, Unit::Count, what);
    }
    describe_gauge!(
        "aether_cluster_members",
        Unit::Count,
        "Members of the cluster in this node's view."
    );
    describe_gauge!(
        "aether_cluster_shard_map_version",
        Unit::Count,
        "Version of the last shard map this node wrote as the leader."
    );
}
