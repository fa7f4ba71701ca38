//! Configuration: [`ActorConfig`] for a runtime, [`AskOptions`] per call, and the policies
//! they hold ([`WhenFull`], [`OnConflict`], [`SnapshotPolicy`]).

use std::time::Duration;

use crate::CommandId;

/// Settings of one [`Actors`](crate::Actors) runtime (one namespace and actor type).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_actor::{ActorConfig, SnapshotPolicy};
///
/// let config = ActorConfig {
///     idle_timeout: Some(Duration::from_secs(60)),
///     max_active: 10_000,
///     snapshots: SnapshotPolicy::EveryEvents(100),
///     ..ActorConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorConfig {
    /// Capacity of each active actor's mailbox (commands and queries waiting). Default 64.
    pub mailbox_capacity: usize,
    /// Most actors active at once; activating one more passivates the least recently used.
    /// Default 100 000.
    pub max_active: usize,
    /// An actor with no message for this long is passivated (checked every half idle timeout,
    /// at most every 60 s, by one task per runtime: so between 1 and 1.5 idle timeouts after
    /// its last message; above 2 minutes, at most 2 minutes late). `None` keeps actors until the active limit or
    /// [`shutdown`](crate::Actors::shutdown). Default 5 minutes.
    pub idle_timeout: Option<Duration>,
    /// When to save snapshots. Default [`SnapshotPolicy::Never`].
    pub snapshots: SnapshotPolicy,
    /// How many recent commands each actor remembers for exactly-once (the horizon): a command
    /// retried after more than this many later commands of the same actor is decided again.
    /// Default 1024.
    pub command_horizon: usize,
    /// Largest command accepted, measured as its JSON encoding. Default 1 MiB. A cluster
    /// node checks the commands it sends as it writes them, and the commands it serves for
    /// other nodes as received (the request's `body` without the whitespace around it).
    pub max_command_bytes: usize,
    /// Defaults of each call (timeout, full-mailbox behaviour, conflict policy).
    pub ask: AskOptions,
    /// With a bus ([`Actors::with_bus`](crate::Actors::with_bus)): how long an actor waits for
    /// the bus to take one decision's stored events (only subscribers that chose
    /// `Overflow::Block` make it wait) before it counts the rest as
    /// [`publish_failures`](crate::ActorStats::publish_failures) and goes on. Part of the
    /// command's time (the actor publishes before it replies). Default 1 s.
    pub publish_timeout: Duration,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 64,
            max_active: 100_000,
            idle_timeout: Some(Duration::from_secs(300)),
            snapshots: SnapshotPolicy::Never,
            command_horizon: 1024,
            max_command_bytes: 1 << 20,
            ask: AskOptions::default(),
            publish_timeout: Duration::from_secs(1),
        }
    }
}

/// A setting of [`ActorConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid actor configuration: {setting} {problem}")]
pub struct InvalidConfig {
    /// The setting.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl ActorConfig {
    /// Checks that every setting can work.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first setting that is zero where it must not be.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let zero = |setting| {
            Err(InvalidConfig {
                setting,
                problem: "must be at least 1",
            })
        };
        if self.mailbox_capacity == 0 {
            return zero("mailbox_capacity");
        }
        if self.max_active == 0 {
            return zero("max_active");
        }
        if self.command_horizon == 0 {
            return zero("command_horizon");
        }
        if self.max_command_bytes == 0 {
            return zero("max_command_bytes");
        }
        if self.snapshots == SnapshotPolicy::EveryEvents(0) {
            return zero("snapshots (EveryEvents)");
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return zero("idle_timeout");
        }
        if self.publish_timeout.is_zero() {
            return Err(InvalidConfig {
                setting: "publish_timeout",
                problem: "must be longer than zero",
            });
        }
        if self.ask.timeout.is_zero() {
            return Err(InvalidConfig {
                setting: "ask.timeout",
                problem: "must be longer than zero",
            });
        }
        Ok(())
    }
}

/// When an actor saves a snapshot of its state (and its recent command ids).
///
/// Snapshots are saved after the events they cover are stored and after the reply was sent,
/// before the actor takes its next message; a failed snapshot save is logged and counted, never
/// reported to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// No snapshots: activation replays the whole history.
    #[default]
    Never,
    /// A snapshot after at least this many events since the last one.
    EveryEvents(u64),
}

