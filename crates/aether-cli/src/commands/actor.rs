//! `aether actor NS ACTOR`: latest version, snapshot, last event time; on a cluster, the
//! actor's shard and the node that owns it.

use aether_cluster::kv::ClusterStore;
use aether_cluster::shard_map_store::ShardMapStore;
use aether_cluster::{ClusterConfig, ClusterError};
use aether_core::{ActorId, EventStore, NodeId, SnapshotStore, shard_for};
use serde::Serialize;

use super::events::Reader;
use crate::connect::{Nats, Source};
use crate::error::CliError;
use crate::output;

/// What the command prints.
#[derive(Debug, Serialize)]
struct ActorView {
    namespace: String,
    actor: String,
    version: u64,
    snapshot_version: Option<u64>,
    snapshot_bytes: Option<usize>,
    last_event_time: Option<String>,
    last_event_type: Option<String>,
    cluster: Option<Placement>,
}

/// Where the actor lives in the cluster.
#[derive(Debug, Serialize)]
struct Placement {
    name: String,
    map_version: u64,
    shard: u32,
    owner: Option<String>,
}

/// Runs the command.
pub(crate) async fn run(
    source: &Source,
    json: bool,
    namespace: &str,
    actor: &str,
    cluster: &str,
) -> Result<(), CliError> {
    let namespace = super::namespace(namespace)?;
    let actor = super::actor_id(actor)?;
    let reader = Reader::open(source, &namespace).await?;
    let (version, snapshot, last) = match &reader {
        Reader::Data(inspector) => match inspector.actor(&namespace, &actor)? {
            None => (0, None, None),
            Some(summary) => (summary.version, summary.snapshot, summary.last_event),
        },
        Reader::Nats(store) => {
            let version = store.latest_version(&actor).await?;
            let snapshot = store.latest_snapshot(&actor).await?;
            let last = if version == 0 {
                None
            } else {
                store.events(&actor, version).await?.into_iter().next_back()
            };
            (version, snapshot, last)
        }
    };
    let placement = match source {
        Source::Nats(nats) => placement(nats, cluster, &actor).await?,
        Source::Data(_) => None,
    };
    let view = ActorView {
        namespace: namespace.to_string(),
        actor: actor.to_string(),
        version,
        snapshot_version: snapshot.as_ref().map(|s| s.version),
        snapshot_bytes: snapshot
            .as_ref()
            .map(aether_core::ActorSnapshot::encoded_len),
        last_event_time: last.as_ref().map(|e| output::time(&e.timestamp)),
        last_event_type: last.as_ref().map(|e| e.event_type.clone()),
        cluster: placement,
    };
    if json {
        return output::json(&view);
    }
    let none = || "-".to_owned();
    let mut rows = vec![
        vec!["namespace".to_owned(), view.namespace.clone()],
        vec!["actor".to_owned(), view.actor.clone()],
        vec!["version".to_owned(), view.version.to_string()],
        vec![
            "snapshot".to_owned(),
            match (view.snapshot_version, view.snapshot_bytes) {
                (Some(v), Some(bytes)) => format!("version {v}, {bytes} bytes"),
                _ => none(),
            },
        ],
        vec![
            "last event".to_owned(),
            match (&view.last_event_time, &view.last_event_type) {
                (Some(at), Some(kind)) => format!("{at} ({kind})"),
                _ => none(),
            },
        ],
    ];
    if let Some(p) = &view.cluster {
        rows.push(vec![
            "shard".to_owned(),
            format!(
                "{} (map version {}, cluster {})",
                p.shard, p.map_version, p.name
            ),
        ]);
        rows.push(vec![
            "owner".to_owned(),
            p.owner.clone().unwrap_or_else(|| "unassigned".to_owned()),
        ]);
    }
    output::line(output::table(&["FIELD", "VALUE"], &[], rows))?;
    if view.version == 0 {
        eprintln!("actor {actor} has no events in namespace {namespace}");
    }
    Ok(())
}

/// The actor's shard and owner in cluster `name`; `None` if there is no such cluster or it has
/// no shard map yet.
async fn placement(
    nats: &Nats,
    name: &str,
    actor: &ActorId,
) -> Result<Option<Placement>, CliError> {
    let store = match ClusterStore::open_existing(nats.client.clone(), name, nats.timeout).await {
        Ok(store) => store,
        Err(ClusterError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let config = reader_config(name, nats)?;
    let Some(map) = ShardMapStore::new(store, &config).load_latest().await? else {
        return Ok(None);
    };
    let shard = shard_for(actor, map.map.shard_count());
    Ok(Some(Placement {
        name: name.to_owned(),
        map_version: map.version.get(),
        shard: shard.get(),
        owner: map.map.owner(shard).map(ToString::to_string),
    }))
}

/// A cluster configuration for reading cluster `name` (the node id is never announced).
pub(crate) fn reader_config(name: &str, nats: &Nats) -> Result<ClusterConfig, CliError> {
    let node = NodeId::new("aether-cli")?;
    let mut config = ClusterConfig::new(node);
    config.cluster_name = name.to_owned();
    config.request_timeout = nats.timeout;
    Ok(config)
}
