//! The follower side of the manager: the map this node holds (adopted from the watch, a
//! periodic re-read, or its own writes) and the translation of membership and leader changes
//! into [`TopologyEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use aether_core::{NodeId, ShardMap, shard_moves};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::TopologyEvent;
use crate::Epoch;
use crate::lease::LeaderState;
use crate::membership::MembershipEvent;
use crate::shard_map_store::{ShardMapStore, StoredShardMap};

/// The map this node holds and the event channel, shared by the tasks and the handle.
#[derive(Debug)]
pub(super) struct Shared {
    map: watch::Sender<Option<Arc<StoredShardMap>>>,
    events: broadcast::Sender<TopologyEvent>,
}

impl Shared {
    pub(super) fn new(
        map: watch::Sender<Option<Arc<StoredShardMap>>>,
        events: broadcast::Sender<TopologyEvent>,
    ) -> Self {
        Self { map, events }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<TopologyEvent> {
        self.events.subscribe()
    }

    pub(super) fn send(&self, event: TopologyEvent) {
        // No receiver is fine: nobody listens.
        let _ = self.events.send(event);
    }

    /// Adopts `next` if it is newer than the held map (higher version, epoch not lower) and
    /// announces what moved. Atomic, so events come out in version order whoever adopts.
    pub(super) fn adopt(&self, next: StoredShardMap) -> bool {
        self.map.send_if_modified(|current| {
            if let Some(current) = current
                && (next.epoch < current.epoch || next.version <= current.version)
            {
                return false;
            }
            let moved = match current {
                Some(current) => shard_moves(&current.map, &next.map),
                None => shard_moves(&ShardMap::unassigned(next.map.shard_count()), &next.map),
            };
            let _ = self.events.send(TopologyEvent::ShardsMoved {
                version: next.version,
                epoch: next.epoch,
                moved,
            });
            *current = Some(Arc::new(next));
            true
        })
    }
}

/// Forwards membership events and leader changes as topology events until membership stops.
pub(super) async fn forward(
    mut membership: broadcast::Receiver<MembershipEvent>,
    mut leader: watch::Receiver<LeaderState>,
    shared: Arc<Shared>,
) {
    let mut last: Option<(NodeId, Epoch)> = None;
    let mut announce = |state: &LeaderState| {
        if let Some(node) = &state.leader {
            let current = Some((node.clone(), state.epoch));
            if current != last {
                last = current;
                shared.send(TopologyEvent::LeaderElected {
                    node: node.clone(),
                    epoch: state.epoch,
                });
            }
        }
    };
    announce(&leader.borrow_and_update());
    let mut leader_open = true;
    loop {
        tokio::select! {
            event = membership.recv() => match event {
                Ok(MembershipEvent::Joined(info)) => shared.send(TopologyEvent::NodeJoined(info)),
                Ok(MembershipEvent::Left(id)) => shared.send(TopologyEvent::NodeLeft(id)),
                Ok(MembershipEvent::Failed(id)) => shared.send(TopologyEvent::NodeFailed(id)),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "topology: missed membership events");
                }
                Err(RecvError::Closed) => return,
            },
            changed = leader.changed(), if leader_open => {
                if changed.is_err() {
                    leader_open = false;
                } else {
                    announce(&leader.borrow_and_update());
                }
            }
        }
    }
}

/// Follows the stored map: the watch, plus a re-read every `poll_every` in case the watch is
/// stalled or had to be recreated (it is, whenever it ends or cannot be created).
pub(super) async fn follow_map(store: ShardMapStore, shared: Arc<Shared>, poll_every: Duration) {
    let mut watch = None;
    let mut poll = tokio::time::interval(poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = async {
            match watch.as_mut() {
                Some(watch) => StreamExt::next(watch).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = next => match item {
                Some(Ok((stored, _revision))) => {
                    shared.adopt(stored);
                }
                Some(Err(error)) => tracing::debug!(%error, "topology: shard-map watch error"),
                None => watch = None,
            },
            _ = poll.tick() => {
                if watch.is_none() {
                    match store.watch().await {
                        Ok(created) => watch = Some(created),
                        Err(error) => {
                            tracing::debug!(%error, "topology: cannot watch the shard map");
                        }
                    }
                }
                match store.load().await {
                    Ok(Some((stored, _))) => {
                        shared.adopt(stored);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "topology: cannot read the shard map"),
                }
            }
        }
    }
}