/// What a call does when the actor's mailbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Fail at once with [`ActorError::Overloaded`](crate::ActorError::Overloaded) (default).
    #[default]
    Fail,
    /// Wait for room, within the call's timeout; then fail with `Overloaded`.
    Wait,
}

/// What an actor does when its append meets a
/// [`VersionConflict`](aether_core::StoreError::VersionConflict) (another writer stored events
/// the actor had not seen).
///
/// In every case the actor first reloads its state from the store; it never re-sends the
/// refused write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnConflict {
    /// Answer [`ActorError::Conflict`](crate::ActorError::Conflict) (default: the library
    /// never retries on its own).
    #[default]
    Fail,
    /// Decide the command again on the reloaded state, up to this many more times.
    DecideAgain {
        /// Further decisions allowed after the first conflict.
        max_attempts: u32,
    },
}

/// Options of one call; [`ActorConfig::ask`] holds the defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_actor::{AskOptions, CommandId, WhenFull};
///
/// let id = CommandId::generate(); // keep it: retry with the same id
/// let options = AskOptions::default()
///     .command_id(id.clone())
///     .timeout(Duration::from_secs(2))
///     .when_full(WhenFull::Wait);
/// assert_eq!(options.command_id, Some(id));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskOptions {
    /// The command's id. `None` generates a UUIDv7 before the command is first sent. Give the
    /// same id on every retry of one command.
    pub command_id: Option<CommandId>,
    /// How long the whole call may take: waiting for a stopping actor, for mailbox room, for
    /// activation, the decision and the write. Default 30 s.
    pub timeout: Duration,
    /// What to do when the mailbox is full. Default [`WhenFull::Fail`].
    pub when_full: WhenFull,
    /// What to do on a version conflict. Default [`OnConflict::Fail`].
    pub on_conflict: OnConflict,
}

impl Default for AskOptions {
    fn default() -> Self {
        Self {
            command_id: None,
            timeout: Duration::from_secs(30),
            when_full: WhenFull::Fail,
            on_conflict: OnConflict::Fail,
        }
    }
}

impl AskOptions {
    /// Sets the command id (keep it across retries).
    pub fn command_id(mut self, id: CommandId) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Sets the call's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets what to do when the mailbox is full.
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// Sets what to do on a version conflict.
    pub fn on_conflict(mut self, on_conflict: OnConflict) -> Self {
        self.on_conflict = on_conflict;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_zeros_do_not() {
        assert!(ActorConfig::default().validate().is_ok());
        let bad = [
            ActorConfig {
                mailbox_capacity: 0,
                ..ActorConfig::default()
            },
            ActorConfig {
                max_active: 0,
                ..ActorConfig::default()
            },
            ActorConfig {
                command_horizon: 0,
                ..ActorConfig::default()
            },
            ActorConfig {
                snapshots: SnapshotPolicy::EveryEvents(0),
                ..ActorConfig::default()
            },
            ActorConfig {
                idle_timeout: Some(Duration::ZERO),
                ..ActorConfig::default()
            },
            ActorConfig {
                ask: AskOptions::default().timeout(Duration::ZERO),
                ..ActorConfig::default()
            },
            ActorConfig {
                publish_timeout: Duration::ZERO,
                ..ActorConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}

/// Options of one query ([`Actors::query_with`](crate::Actors::query_with)); plain
/// [`query`](crate::Actors::query) takes the timeout and full-mailbox behaviour of
/// [`ActorConfig::ask`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_actor::{QueryOptions, WhenFull};
///
/// let options = QueryOptions::default().timeout(Duration::from_secs(1)).when_full(WhenFull::Wait);
/// assert_eq!(options.timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions {
    /// How long the whole call may take. Default 30 s.
    pub timeout: Duration,
    /// What to do when the mailbox is full. Default [`WhenFull::Fail`].
    pub when_full: WhenFull,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            when_full: WhenFull::Fail,
        }
    }
}

impl QueryOptions {
    /// Sets the call's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets what to do when the mailbox is full.
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }
}
