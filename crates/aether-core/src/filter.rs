//! [`SubscriptionFilter`]: narrows a subscription by event type and actor.

use crate::{Event, Pattern};

/// Narrows what a subscription receives: events of any of the listed types (all types if none
/// are listed) whose actor id matches the actor pattern (all actors if none). The empty filter
/// passes everything.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, Pattern, SubscriptionFilter};
///
/// let filter = SubscriptionFilter::new()
///     .event_types(["OrderPlaced", "OrderCancelled"])
///     .actor_pattern(Pattern::new("order.eu.*")?);
///
/// let placed = Event::new(ActorId::new("order.eu.17")?, "OrderPlaced", 1);
/// let shipped = Event::new(ActorId::new("order.eu.17")?, "OrderShipped", 2);
/// let us = Event::new(ActorId::new("order.us.3")?, "OrderPlaced", 1);
/// assert!(filter.matches(&placed));
/// assert!(!filter.matches(&shipped));
/// assert!(!filter.matches(&us));
/// assert!(SubscriptionFilter::new().matches(&shipped));
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    event_types: Vec<Box<str>>,
    actor_pattern: Option<Pattern>,
}

impl SubscriptionFilter {
    /// The empty filter: passes every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Passes only events whose type is one of `types` (adds to earlier calls).
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types
            .extend(types.into_iter().map(|t| t.into().into_boxed_str()));
        self
    }

    /// Passes only events whose actor id matches `pattern` (e.g. `order.*`, `tenant-a.>`).
    pub fn actor_pattern(mut self, pattern: Pattern) -> Self {
        self.actor_pattern = Some(pattern);
        self
    }

    /// True if the filter passes everything.
    pub fn is_empty(&self) -> bool {
        self.event_types.is_empty() && self.actor_pattern.is_none()
    }

    /// True if `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| **t == *event.event_type))
            && self
                .actor_pattern
                .as_ref()
                .is_none_or(|p| p.matches(event.actor_id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActorId;

    fn event(actor: &str, event_type: &str) -> Event {
        Event::new(ActorId::new(actor).unwrap(), event_type, 1)
    }

    #[test]
    fn types_are_any_of_and_patterns_use_nats_semantics() {
        let by_type = SubscriptionFilter::new()
            .event_types(["A"])
            .event_types(["B"]);
        assert!(by_type.matches(&event("x", "A")) && by_type.matches(&event("x", "B")));
        assert!(!by_type.matches(&event("x", "C")));
        let by_actor = SubscriptionFilter::new().actor_pattern(Pattern::new("user.>").unwrap());
        assert!(by_actor.matches(&event("user.1", "A")));
        assert!(by_actor.matches(&event("user.1.profile", "A")));
        assert!(!by_actor.matches(&event("user", "A")));
        assert!(!by_actor.matches(&event("users.1", "A")));
        let both = by_type.actor_pattern(Pattern::new("user.*").unwrap());
        assert!(both.matches(&event("user.1", "B")));
        assert!(!both.matches(&event("user.1", "C")));
        assert!(!both.matches(&event("order.1", "B")));
        assert!(SubscriptionFilter::new().is_empty());
    }
}
