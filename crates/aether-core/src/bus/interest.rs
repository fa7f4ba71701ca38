//! [`InterestListener`]: how a transport learns which namespace patterns have subscribers here.

use crate::Pattern;

/// Told when a namespace pattern gains its first local subscriber (`interested = true`) or
/// loses its last one (`false`); see
/// [`EventBus::with_interest_listener`](super::EventBus::with_interest_listener).
///
/// Called while the bus holds its subscription table's write lock, so calls arrive in the order
/// the changes happened and a gain is always followed by its loss, never overtaken by it.
/// Implementations must therefore be quick and must not call back into the bus: record the
/// change or send it to a task (an unbounded channel send is the usual body).
pub trait InterestListener: Send + Sync + 'static {
    /// `pattern` now has subscribers (`true`) or none any more (`false`).
    fn interest_changed(&self, pattern: &Pattern, interested: bool);
}
