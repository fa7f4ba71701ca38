//! Releasing shards (ADR 0009, "Handoff"): before it settles a move, the leader asks the node
//! the shard moves from — by incarnation — what it still holds.
//!
//! Each node answers on `<cluster>.cluster.release.<node>` (NATS request/reply, JSON):
//!
//! ```json
//! request: {}
//! reply:   {"incarnation": 1795000000000000, "adopted": 12, "held": [3, 17]}
//! ```
//!
//! `incarnation` is the answering node's (a restarted node answers with its new one: the
//! earlier incarnation is gone); `adopted` is the oldest placement version its actor hosts
//! have adopted (`null`: it hosts no actors, so it holds nothing); `held` the shards some
//! host still serves or is draining. A shard is released for placement `v` when the node
//! adopted `v` or later and does not hold it: a host that has not seen `v` might still start
//! serving under an older placement.
//!
//! What holds shards is up to the node: actor hosts register as [`ShardHolder`]s with their
//! [`ClusterManager`](crate::ClusterManager).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use aether_core::{NodeId, ShardId};
use async_nats::client::RequestErrorKind;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::MapVersion;
use crate::membership::MemberInfo;
use crate::placement::Incarnate;

/// What one shard holder (an actor type's host on this node) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdings {
    /// The newest placement version it has adopted.
    pub adopted: MapVersion,
    /// The shards it serves or is draining.
    pub held: BTreeSet<u32>,
}

/// Something on a node that serves shards (an actor type's host): asked for its holdings when
/// the leader asks the node what it released.
pub trait ShardHolder: Send + Sync {
    /// What it holds now.
    fn holdings(&self) -> Holdings;
}

/// A node's shard holders (held weakly: a dropped holder holds nothing).
#[derive(Clone, Default)]
pub struct Holders(Arc<Mutex<Vec<Weak<dyn ShardHolder>>>>);

impl std::fmt::Debug for Holders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holders").finish_non_exhaustive()
    }
}

impl Holders {
    /// Adds `holder`.
    pub fn register(&self, holder: Weak<dyn ShardHolder>) {
        let mut holders = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        holders.retain(|h| h.strong_count() > 0);
        holders.push(holder);
    }

    /// What the node holds: the oldest adopted version and every held shard; `None` without
    /// holders.
    pub fn holdings(&self) -> Option<Holdings> {
        let holders: Vec<Arc<dyn ShardHolder>> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        holders
            .iter()
            .map(|h| h.holdings())
            .reduce(|a, b| Holdings {
                adopted: a.adopted.min(b.adopted),
                held: a.held.union(&b.held).copied().collect(),
            })
    }
}

/// A node's answer (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAnswer {
    /// The answering node's incarnation.
    pub incarnation: u64,
    /// The oldest placement version its holders adopted; `None`: no holders.
    pub adopted: Option<MapVersion>,
    /// Shards still held.
    pub held: BTreeSet<u32>,
}

impl ReleaseAnswer {
    /// Whether `who` released `shard` for placement `version` by this answer.
    pub fn released(&self, who: &Incarnate, shard: ShardId, version: MapVersion) -> bool {
        self.incarnation == who.incarnation
            && self.adopted.is_none_or(|adopted| adopted >= version)
            && !self.held.contains(&shard.get())
    }
}

/// The subject on which `node` answers release requests.
pub fn release_subject(cluster_name: &str, node: &NodeId) -> String {
    format!("{cluster_name}.cluster.release.{node}")
}

