//! [`MemberInfo`]: what a node announces under its key, and the checks on what a user passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aether_core::{Member, NodeId};
use serde::{Deserialize, Serialize};

use crate::{ClusterConfig, ClusterError, NodeMetadata};

/// Longest [`NodeMetadata::address`] in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest [`NodeMetadata::app_version`] in bytes.
pub const MAX_APP_VERSION_LEN: usize = 64;
/// Longest cluster name in bytes (it prefixes bucket, stream and subject names).
const MAX_CLUSTER_NAME_LEN: usize = 64;

/// One member as every node sees it: the JSON value of its key in the members bucket, and the
/// answer to a probe.
///
/// ```json
/// {"id":"node-1","metadata":{"address":"10.0.0.5:7000","weight":1,"app_version":"1.4.2"},
///  "incarnation":1795000000000000}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The node.
    pub id: NodeId,
    /// What it announces (address, weight, application version).
    pub metadata: NodeMetadata,
    /// Which start of the node this is: its start time in microseconds since the Unix epoch,
    /// unique per process and larger than any earlier one in the same process. A restarted
    /// node has a new incarnation, so others can tell "it came back" from "it never left".
    /// Only ever compared for equality.
    pub incarnation: u64,
}

impl MemberInfo {
    /// Validates `metadata` and describes a fresh start of `id` (a new incarnation).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] if the address is longer than [`MAX_ADDRESS_LEN`] bytes,
    /// the application version longer than [`MAX_APP_VERSION_LEN`] bytes, or either contains a
    /// control character.
    pub fn new(id: NodeId, metadata: NodeMetadata) -> Result<Self, ClusterError> {
        validate_metadata(&metadata)?;
        Ok(Self {
            id,
            metadata,
            incarnation: next_incarnation(),
        })
    }

    /// The same node as a new incarnation (a renewal after a lapse).
    pub(crate) fn renew_incarnation(&mut self) {
        self.incarnation = next_incarnation();
    }

    /// The member as placement sees it (id and weight).
    pub fn as_member(&self) -> Member {
        Member::new(self.id.clone()).with_weight(self.metadata.weight)
    }
}

/// Microseconds since the epoch, strictly increasing within this process.
fn next_incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn validate_text(field: &str, value: &str, max: usize) -> Result<(), ClusterError> {
    if value.len() > max {
        return Err(ClusterError::InvalidConfig(format!(
            "metadata.{field} is {} bytes long; at most {max} are allowed",
            value.len()
        )));
    }
    if let Some((index, ch)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ClusterError::InvalidConfig(format!(
            "metadata.{field} contains the control character {ch:?} at byte {index}"
        )));
    }
    Ok(())
}

fn validate_metadata(metadata: &NodeMetadata) -> Result<(), ClusterError> {
    validate_text("address", &metadata.address, MAX_ADDRESS_LEN)?;
    validate_text("app_version", &metadata.app_version, MAX_APP_VERSION_LEN)
}

/// Checks the settings membership relies on (metadata included); nothing is written before.
pub(crate) fn validate_config(config: &ClusterConfig) -> Result<(), ClusterError> {
    let invalid = |message: String| Err(ClusterError::InvalidConfig(message));
    validate_metadata(&config.metadata)?;
    let name = &config.cluster_name;
    if name.is_empty()
        || name.len() > MAX_CLUSTER_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return invalid(format!(
            "cluster_name {name:?} must be 1 to {MAX_CLUSTER_NAME_LEN} ASCII letters, digits, \
             '-' or '_'"
        ));
    }
    if config.heartbeat.is_zero() {
        return invalid("heartbeat must be longer than zero".to_owned());
    }
    if config.probe_timeout.is_zero() {
        return invalid("probe_timeout must be longer than zero".to_owned());
    }
    // TTLs are whole seconds on the wire: the key lives at least `member_ttl` rounded up.
    if config.member_ttl < config.heartbeat * 2 {
        return invalid(format!(
            "member_ttl ({:?}) must be at least twice the heartbeat ({:?}), or one late \
             heartbeat makes a live member suspected",
            config.member_ttl, config.heartbeat
        ));
    }
    if config.member_ttl > Duration::from_secs(24 * 3600) {
        return invalid(format!(
            "member_ttl ({:?}) is over a day",
            config.member_ttl
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        let mut config = ClusterConfig::new(NodeId::new("n1").unwrap());
        config.heartbeat = Duration::from_millis(500);
        config.member_ttl = Duration::from_secs(2);
        config
    }

    #[test]
    fn incarnations_strictly_increase() {
        let a = next_incarnation();
        let b = next_incarnation();
        assert!(b > a, "{b} > {a}");
    }

    #[test]
    fn info_round_trips_as_json() {
        let metadata = NodeMetadata {
            address: "10.0.0.5:7000".to_owned(),
            app_version: "1.4.2".to_owned(),
            ..NodeMetadata::default()
        };
        let info = MemberInfo::new(NodeId::new("node-1").unwrap(), metadata).unwrap();
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"id\":\"node-1\""), "{json}");
        assert_eq!(serde_json::from_str::<MemberInfo>(&json).unwrap(), info);
        assert_eq!(info.as_member().weight, 1);
        // A value with an invalid node id is refused when decoded.
        let bad = json.replace("node-1", "node.1");
        assert!(serde_json::from_str::<MemberInfo>(&bad).is_err());
    }

    #[test]
    fn rejects_bad_metadata_and_timings() {
        let ok = config();
        assert!(validate_config(&ok).is_ok());
        type Change = Box<dyn Fn(&mut ClusterConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "address",
                Box::new(|c| c.metadata.address = "a".repeat(MAX_ADDRESS_LEN + 1)),
            ),
            (
                "control",
                Box::new(|c| c.metadata.address = "host\n:1".to_owned()),
            ),
            (
                "app_version",
                Box::new(|c| c.metadata.app_version = "v".repeat(MAX_APP_VERSION_LEN + 1)),
            ),
            (
                "cluster_name",
                Box::new(|c| c.cluster_name = "a.b".to_owned()),
            ),
            ("cluster_name", Box::new(|c| c.cluster_name = String::new())),
            ("heartbeat", Box::new(|c| c.heartbeat = Duration::ZERO)),
            (
                "probe_timeout",
                Box::new(|c| c.probe_timeout = Duration::ZERO),
            ),
            (
                "twice the heartbeat",
                Box::new(|c| c.member_ttl = Duration::from_millis(900)),
            ),
            (
                "over a day",
                Box::new(|c| c.member_ttl = Duration::from_secs(90_000)),
            ),
        ];
        for (expected, change) in cases {
            let mut bad = config();
            change(&mut bad);
            match validate_config(&bad) {
                Err(ClusterError::InvalidConfig(message)) => {
                    assert!(message.contains(expected), "{expected}: {message}");
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        // The longest allowed values pass.
        let mut edge = config();
        edge.metadata.address = "a".repeat(MAX_ADDRESS_LEN);
        edge.metadata.app_version = "v".repeat(MAX_APP_VERSION_LEN);
        assert!(validate_config(&edge).is_ok());
    }
}
