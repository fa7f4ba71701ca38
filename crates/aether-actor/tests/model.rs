//! Model-based property test on the in-memory store (the harness: `support/model.rs`).

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;

use aether_core::InMemoryEventStore;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn actors_match_the_model(
        ops in proptest::collection::vec(model::op(), 1..60),
        snapshots in proptest::option::of(1u64..5),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(model::run(InMemoryEventStore::new(), ops, snapshots));
    }
}
