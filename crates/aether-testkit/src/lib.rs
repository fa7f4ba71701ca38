//! Helpers shared by Aether's tests, benchmarks and examples: event fixtures, the baseline
//! store benchmarks compare against and a counting allocator for memory benchmarks. Later: the
//! `nats-server` harness.

pub mod alloc;
pub mod baseline;
pub mod fixtures;
