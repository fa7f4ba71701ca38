//! Configuration of a [`NatsEventBus`](super::NatsEventBus) and of its durable mode.

use std::time::Duration;

use aether_core::BusConfig;

use super::BusError;
use crate::durations::{MAX_DURATION, bounded};

/// Longest `max_age` of the durable stream: about a hundred years (JetStream counts it in
/// nanoseconds in a signed 64-bit integer, which holds about 292).
pub const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How a [`NatsEventBus`](super::NatsEventBus) connects, queues and stores.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_nats::NatsBusConfig;
///
/// let mut config = NatsBusConfig::default();
/// config.local.queue_capacity = 10_000;
/// config.durable.max_age = Duration::from_secs(24 * 3600);
/// config.durable.replicas = 3;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsBusConfig {
    /// Queue size and overflow policy of local subscriptions (as for the local bus).
    pub local: BusConfig,
    /// Events queued by [`try_publish`](super::NatsEventBus::try_publish), which cannot wait,
    /// for the bus's outgoing task; one that finds the queue full is dropped (and counted).
    /// [`publish`](super::NatsEventBus::publish) sends from the caller's task, and queues
    /// (waiting for room) only behind events already queued. Default 65 536.
    pub outgoing_queue: usize,
    /// Messages the client buffers per NATS subscription before it reports a slow consumer and
    /// drops (counted). Default 65 536.
    pub subscription_capacity: usize,
    /// Longest wait for the first connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Durable mode: the bus stream and the durable subscriptions on it.
    pub durable: DurableConfig,
}

impl Default for NatsBusConfig {
    fn default() -> Self {
        Self {
            local: BusConfig::default(),
            outgoing_queue: 65_536,
            subscription_capacity: 65_536,
            connect_timeout: Duration::from_secs(5),
            durable: DurableConfig::default(),
        }
    }
}

/// The bus stream behind durable subscriptions (see `docs/adr/0005-nats-event-bus.md`), created
/// on first use with these settings; an existing stream is used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableConfig {
    /// Name of the bus stream. Default `aether-bus`.
    pub stream_name: String,
    /// How long the stream keeps an event: a subscriber away for longer misses it. Default 7
    /// days.
    pub max_age: Duration,
    /// Largest size of the stream in bytes (oldest events go first); `None`: no limit. Default
    /// `None`.
    pub max_bytes: Option<u64>,
    /// Copies of the stream in a NATS cluster. Default 1.
    pub replicas: usize,
    /// Window in which a publish retried with the same event id is stored once. Default 2 min.
    pub duplicate_window: Duration,
    /// How long a delivered, unacknowledged event waits before it is delivered again. Default
    /// 30 s.
    pub ack_wait: Duration,
    /// Events delivered to one durable subscription and not yet acknowledged, at most: the
    /// back-pressure bound. Default 1 024.
    pub max_ack_pending: usize,
    /// Longest wait for a JetStream reply (publish acknowledgement, stream and consumer
    /// management). Default 5 s.
    pub request_timeout: Duration,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            stream_name: "aether-bus".to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: None,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1024,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsBusConfig {
    /// Checks what can be checked without a server: `connect_timeout` and the durable mode's
    /// `duplicate_window`, `ack_wait` and `request_timeout` above zero and at most
    /// [`MAX_DURATION`], its `max_age` above zero and at most [`MAX_RETENTION`]. Connecting
    /// calls it first.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] naming the first setting that cannot work.
    pub fn validate(&self) -> Result<(), BusError> {
        let durable = &self.durable;
        bounded(&[
            ("connect_timeout", self.connect_timeout, MAX_DURATION),
            ("durable.max_age", durable.max_age, MAX_RETENTION),
            (
                "durable.duplicate_window",
                durable.duplicate_window,
                MAX_DURATION,
            ),
            ("durable.ack_wait", durable.ack_wait, MAX_DURATION),
            (
                "durable.request_timeout",
                durable.request_timeout,
                MAX_DURATION,
            ),
        ])
        .map_err(BusError::InvalidConfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_near_max_durations_are_named_errors() {
        assert!(NatsBusConfig::default().validate().is_ok());
        type Set = fn(&mut NatsBusConfig, Duration);
        let fields: [(&str, Set); 5] = [
            ("connect_timeout", |c, d| c.connect_timeout = d),
            ("durable.max_age", |c, d| c.durable.max_age = d),
            ("durable.duplicate_window", |c, d| {
                c.durable.duplicate_window = d
            }),
            ("durable.ack_wait", |c, d| c.durable.ack_wait = d),
            ("durable.request_timeout", |c, d| {
                c.durable.request_timeout = d
            }),
        ];
        for (name, set) in fields {
            let over = if name == "durable.max_age" {
                MAX_RETENTION
            } else {
                MAX_DURATION
            } + Duration::from_nanos(1);
            for value in [Duration::MAX, over, Duration::ZERO] {
                let mut config = NatsBusConfig::default();
                set(&mut config, value);
                match config.validate() {
                    Err(BusError::InvalidConfig(message)) => {
                        assert!(message.starts_with(name), "{message}");
                    }
                    other => panic!("{name} = {value:?}: {other:?}"),
                }
            }
        }
    }
}
