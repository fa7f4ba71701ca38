//! [`ShardMapWatch`]: the stream of shard-map versions a node follows.

use aether_core::BackendError;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::jetstream::kv;
use futures::{Stream, StreamExt};

use super::{StoredShardMap, decode_entry};
use crate::{ClusterError, Epoch, MapVersion, Revision};

/// The shard maps as they are written: the stored map first (if any), then every new version,
/// each with its KV revision. A [`Stream`] of `Result<(StoredShardMap, Revision), ClusterError>`.
///
/// It skips (never yields) a map whose epoch is lower than the highest epoch it has yielded (a
/// deposed leader's write, which the fenced [`write`](super::ShardMapStore::write) never makes
/// but a rogue writer could) and a map whose version is not higher than the last one yielded.
///
/// In normal operation it yields every version in order. If the underlying consumer is reset
/// (e.g. after a reconnect), versions written meanwhile may be skipped — the bucket keeps only
/// the latest — but the watch always converges on the latest map. Errors (an undecodable value,
/// a consumer error) are yielded as items; the stream goes on after them.
pub struct ShardMapWatch {
    inner: kv::Watch,
    max_epoch: Epoch,
    max_version: MapVersion,
}

impl std::fmt::Debug for ShardMapWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMapWatch")
            .field("max_epoch", &self.max_epoch)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

impl ShardMapWatch {
    pub(super) fn new(inner: kv::Watch) -> Self {
        Self {
            inner,
            max_epoch: Epoch::default(),
            max_version: MapVersion::default(),
        }
    }

    /// The highest epoch yielded so far (0 before the first map).
    pub fn max_epoch(&self) -> Epoch {
        self.max_epoch
    }
}

impl Stream for ShardMapWatch {
    type Item = Result<(StoredShardMap, Revision), ClusterError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let entry = match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(ClusterError::backend(
                        "the shard-map watch failed",
                        e,
                    ))));
                }
                Poll::Ready(Some(Ok(entry))) => entry,
            };
            let stored = match decode_entry(&entry) {
                Ok(stored) => stored,
                Err(error) => return Poll::Ready(Some(Err(error))),
            };
            if stored.epoch < self.max_epoch || stored.version <= self.max_version {
                tracing::warn!(
                    version = %stored.version,
                    epoch = %stored.epoch,
                    max_epoch = %self.max_epoch,
                    max_version = %self.max_version,
                    "shard map watch: ignoring a stale map"
                );
                continue;
            }
            self.max_epoch = stored.epoch;
            self.max_version = stored.version;
            return Poll::Ready(Some(Ok((stored, Revision::new(entry.revision)))));
        }
    }
}
