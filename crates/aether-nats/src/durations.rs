//! The bound every duration setting of the store and the bus is checked against, so that no
//! deadline or period computed from a setting can overflow (a panic) and no absurd value
//! reaches the server.

use std::time::Duration;

/// Longest timeout or window a [`JetStreamConfig`](crate::JetStreamConfig) or
/// [`NatsBusConfig`](crate::NatsBusConfig) accepts: one day, longer than any useful one.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `Err` naming the first of `settings` that is zero or longer than its bound.
pub(crate) fn bounded(settings: &[(&str, Duration, Duration)]) -> Result<(), String> {
    for &(name, value, max) in settings {
        if value.is_zero() {
            return Err(format!("{name} must be longer than zero"));
        }
        if value > max {
            return Err(format!(
                "{name} ({value:?}) is longer than the longest accepted ({max:?})"
            ));
        }
    }
    Ok(())
}