/// Answers release requests on `subscription` with this node's current incarnation and what
/// `holders` hold, until the subscription ends.
pub(crate) async fn answer(
    client: async_nats::Client,
    mut subscription: async_nats::Subscriber,
    local: tokio::sync::watch::Receiver<MemberInfo>,
    holders: Holders,
) {
    while let Some(request) = subscription.next().await {
        let Some(reply) = request.reply else { continue };
        let holdings = holders.holdings();
        let answer = ReleaseAnswer {
            incarnation: local.borrow().incarnation,
            adopted: holdings.as_ref().map(|h| h.adopted),
            held: holdings.map(|h| h.held).unwrap_or_default(),
        };
        // Plain data: always serializes.
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        if let Err(error) = client.publish(reply, body.into()).await {
            tracing::debug!(%error, "release: could not answer");
        }
    }
}

/// What asking a node found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// It answered.
    Answer(ReleaseAnswer),
    /// Nobody is subscribed to its subject: no process of that node is connected.
    NoResponders,
    /// No answer in time, or the request failed: nothing is known.
    Unknown,
}

/// Asks `node` what it still holds.
pub async fn ask(
    client: &async_nats::Client,
    cluster_name: &str,
    node: &NodeId,
    timeout: Duration,
) -> Asked {
    let subject = release_subject(cluster_name, node);
    match tokio::time::timeout(timeout, client.request(subject, "{}".into())).await {
        Ok(Ok(message)) => match serde_json::from_slice(&message.payload) {
            Ok(answer) => Asked::Answer(answer),
            Err(error) => {
                tracing::warn!(%error, %node, "release: answer does not decode");
                Asked::Unknown
            }
        },
        Ok(Err(error)) if error.kind() == RequestErrorKind::NoResponders => Asked::NoResponders,
        Ok(Err(_)) | Err(_) => Asked::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Holdings);

    impl ShardHolder for Fixed {
        fn holdings(&self) -> Holdings {
            self.0.clone()
        }
    }

    fn holding(adopted: u64, held: &[u32]) -> Arc<dyn ShardHolder> {
        Arc::new(Fixed(Holdings {
            adopted: MapVersion::new(adopted),
            held: held.iter().copied().collect(),
        }))
    }

    fn who(incarnation: u64) -> Incarnate {
        Incarnate {
            node: NodeId::new("n1").unwrap(),
            incarnation,
        }
    }

    #[test]
    fn a_node_holds_the_union_of_its_holders_at_the_oldest_version_they_adopted() {
        let holders = Holders::default();
        assert_eq!(holders.holdings(), None, "no holders: holds nothing");
        let a = holding(7, &[1, 2]);
        let b = holding(5, &[3]);
        holders.register(Arc::downgrade(&a));
        holders.register(Arc::downgrade(&b));
        let both = holders.holdings().unwrap();
        assert_eq!(both.adopted, MapVersion::new(5));
        assert_eq!(both.held, [1, 2, 3].into_iter().collect());
        drop(b);
        assert_eq!(
            holders.holdings().unwrap().adopted,
            MapVersion::new(7),
            "a dropped holder holds nothing"
        );
    }

    #[test]
    fn released_needs_the_same_incarnation_the_version_adopted_and_the_shard_not_held() {
        let answer = ReleaseAnswer {
            incarnation: 3,
            adopted: Some(MapVersion::new(10)),
            held: [4].into_iter().collect(),
        };
        let (shard, held) = (ShardId::new(1), ShardId::new(4));
        assert!(answer.released(&who(3), shard, MapVersion::new(10)));
        assert!(answer.released(&who(3), shard, MapVersion::new(9)));
        assert!(
            !answer.released(&who(3), shard, MapVersion::new(11)),
            "not adopted yet"
        );
        assert!(
            !answer.released(&who(3), held, MapVersion::new(10)),
            "still held"
        );
        assert!(
            !answer.released(&who(2), shard, MapVersion::new(10)),
            "another incarnation"
        );
        let hosts_nothing = ReleaseAnswer {
            incarnation: 3,
            adopted: None,
            held: BTreeSet::new(),
        };
        assert!(hosts_nothing.released(&who(3), shard, MapVersion::new(99)));
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(json, r#"{"incarnation":3,"adopted":10,"held":[4]}"#);
    }
}
