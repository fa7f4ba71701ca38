//! Helpers shared by Aether's tests, benchmarks and examples: event fixtures and the baseline
//! store benchmarks compare against. Later: the `nats-server` harness.

pub mod baseline;
pub mod fixtures;
