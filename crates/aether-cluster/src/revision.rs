//! The numbers the cluster's coordination runs on, each its own type so they cannot be mixed
//! up in a signature: a key's [`Revision`] (a JetStream stream sequence), a lease's [`Epoch`]
//! (the revision of its acquiring write: the fencing token) and a shard map's [`MapVersion`].
//! All three serialize as plain numbers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! number {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The number `value`.
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

number! {
    /// The revision of a key's last write: the stream sequence of its message (0: the key was
    /// never written). What a compare-and-swap expects.
    Revision
}

number! {
    /// A leader lease's epoch: the [`Revision`] of its acquiring write. Strictly greater than
    /// every earlier lease's of the same cluster; stamped on every map a leader writes.
    Epoch
}

number! {
    /// A shard map's version: 1 for the first map, then +1 per write (0: no map yet).
    MapVersion
}

impl Epoch {
    /// The epoch of a lease acquired by the write at `revision`.
    pub const fn of(revision: Revision) -> Self {
        Self(revision.0)
    }
}

impl MapVersion {
    /// The version after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::{Epoch, MapVersion, Revision};

    #[test]
    fn numbers_serialize_as_plain_numbers_and_order_by_value() {
        assert_eq!(
            serde_json::to_string(&Epoch::new(7)).ok().as_deref(),
            Some("7")
        );
        assert_eq!(
            serde_json::from_str::<MapVersion>("3").ok(),
            Some(MapVersion::new(3))
        );
        assert!(Revision::new(2) < Revision::new(10));
        assert_eq!(Epoch::of(Revision::new(5)), Epoch::new(5));
        assert_eq!(MapVersion::default().next(), MapVersion::new(1));
        assert_eq!(Revision::new(42).to_string(), "42");
    }
}
