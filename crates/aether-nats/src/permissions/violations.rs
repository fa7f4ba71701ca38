//! [`Violations`]: the permission violations a NATS server reported on one connection.
//!
//! A server that refuses a publish or a subscription does not answer the request: it drops it
//! and sends the client `-ERR 'Permissions Violation for Publish to "<subject>"'`, which
//! async-nats hands to the connection's event callback only. Without this record, a refused
//! JetStream request would look like a server that did not answer in time.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Violations kept for matching; older ones are forgotten (they were reported long ago).
const KEPT: usize = 64;

/// What the server refused this connection's user (see
/// [`permission_violation`](crate::permissions::permission_violation)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// `publish to` or `subscribe to`.
    pub action: &'static str,
    /// The subject refused.
    pub subject: String,
}

/// The violations reported on one connection, numbered from 1 in arrival order. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Violations {
    /// Number, violation, and whether an operation or a flush reported it already.
    seen: Arc<Mutex<Vec<(u64, Violation, bool)>>>,
    count: Arc<watch::Sender<u64>>,
}

impl Default for Violations {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            count: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Violations {
    /// Records `error` if it is a permission violation.
    pub(crate) fn record(&self, error: &async_nats::ServerError) {
        let async_nats::ServerError::Other(text) = error else {
            return;
        };
        let Some(violation) = parse(text) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let number = *self.count.borrow() + 1;
        seen.push((number, violation, false));
        if seen.len() > KEPT {
            seen.remove(0);
        }
        self.count.send_replace(number);
    }

    /// How many violations were reported so far: pass it to [`after`](Self::after) or
    /// [`wait`](Self::wait) to see only later ones.
    pub(crate) fn mark(&self) -> u64 {
        *self.count.borrow()
    }

    /// The first violation reported after `mark` that `wanted` accepts, if any yet, marked as
    /// reported.
    pub(crate) fn after(
        &self,
        mark: u64,
        wanted: impl Fn(&Violation) -> bool,
    ) -> Option<Violation> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter_mut()
            .find(|(number, v, _)| *number > mark && wanted(v))
            .map(|(_, v, reported)| {
                *reported = true;
                v.clone()
            })
    }

    /// The first violation no operation has reported yet, if any; every violation so far is
    /// reported after this.
    pub(crate) fn unreported(&self) -> Option<Violation> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let first = seen
            .iter()
            .find(|(_, _, reported)| !reported)
            .map(|(_, v, _)| v.clone());
        for (_, _, reported) in seen.iter_mut() {
            *reported = true;
        }
        first
    }

    /// Waits for a violation reported after `mark` that `wanted` accepts.
    pub(crate) async fn wait(&self, mark: u64, wanted: impl Fn(&Violation) -> bool) -> Violation {
        let mut count = self.count.subscribe();
        loop {
            if let Some(found) = self.after(mark, &wanted) {
                return found;
            }
            if count.changed().await.is_err() {
                // Unreachable while `self` holds the sender.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs `operation`, unless the server refuses one of its subjects first (a subject
    /// `wanted` accepts, reported while it runs): then `Err` with that violation, at once,
    /// instead of waiting for a reply that never comes.
    pub(crate) async fn guard<T>(
        &self,
        wanted: impl Fn(&Violation) -> bool,
        operation: impl Future<Output = T> + Unpin,
    ) -> Result<T, Violation> {
        let mark = self.mark();
        tokio::select! {
            biased;
            done = operation => {
                // A refusal that arrived with the failure explains it better than a timeout.
                match self.after(mark, &wanted) {
                    Some(violation) => Err(violation),
                    None => Ok(done),
                }
            }
            violation = self.wait(mark, &wanted) => Err(violation),
        }
    }
}

/// Whether `violation` is about a subject naming `token` as one of its dot-separated tokens
/// (a stream or bucket name, a subject's first token).
pub(crate) fn names(violation: &Violation, token: &str) -> bool {
    violation.subject.split('.').any(|t| t == token)
}

/// Parses the server's `Permissions Violation for Publish to "x"` (or `Subscription to "x"`,
/// possibly followed by ` using queue "q"`).
pub(crate) fn parse(text: &str) -> Option<Violation> {
    let rest = text
        .trim()
        .strip_prefix("Permissions Violation for ")
        .or_else(|| text.trim().strip_prefix("permissions violation for "))?;
    let (action, rest) = if let Some(rest) = rest.strip_prefix("Publish to ") {
        ("publish to", rest)
    } else if let Some(rest) = rest.strip_prefix("Subscription to ") {
        ("subscribe to", rest)
    } else {
        return None;
    };
    let subject = rest.strip_prefix('"')?.split('"').next()?;
    Some(Violation {
        action,
        subject: subject.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_texts_parse() {
        let v = parse(r#"Permissions Violation for Publish to "$JS.API.STREAM.INFO.aether-ev-b""#)
            .unwrap();
        assert_eq!(v.action, "publish to");
        assert_eq!(v.subject, "$JS.API.STREAM.INFO.aether-ev-b");
        assert!(names(&v, "aether-ev-b"));
        assert!(!names(&v, "aether-ev"));
        let v =
            parse(r#"Permissions Violation for Subscription to "aether.events.b" using queue "q""#)
                .unwrap();
        assert_eq!(
            (v.action, v.subject.as_str()),
            ("subscribe to", "aether.events.b")
        );
        assert_eq!(parse("Authorization Violation"), None);
        assert_eq!(parse("Permissions Violation for Publish to nothing"), None);
    }

    #[tokio::test]
    async fn guard_returns_a_violation_reported_while_waiting() {
        let violations = Violations::default();
        let recorder = violations.clone();
        let refused = async move {
            recorder.record(&async_nats::ServerError::Other(
                r#"Permissions Violation for Publish to "x.y""#.to_owned(),
            ));
            std::future::pending::<()>().await
        };
        let got = violations.guard(|v| names(v, "y"), Box::pin(refused)).await;
        assert_eq!(got.unwrap_err().subject, "x.y");
        // Earlier violations do not fail later operations, and one an operation reported is
        // not reported again.
        assert_eq!(
            violations.guard(|_| true, Box::pin(async { 7 })).await,
            Ok(7)
        );
        assert_eq!(violations.unreported(), None);
        violations.record(&async_nats::ServerError::Other(
            r#"Permissions Violation for Subscription to "a.b""#.to_owned(),
        ));
        assert_eq!(
            violations.unreported().map(|v| v.subject),
            Some("a.b".to_owned())
        );
        assert_eq!(violations.unreported(), None);
    }
}
