//! [`DurableName`]: the validated name of a durable subscription, and the JetStream consumer
//! name it becomes (scoped by namespace for tenant handles, so tenants never share one).

use aether_core::Namespace;

use super::BusError;

/// The name of a durable subscription: 1 to 64 ASCII letters, digits, `_` and `-`. A
/// subscription that comes back under the same name resumes where it left off.
///
/// # Examples
///
/// ```
/// use aether_nats::DurableName;
///
/// assert!(DurableName::new("billing-projector").is_ok());
/// for bad in ["", "a.b", "a b", "x*", "x>", "ü", &"n".repeat(65)] {
///     assert!(DurableName::new(bad).is_err(), "{bad:?}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DurableName(String);

impl DurableName {
    /// Longest name in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidDurableName`] saying which rule `name` breaks.
    pub fn new(name: impl AsRef<str>) -> Result<Self, BusError> {
        let name = name.as_ref();
        let fail = |reason| BusError::InvalidDurableName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(fail("empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(fail("longer than 64 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(fail("only ASCII letters, digits, '_' and '-' are allowed"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JetStream consumer behind this name: `g-<name>` on the whole bus, and
    /// `t<len>-<ns>-<name>` on a tenant handle, where `<ns>` is the namespace with `_` written
    /// `__` and `.` written `_x` (consumer names cannot hold `.`) and `<len>` its length, which
    /// makes the mapping injective. At most 230 bytes, within JetStream's 255.
    pub(crate) fn consumer_name(&self, scope: Option<&Namespace>) -> String {
        match scope {
            None => format!("g-{}", self.0),
            Some(namespace) => {
                let encoded = namespace.as_str().replace('_', "__").replace('.', "_x");
                format!("t{}-{encoded}-{}", encoded.len(), self.0)
            }
        }
    }
}

impl std::fmt::Display for DurableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_scoped_and_injective() {
        let name = |n: &str| DurableName::new(n).unwrap();
        let ns = |n: &str| Namespace::new(n).unwrap();
        assert_eq!(name("x").consumer_name(None), "g-x");
        assert_eq!(name("x").consumer_name(Some(&ns("a.b"))), "t4-a_xb-x");
        // "a-b" + "c" and "a" + "b-c" would collide without the length.
        assert_ne!(
            name("c").consumer_name(Some(&ns("a-b"))),
            name("b-c").consumer_name(Some(&ns("a")))
        );
        // The longest namespace and name still fit JetStream's 255-byte limit.
        let longest = ns(&"_".repeat(Namespace::MAX_LEN));
        let long_name = name(&"n".repeat(DurableName::MAX_LEN));
        assert!(long_name.consumer_name(Some(&longest)).len() <= 230);
        assert_ne!(
            name("x").consumer_name(Some(&ns("a.x"))),
            name("x").consumer_name(Some(&ns("a_x")))
        );
    }
}
