//! The NATS permissions each Aether role needs (see `docs/permissions.md`), as data: what a
//! nats-server `permissions` block for a node, a tenant's client, an auditor or the CLI
//! should allow and deny, generated for a namespace.
//!
//! | Role | Reads | Writes | Creates streams |
//! |---|---|---|---|
//! | [`node`](Permissions::node) | everything | everything | yes: namespaces, the bus, cluster buckets |
//! | [`tenant`](Permissions::tenant) | its namespace | its namespace | no: uses what a node created |
//! | [`audit`](Permissions::audit) | every namespace, the cluster | nothing | no |
//!
//! A tenant is confined by subject: its event stream, snapshot bucket and namespace bus stream
//! (`aether-ev-<enc(ns)>`, `KV_aether-snap-<enc(ns)>`, `aether-bus-<enc(ns)>`) are the only
//! streams whose JetStream API it may call, its bus subjects are `aether.events.<ns>` and
//! `aether.durable.<ns>`, its actor requests `aether.actor.<enc(ns)>.>`, and its replies come
//! to its own inbox prefix ([`tenant_inbox_prefix`]), which its connection must use.
//!
//! ```
//! use aether_core::Namespace;
//! use aether_nats::permissions::{Permissions, tenant_inbox_prefix};
//!
//! let ns = Namespace::new("tenant-a")?;
//! let p = Permissions::tenant(&ns);
//! assert!(p.publish.allow.contains(&"ae.tenant-a.*".to_owned()));
//! assert!(p.publish.allow.contains(&"$JS.API.STREAM.INFO.aether-ev-tenant-a".to_owned()));
//! assert!(!p.publish.allow.iter().any(|s| s.contains("STREAM.CREATE")));
//! assert_eq!(tenant_inbox_prefix(&ns), "_INBOX_t.tenant-a");
//! // The block to paste into a nats-server user:
//! assert!(p.to_conf().starts_with("permissions: {"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub(crate) mod violations;

pub use violations::Violation;

use aether_core::Namespace;

use crate::naming::{encode_token, snapshot_bucket, stream_name};

/// Inbox prefix of the audit role (replies to its requests come below it).
pub const AUDIT_INBOX_PREFIX: &str = "_INBOX_audit";
/// Inbox prefix of the CLI role.
pub const CLI_INBOX_PREFIX: &str = "_INBOX_cli";

/// The permission violation in a server's error, if it is one: the server refuses a publish or
/// subscription by dropping it and sending `-ERR 'Permissions Violation for Publish to "<subject>"'`,
/// which async-nats hands only to the connection's
/// [`event_callback`](async_nats::ConnectOptions::event_callback). A client that makes its own
/// connection uses this to fail at once, naming the subject, instead of waiting for a reply
/// that never comes.
///
/// ```
/// use aether_nats::permissions::permission_violation;
///
/// let error = async_nats::ServerError::Other(
///     r#"Permissions Violation for Publish to "$JS.API.STREAM.INFO.aether-ev-b""#.to_owned(),
/// );
/// let refused = permission_violation(&error).unwrap();
/// assert_eq!((refused.action, refused.subject.as_str()), ("publish to", "$JS.API.STREAM.INFO.aether-ev-b"));
/// assert!(permission_violation(&async_nats::ServerError::AuthorizationViolation).is_none());
/// ```
pub fn permission_violation(error: &async_nats::ServerError) -> Option<Violation> {
    match error {
        async_nats::ServerError::Other(text) => violations::parse(text),
        _ => None,
    }
}

/// The inbox prefix a tenant's connection must use
/// ([`async_nats::ConnectOptions::custom_inbox_prefix`]): `_INBOX_t.<enc(ns)>`, so that it may
/// subscribe to its own replies and no one else's.
pub fn tenant_inbox_prefix(namespace: &Namespace) -> String {
    format!("_INBOX_t.{}", encode_token(namespace.as_str()))
}

