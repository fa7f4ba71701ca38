//! Helpers shared by Aether's tests, benchmarks and examples: event fixtures, the baseline
//! stores benchmarks compare against, a counting allocator for memory benchmarks, and the
//! `nats-server` harness (single servers and clusters, with faults).

pub mod alloc;
pub mod baseline;
pub mod fixtures;
pub mod nats_server;
