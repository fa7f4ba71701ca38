//! # Aether on NATS JetStream
//!
//! The production engine behind Aether's contracts. So far: [`naming`], the injective mapping
//! from namespaces and actor ids to JetStream stream names, subjects and KV keys. The JetStream
//! event store, KV snapshots and the cross-node bus build on it.

pub mod naming;