/// The namespace bus stream of `namespace` under the default bus stream name (`aether-bus`):
/// `aether-bus-<enc(ns)>`. See [`DurableConfig`](crate::DurableConfig).
pub fn bus_stream_name(namespace: &Namespace) -> String {
    namespace_bus_stream(&crate::DurableConfig::default().stream_name, namespace)
}

pub(crate) fn namespace_bus_stream(shared: &str, namespace: &Namespace) -> String {
    format!("{shared}-{}", encode_token(namespace.as_str()))
}

/// Allowed and denied subjects for one direction (publish or subscribe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectRules {
    /// Subjects (NATS wildcards allowed) the user may use.
    pub allow: Vec<String>,
    /// Subjects the user may not use even where `allow` matches.
    pub deny: Vec<String>,
}

/// A nats-server `permissions` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// What the user may publish (including JetStream API requests).
    pub publish: SubjectRules,
    /// What the user may subscribe to.
    pub subscribe: SubjectRules,
}

/// The JetStream API a user needs to use (not manage) `stream`: its info, direct and stored
/// message reads, consumers (create, info, delete, next, reset) and their acknowledgements.
fn use_stream(stream: &str) -> Vec<String> {
    [
        "$JS.API.STREAM.INFO.{s}",
        "$JS.API.STREAM.MSG.GET.{s}",
        "$JS.API.DIRECT.GET.{s}",
        "$JS.API.DIRECT.GET.{s}.>",
        "$JS.API.CONSUMER.CREATE.{s}",
        "$JS.API.CONSUMER.CREATE.{s}.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.{s}.*",
        "$JS.API.CONSUMER.INFO.{s}.*",
        "$JS.API.CONSUMER.DELETE.{s}.*",
        "$JS.API.CONSUMER.MSG.NEXT.{s}.*",
        "$JS.API.CONSUMER.RESET.{s}.*",
        "$JS.ACK.{s}.>",
    ]
    .iter()
    .map(|t| t.replace("{s}", stream))
    .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Permissions {
    /// A tenant's client in `namespace`: reads and writes its events, snapshots, bus events
    /// (live and durable) and actor requests, on streams a node created; nothing of any other
    /// namespace; no stream management. Its connection must use
    /// [`tenant_inbox_prefix`]`(namespace)`.
    pub fn tenant(namespace: &Namespace) -> Self {
        let enc = encode_token(namespace.as_str());
        let bucket = snapshot_bucket(namespace);
        let mut publish = vec![
            format!("ae.{enc}.*"),
            format!("$KV.{bucket}.>"),
            format!("aether.events.{namespace}"),
            format!("aether.durable.{namespace}"),
            format!("aether.actor.{enc}.>"),
            // The bus's flush is a request to a fresh inbox of its own.
            format!("{}.>", tenant_inbox_prefix(namespace)),
        ];
        for stream in [
            stream_name(namespace),
            format!("KV_{bucket}"),
            bus_stream_name(namespace),
        ] {
            publish.extend(use_stream(&stream));
        }
        Self {
            publish: SubjectRules {
                allow: publish,
                deny: Vec::new(),
            },
            subscribe: SubjectRules {
                allow: vec![
                    format!("aether.events.{namespace}"),
                    format!("{}.>", tenant_inbox_prefix(namespace)),
                ],
                deny: Vec::new(),
            },
        }
    }

    /// A node: everything Aether does, across namespaces — creating namespaces' streams and
    /// buckets, the bus stream, the cluster's buckets and subjects, serving actor requests.
    pub fn node() -> Self {
        Self {
            publish: SubjectRules {
                allow: strings(&[
                    "ae.>",
                    "aether.>",
                    "$KV.>",
                    "$JS.API.>",
                    "$JS.ACK.>",
                    "$JS.FC.>",
                    "_INBOX.>",
                    // Answers to actor requests from tenants' clients, the auditor and the CLI.
                    "_INBOX_t.>",
                    "_INBOX_audit.>",
                    "_INBOX_cli.>",
                ]),
                deny: Vec::new(),
            },
            subscribe: SubjectRules {
                // `_INBOX_cli`: the `aether` CLI run with a node's credentials (`aether bench`)
                // keeps its inbox prefix. A node reads everything anyway.
                allow: strings(&["aether.>", "_INBOX.>", "_INBOX_cli.>"]),
                deny: Vec::new(),
            },
        }
    }

    /// An auditor: reads every namespace's events, snapshots and bus events (live, and
    /// through the bus streams) and the cluster's buckets; writes nothing and manages nothing
    /// (no stream or consumer deletion). Its connection must use [`AUDIT_INBOX_PREFIX`].
    pub fn audit() -> Self {
        Self::reader(AUDIT_INBOX_PREFIX)
    }

    /// The `aether` CLI's read-only commands (namespaces, events, actor, tail, cluster
    /// status, watch and history): an auditor with its own inbox prefix,
    /// [`CLI_INBOX_PREFIX`], which the CLI uses by default. `aether bench` creates and deletes
    /// streams: run it with a node's credentials.
    pub fn cli() -> Self {
        Self::reader(CLI_INBOX_PREFIX)
    }

    fn reader(inbox: &str) -> Self {
        let mut allow = strings(&[
            "$JS.API.INFO",
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.LIST",
        ]);
        allow.extend(use_stream("*").into_iter().filter(|s| {
            !s.contains(".DELETE.") && !s.contains(".RESET.") && !s.starts_with("$JS.ACK.")
        }));
        // Ordered consumers (reads, KV watches) need no acknowledgement; flow control replies.
        allow.push("$JS.FC.>".to_owned());
        // The bus's flush is a request to a fresh inbox of its own.
        allow.push(format!("{inbox}.>"));
        Self {
            publish: SubjectRules {
                allow,
                deny: Vec::new(),
            },
            subscribe: SubjectRules {
                allow: vec!["aether.events.>".to_owned(), format!("{inbox}.>")],
                deny: Vec::new(),
            },
        }
    }

    /// The block as nats-server configuration: `permissions: { publish: { allow: [...] },
    /// subscribe: { allow: [...] } }`, one subject a line, for a `users` entry.
    pub fn to_conf(&self) -> String {
        fn list(out: &mut String, key: &str, subjects: &[String]) {
            if subjects.is_empty() {
                return;
            }
            out.push_str(&format!("      {key}: [\n"));
            for s in subjects {
                out.push_str(&format!("        \"{s}\"\n"));
            }
            out.push_str("      ]\n");
        }
        let mut out = String::from("permissions: {\n");
        for (name, rules) in [("publish", &self.publish), ("subscribe", &self.subscribe)] {
            out.push_str(&format!("    {name}: {{\n"));
            list(&mut out, "allow", &rules.allow);
            list(&mut out, "deny", &rules.deny);
            out.push_str("    }\n");
        }
        out.push_str("  }");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_names_only_its_own_streams_and_subjects() {
        let a = Namespace::new("prod.a").unwrap();
        let p = Permissions::tenant(&a);
        for subject in p.publish.allow.iter().chain(&p.subscribe.allow) {
            let own = subject.contains("prod_2ea") || subject.contains("prod.a");
            assert!(own, "{subject} does not name prod.a");
            for manage in [
                "STREAM.CREATE",
                "STREAM.UPDATE",
                "STREAM.DELETE",
                "STREAM.PURGE",
            ] {
                assert!(!subject.contains(manage), "{subject}");
            }
        }
        assert!(
            p.subscribe
                .allow
                .contains(&"aether.events.prod.a".to_owned())
        );
        assert!(
            p.subscribe
                .allow
                .contains(&"_INBOX_t.prod_2ea.>".to_owned())
        );
    }

    #[test]
    fn readers_write_nothing() {
        for p in [Permissions::audit(), Permissions::cli()] {
            for s in &p.publish.allow {
                let inbox = s == "_INBOX_audit.>" || s == "_INBOX_cli.>";
                assert!(s.starts_with("$JS.API.") || s == "$JS.FC.>" || inbox, "{s}");
                for write in ["STREAM.CREATE", "DELETE", "PURGE", "UPDATE", "RESET"] {
                    assert!(!s.contains(write), "{s}");
                }
            }
        }
    }
}
