//! [`BackendError`]: one way to build the "the backend failed" variant of every Aether error
//! enum (the store's, the NATS bus's, the cluster's) from what was being done and its cause, so
//! that no crate keeps its own copy of that constructor.

use crate::BoxError;

/// An error enum with a variant for failures of the system underneath (NATS, JetStream, a
/// database) that the caller cannot act on except by reporting them.
///
/// # Examples
///
/// ```
/// use aether_core::{BackendError, ErrorKind, StoreError};
///
/// let error = StoreError::backend("decode a snapshot", std::io::Error::other("bad JSON"));
/// assert_eq!(error.kind(), ErrorKind::Infrastructure);
/// assert!(error.to_string().contains("decode a snapshot: bad JSON"));
/// ```
pub trait BackendError: Sized {
    /// The backend variant, holding `message` and its cause.
    fn from_backend(message: String, source: BoxError) -> Self;

    /// The backend variant for `message` (what was being done) caused by `source`.
    fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::from_backend(message.into(), Box::new(source))
    }
}
