//! Helpers shared by Aether's tests, benchmarks and examples: event fixtures, the baseline
//! stores benchmarks compare against, a counting allocator for memory benchmarks, the
//! `nats-server` harness (single servers and clusters, with faults), and the examples' shared
//! command line.

pub mod alloc;
pub mod baseline;
pub mod example_args;
pub mod fixtures;
pub mod nats_server;
