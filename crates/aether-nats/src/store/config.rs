//! [`JetStreamConfig`]: how the JetStream store sets up its stream and bucket, and how long it
//! waits and retries.

use std::time::Duration;

use aether_core::StoreError;

use crate::durations::{MAX_DURATION, bounded};

/// Settings of a [`JetStreamEventStore`](crate::JetStreamEventStore).
///
/// The defaults suit a single development server; production clusters set `replicas: 3`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_nats::JetStreamConfig;
///
/// let config = JetStreamConfig { replicas: 3, ..JetStreamConfig::default() };
/// assert_eq!(config.duplicate_window, Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Replicas of the namespace's stream and snapshot bucket (1, 3 or 5). Used when the
    /// store creates them; an existing stream keeps its own. Default 1. With 1, an acknowledged
    /// save survives a process crash but not a power loss unless the server runs with
    /// `sync_interval: always`; with 3 it survives the loss of one server (see
    /// [what an acknowledged save survives](crate::JetStreamEventStore)).
    pub replicas: usize,
    /// The stream's deduplication window: how long JetStream remembers event ids. A reused id
    /// is reported as [`EventIdReused`](aether_core::StoreError::EventIdReused) within this
    /// window; a resent event is recognised as a duplicate at any age. Default 120 s.
    pub duplicate_window: Duration,
    /// How long one request to the server (publish ack, get) may take. Default 5 s.
    pub request_timeout: Duration,
    /// How long a write whose outcome is uncertain (timeout, reconnect, leader election) is
    /// retried and checked before giving up with
    /// [`Unavailable`](aether_core::StoreError::Unavailable). Default 30 s, longer than a
    /// JetStream leader election (~7 s after a crash).
    pub retry_timeout: Duration,
    /// How long connecting may take before the URL is reported unreachable. Default 5 s.
    pub connect_timeout: Duration,
    /// How many actors' heads a handle remembers from its own writes, so that its next append
    /// to the same actor needs no read first (0: always read). Only a hint: the server still
    /// checks every append. Default 10 000.
    pub head_cache_capacity: usize,
    /// Accept an existing event stream that allows purges (`deny_purge` off, as streams
    /// created before it was set). A purge erases history, so by default opening such a stream
    /// is an error; the store always creates its streams with `deny_purge`. Default `false`.
    pub allow_purgeable_stream: bool,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            retry_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            head_cache_capacity: 10_000,
            allow_purgeable_stream: false,
        }
    }
}

impl JetStreamConfig {
    /// Checks what can be checked without a server: `duplicate_window`, `request_timeout` and
    /// `connect_timeout` above zero and at most [`MAX_DURATION`] (`retry_timeout` is not
    /// bounded: `Duration::MAX` retries forever). Opening a store calls it before connecting.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] naming the first setting that cannot work.
    pub fn validate(&self) -> Result<(), StoreError> {
        bounded(&[
            ("duplicate_window", self.duplicate_window, MAX_DURATION),
            ("request_timeout", self.request_timeout, MAX_DURATION),
            ("connect_timeout", self.connect_timeout, MAX_DURATION),
        ])
        .map_err(StoreError::InvalidConfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_near_max_durations_are_named_errors() {
        assert!(JetStreamConfig::default().validate().is_ok());
        type Set = fn(&mut JetStreamConfig, Duration);
        let fields: [(&str, Set); 3] = [
            ("duplicate_window", |c, d| c.duplicate_window = d),
            ("request_timeout", |c, d| c.request_timeout = d),
            ("connect_timeout", |c, d| c.connect_timeout = d),
        ];
        let over = MAX_DURATION + Duration::from_nanos(1);
        for (name, set) in fields {
            for value in [Duration::MAX, over, Duration::ZERO] {
                let mut config = JetStreamConfig::default();
                set(&mut config, value);
                match config.validate() {
                    Err(StoreError::InvalidConfig(message)) => {
                        assert!(message.starts_with(name), "{message}");
                    }
                    other => panic!("{name} = {value:?}: {other:?}"),
                }
            }
        }
        let forever = JetStreamConfig {
            retry_timeout: Duration::MAX,
            ..JetStreamConfig::default()
        };
        assert!(
            forever.validate().is_ok(),
            "retry_timeout MAX means retry forever"
        );
    }
}
