//! The actor benchmarks' global allocator: jemalloc, as a service running Aether should use
//! (README, "Performance"), for ours and the baseline alike; built with
//! `RUSTFLAGS='--cfg aether_system_alloc'`, the system's (glibc's `malloc`) instead.
//!
//! Why it matters here: an actor runtime allocates a message on the caller's worker thread
//! and frees it on the actor's, and keeps many actors' memory alive. glibc's `malloc` handles
//! that badly: its per-thread caches run dry, its arenas' locks are contended (futex
//! wake-ups) and its bins fragment, so that a command costs twice as much once 16 000 idle
//! actors are alive; with jemalloc (or mimalloc) the cost stays flat (BENCHMARKS.md,
//! session 12).

#[cfg(not(aether_system_alloc))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator this benchmark was built with, for its report.
pub(crate) fn name() -> &'static str {
    if cfg!(aether_system_alloc) {
        "system allocator (glibc malloc)"
    } else {
        "jemalloc"
    }
}
