//! `aether cluster status|watch|history`: what the cluster keeps in its KV buckets, read
//! without joining it.

use std::collections::{BTreeMap, HashMap};

use aether_cluster::ClusterError;
use aether_cluster::kv::{ClusterStore, LEASE_KEY, MAP_KEY};
use aether_cluster::lease::LeaderLease;
use aether_cluster::shard_map_store::{ShardMapStore, StoredShardMap};
use aether_core::BackendError;
use aether_core::{ShardMap, shard_moves};
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::Serialize;

use super::actor::reader_config;
use crate::args::ClusterCommand;
use crate::connect::Nats;
use crate::error::CliError;
use crate::output;

/// How many history records `status` shows.
const LAST_MOVES: usize = 5;

/// Runs `aether cluster <command>`.
pub(crate) async fn run(
    nats: &Nats,
    json: bool,
    name: &str,
    command: &ClusterCommand,
) -> Result<(), CliError> {
    let store = ClusterStore::open_existing(nats.client.clone(), name, nats.timeout).await?;
    match command {
        ClusterCommand::Status => status(nats, json, name, store).await,
        ClusterCommand::History => history(nats, json, name, store).await,
        ClusterCommand::Watch { count } => watch(nats, json, name, store, *count).await,
    }
}

/// One node in `status`.
#[derive(Debug, Serialize)]
struct NodeRow {
    id: String,
    /// `alive` (its member key is live) or `gone` (it still owns shards in the map).
    state: &'static str,
    address: Option<String>,
    app_version: Option<String>,
    shards: u32,
    leader: bool,
}

/// One history record in `status`.
#[derive(Debug, Serialize)]
struct MoveRow {
    version: u64,
    epoch: u64,
    leader: String,
    reason: String,
    moved: usize,
}

/// The whole `status` document.
#[derive(Debug, Serialize)]
struct Status {
    cluster: String,
    leader: Option<String>,
    epoch: Option<u64>,
    map_version: Option<u64>,
    shard_count: Option<u32>,
    unassigned_shards: Option<usize>,
    nodes: Vec<NodeRow>,
    last_moves: Vec<MoveRow>,
}

async fn status(nats: &Nats, json: bool, name: &str, store: ClusterStore) -> Result<(), CliError> {
    let config = reader_config(name, nats)?;
    let members = store.members().await?;
    let holder = LeaderLease::new(store.clone(), &config)?.current().await?;
    let maps = ShardMapStore::new(store, &config);
    let map = maps.load_latest().await?;
    let history = maps.history().await?;
    let shards = map
        .as_ref()
        .map(|m| shards_per_node(&m.map))
        .unwrap_or_default();
    let leader = holder.as_ref().map(|h| h.node.to_string());
    let mut nodes: Vec<NodeRow> = members
        .iter()
        .map(|m| NodeRow {
            id: m.id.to_string(),
            state: "alive",
            address: Some(m.metadata.address.clone()),
            app_version: Some(m.metadata.app_version.clone()),
            shards: shards.get(m.id.as_str()).copied().unwrap_or(0),
            leader: leader.as_deref() == Some(m.id.as_str()),
        })
        .collect();
    for (node, count) in &shards {
        if !nodes.iter().any(|n| &n.id == node) {
            nodes.push(NodeRow {
                id: node.clone(),
                state: "gone",
                address: None,
                app_version: None,
                shards: *count,
                leader: leader.as_deref() == Some(node.as_str()),
            });
        }
    }
    let last_moves = history
        .iter()
        .rev()
        .take(LAST_MOVES)
        .map(|c| MoveRow {
            version: c.version.get(),
            epoch: c.epoch.get(),
            leader: c.leader.to_string(),
            reason: c.reason.clone(),
            moved: c.moved.len(),
        })
        .collect();
    let status = Status {
        cluster: name.to_owned(),
        leader,
        epoch: holder.as_ref().map(|h| h.epoch.get()),
        map_version: map.as_ref().map(|m| m.version.get()),
        shard_count: map.as_ref().map(|m| m.map.shard_count().get()),
        unassigned_shards: map.as_ref().map(|m| m.map.unassigned_shards().count()),
        nodes,
        last_moves,
    };
    if json {
        return output::json(&status);
    }
    print_status(&status)
}

