//! Configuration of the bus and of each subscription.

use std::time::Duration;

use crate::SubscriptionFilter;

/// What a publish does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the new event for this subscriber and count it in `dropped`. The publisher never
    /// waits. The default: one slow subscriber cannot slow down anyone else.
    #[default]
    DropNewest,
    /// [`EventBus::publish`](super::EventBus::publish) waits up to `timeout` for room, then drops
    /// and counts. For subscribers that prefer backpressure to loss.
    /// [`EventBus::try_publish`](super::EventBus::try_publish) never waits and drops at once.
    Block {
        /// Longest wait for room in this subscriber's queue, per event.
        timeout: Duration,
    },
}

/// Bus-wide defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusConfig {
    /// Queue size of a subscription that does not set its own. Default 1024.
    pub queue_capacity: usize,
    /// Overflow policy of a subscription that does not set its own. Default
    /// [`Overflow::DropNewest`].
    pub overflow: Overflow,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            overflow: Overflow::DropNewest,
        }
    }
}

/// Options of one subscription: its filter, and optionally its own queue size and overflow
/// policy (otherwise the bus's [`BusConfig`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_core::{Overflow, SubscribeOptions, SubscriptionFilter};
///
/// let options = SubscribeOptions::new()
///     .filter(SubscriptionFilter::new().event_types(["OrderPlaced"]))
///     .queue_capacity(10_000)
///     .overflow(Overflow::Block { timeout: Duration::from_millis(50) });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub(super) filter: SubscriptionFilter,
    pub(super) queue_capacity: Option<usize>,
    pub(super) overflow: Option<Overflow>,
}

impl SubscribeOptions {
    /// No filter, the bus's queue defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers only events that pass `filter`.
    pub fn filter(mut self, filter: SubscriptionFilter) -> Self {
        self.filter = filter;
        self
    }

    /// This subscription's queue size (0 is treated as 1; sizes above tokio's channel limit are
    /// clamped to it).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity.max(1));
        self
    }

    /// This subscription's overflow policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }
}

impl From<SubscriptionFilter> for SubscribeOptions {
    fn from(filter: SubscriptionFilter) -> Self {
        Self::new().filter(filter)
    }
}