fn print_status(status: &Status) -> Result<(), CliError> {
    let leader = match (&status.leader, status.epoch) {
        (Some(node), Some(epoch)) => format!("leader {node} (epoch {epoch})"),
        _ => "no leader".to_owned(),
    };
    let map = match (status.map_version, status.shard_count) {
        (Some(version), Some(count)) => format!(
            "shard map version {version}, {count} shards ({} unassigned)",
            status.unassigned_shards.unwrap_or(0)
        ),
        _ => "no shard map yet".to_owned(),
    };
    output::line(format!("cluster {}: {leader}, {map}", status.cluster))?;
    output::line(output::table(
        &["NODE", "STATE", "ADDRESS", "VERSION", "SHARDS", "LEADER"],
        &["SHARDS"],
        status
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.id.clone(),
                    n.state.to_owned(),
                    n.address.clone().unwrap_or_default(),
                    n.app_version.clone().unwrap_or_default(),
                    n.shards.to_string(),
                    if n.leader {
                        "*".to_owned()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect(),
    ))?;
    if status.last_moves.is_empty() {
        return Ok(());
    }
    output::line("last map changes:")?;
    output::line(moves_table(status.last_moves.iter().map(|m| {
        (
            m.version,
            m.epoch,
            m.leader.clone(),
            m.reason.clone(),
            m.moved,
        )
    })))
}

fn moves_table(rows: impl Iterator<Item = (u64, u64, String, String, usize)>) -> String {
    output::table(
        &["VERSION", "EPOCH", "LEADER", "REASON", "MOVED"],
        &["VERSION", "EPOCH", "MOVED"],
        rows.map(|(version, epoch, leader, reason, moved)| {
            vec![
                version.to_string(),
                epoch.to_string(),
                leader,
                reason,
                moved.to_string(),
            ]
        })
        .collect(),
    )
}

/// Shards owned per node id.
fn shards_per_node(map: &ShardMap) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for (_, owner) in map.iter() {
        if let Some(node) = owner {
            *counts.entry(node.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

async fn history(nats: &Nats, json: bool, name: &str, store: ClusterStore) -> Result<(), CliError> {
    let config = reader_config(name, nats)?;
    let history = ShardMapStore::new(store, &config).history().await?;
    if json {
        return output::json(&serde_json::json!({ "cluster": name, "history": history }));
    }
    if history.is_empty() {
        return output::line(format!("cluster {name} has no shard map yet"));
    }
    output::line(moves_table(history.iter().map(|c| {
        (
            c.version.get(),
            c.epoch.get(),
            c.leader.to_string(),
            c.reason.clone(),
            c.moved.len(),
        )
    })))
}

/// One topology change, as `watch` prints it.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Change {
    /// A member key was written: a node joined (or restarted).
    NodeJoined { node: String, incarnation: u64 },
    /// A member key went away: the node left or its key expired.
    NodeLeft { node: String },
    /// The lease has a new holder or epoch.
    LeaderElected { node: String, epoch: u64 },
    /// Nobody holds the lease.
    LeaderGone,
    /// A new shard-map version.
    ShardsMoved {
        version: u64,
        epoch: u64,
        leader: String,
        reason: String,
        moved: usize,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NodeJoined { node, incarnation } => {
                write!(f, "node {node} joined (incarnation {incarnation})")
            }
            Self::NodeLeft { node } => write!(f, "node {node} left"),
            Self::LeaderElected { node, epoch } => {
                write!(f, "leader {node} (epoch {epoch})")
            }
            Self::LeaderGone => write!(f, "no leader"),
            Self::ShardsMoved {
                version,
                epoch,
                leader,
                reason,
                moved,
            } => write!(
                f,
                "shard map version {version} by {leader} (epoch {epoch}): {moved} shards moved ({reason})"
            ),
        }
    }
}

async fn watch(
    nats: &Nats,
    json: bool,
    name: &str,
    store: ClusterStore,
    count: Option<u64>,
) -> Result<(), CliError> {
    let js = nats.jetstream();
    let open = |bucket: String| {
        let js = js.clone();
        async move {
            js.get_key_value(&bucket)
                .await
                .map_err(|e| nats.error(&format!("cannot open bucket {bucket}"), e))
        }
    };
    let members = open(store.members_bucket().to_owned()).await?;
    let coord = open(store.coord_bucket().to_owned()).await?;
    let config = reader_config(name, nats)?;
    let mut topology = Topology {
        members: store
            .members()
            .await?
            .into_iter()
            .map(|m| (m.id.to_string(), m.incarnation))
            .collect(),
        map: ShardMapStore::new(store.clone(), &config)
            .load_latest()
            .await?,
        leader: LeaderLease::new(store.clone(), &config)?
            .current()
            .await?
            .map(|holder| (holder.node.to_string(), holder.epoch.get())),
    };
    let watch_error = |e: kv::WatchError| nats.error("cannot watch the cluster", e);
    let mut member_changes = members.watch_all().await.map_err(watch_error)?;
    let mut coord_changes = coord
        .watch_many([LEASE_KEY, MAP_KEY])
        .await
        .map_err(watch_error)?;
    eprintln!("watching cluster {name} on {}", nats.url);
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let entry = tokio::select! {
            Some(entry) = member_changes.next() => entry,
            Some(entry) = coord_changes.next() => entry,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            else => return Ok(()),
        };
        let entry = entry.map_err(|e| nats.error("the cluster watch failed", e))?;
        let put = entry.operation == kv::Operation::Put;
        let Some(change) = topology.change_of(&entry.key, put, &entry.value, entry.revision)?
        else {
            continue;
        };
        seen += 1;
        if json {
            output::json_line(&change)?;
        } else {
            output::line(format!("{}  {change}", output::time(&chrono::Utc::now())))?;
        }
    }
    Ok(())
}

/// What `watch` has seen, to tell changes from renewals.
#[derive(Debug)]
struct Topology {
    /// Live members and their incarnations.
    members: HashMap<String, u64>,
    /// The newest shard map.
    map: Option<StoredShardMap>,
    /// The lease's holder and epoch.
    leader: Option<(String, u64)>,
}

impl Topology {
    /// What a changed entry of the members or coordination bucket means; `None` for renewals
    /// (a member's heartbeat, the lease renewed by its holder) and anything else that changes
    /// no topology.
    /// `key` was written (`put`: a value, otherwise a delete, purge or expiry marker) with
    /// `value` at `revision`.
    fn change_of(
        &mut self,
        key: &str,
        put: bool,
        value: &[u8],
        revision: u64,
    ) -> Result<Option<Change>, CliError> {
        if key == LEASE_KEY {
            if !put {
                return Ok(self.leader.take().map(|_| Change::LeaderGone));
            }
            let value: serde_json::Value = serde_json::from_slice(value)
                .map_err(|e| ClusterError::backend("the lease value is not valid", e))?;
            let node = value["node"].as_str().unwrap_or_default().to_owned();
            let epoch = value["epoch"].as_u64().unwrap_or(revision);
            let holder = Some((node.clone(), epoch));
            if self.leader == holder {
                return Ok(None);
            }
            self.leader = holder;
            return Ok(Some(Change::LeaderElected { node, epoch }));
        }
        if key == MAP_KEY {
            if !put {
                return Ok(None);
            }
            let next: StoredShardMap = serde_json::from_slice(value)
                .map_err(|e| ClusterError::backend("the shard map is not valid", e))?;
            if self.map.as_ref().is_some_and(|m| m.version >= next.version) {
                return Ok(None);
            }
            let moved = match self.map.as_ref() {
                Some(previous) => shard_moves(&previous.map, &next.map).len(),
                None => next.map.iter().filter(|(_, owner)| owner.is_some()).count(),
            };
            let change = Change::ShardsMoved {
                version: next.version.get(),
                epoch: next.epoch.get(),
                leader: next.leader.to_string(),
                reason: next.reason.clone(),
                moved,
            };
            self.map = Some(next);
            return Ok(Some(change));
        }
        // A member key.
        if !put {
            return Ok(self.members.remove(key).map(|_| Change::NodeLeft {
                node: key.to_owned(),
            }));
        }
        let info: aether_cluster::membership::MemberInfo = serde_json::from_slice(value)
            .map_err(|e| ClusterError::backend("a member value is not valid", e))?;
        let node = info.id.to_string();
        if self.members.insert(node.clone(), info.incarnation) == Some(info.incarnation) {
            return Ok(None);
        }
        Ok(Some(Change::NodeJoined {
            node,
            incarnation: info.incarnation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            members: HashMap::from([("n1".to_owned(), 7)]),
            map: None,
            leader: Some(("n1".to_owned(), 3)),
        }
    }

    fn member(id: &str, incarnation: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id,
            "metadata": {"address": "", "weight": 1, "app_version": ""},
            "incarnation": incarnation
        }))
        .unwrap()
    }

    #[test]
    fn heartbeats_and_lease_renewals_are_not_changes() {
        let mut topology = topology();
        assert!(
            topology
                .change_of("n1", true, &member("n1", 7), 10)
                .unwrap()
                .is_none()
        );
        let renewal = br#"{"node":"n1","epoch":3}"#;
        assert!(
            topology
                .change_of(LEASE_KEY, true, renewal, 11)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn joins_restarts_leaves_and_new_leaders_are() {
        let mut topology = topology();
        let joined = topology
            .change_of("n2", true, &member("n2", 1), 12)
            .unwrap();
        assert!(
            matches!(joined, Some(Change::NodeJoined { ref node, incarnation: 1 }) if node == "n2")
        );
        let restarted = topology
            .change_of("n1", true, &member("n1", 8), 13)
            .unwrap();
        assert!(matches!(
            restarted,
            Some(Change::NodeJoined { incarnation: 8, .. })
        ));
        let left = topology.change_of("n2", false, b"", 14).unwrap();
        assert!(matches!(left, Some(Change::NodeLeft { ref node }) if node == "n2"));
        // A second marker for a node already gone says nothing new.
        assert!(topology.change_of("n2", false, b"", 15).unwrap().is_none());
        // An acquisition carries no epoch: its revision is the epoch.
        let elected = topology
            .change_of(LEASE_KEY, true, br#"{"node":"n2"}"#, 16)
            .unwrap();
        assert!(
            matches!(elected, Some(Change::LeaderElected { ref node, epoch: 16 }) if node == "n2")
        );
        assert!(matches!(
            topology.change_of(LEASE_KEY, false, b"", 17).unwrap(),
            Some(Change::LeaderGone)
        ));
    }
}
