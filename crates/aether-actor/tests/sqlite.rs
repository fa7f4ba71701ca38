//! The scenarios every store must pass (`support/scenarios.rs`, `support/talk.rs`) and the
//! model-based property test, on the embedded SQLite store: each test in a fresh data
//! directory (under Cargo's target tmp dir), with the default durability (fsync per commit).

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "support/relay.rs"]
mod relay;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;
#[allow(dead_code)]
#[path = "support/talk.rs"]
mod talk;

use std::path::PathBuf;
use std::sync::Once;

use aether_core::Namespace;
use aether_sqlite::{SqliteConfig, SqliteEventStore};

/// A store in a data directory no other test uses.
fn fresh_store() -> SqliteEventStore {
    static CLEAN: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("actors-on-sqlite");
    CLEAN.call_once(|| {
        let _ = std::fs::remove_dir_all(&root);
    });
    let dir = root.join(uuid::Uuid::now_v7().simple().to_string());
    SqliteEventStore::open(
        &dir,
        Namespace::new("actors").unwrap(),
        SqliteConfig::default(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

macro_rules! on_sqlite {
    ($module:ident; $($name:ident $(($($arg:expr),*))?),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $module::$name(fresh_store() $($(, $arg)*)?).await;
            }
        )*
    };
}

on_sqlite! { scenarios;
    retried_command_after_lost_reply,
    many_tasks_ask_one_actor(100),
    bad_input_fails_alone,
    activation_from_snapshot_and_tail,
    conflict_reloads,
    undecodable_event_fails_activation,
    retry_on_a_second_runtime_with_a_stale_view,
}

on_sqlite! { talk;
    ask_effect_chain_is_exactly_once,
    ask_cycle_is_refused,
    reminder_wakes_a_passivated_actor,
}

/// The model-based property test (`support/model.rs`): random commands, passivations and
/// restarts against a reference model, a fresh data directory per case.
#[test]
fn actors_match_the_model() {
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let cases = (
        proptest::collection::vec(model::op(), 1..40),
        proptest::option::of(1u64..5),
    );
    let result = runner.run(&cases, |(ops, snapshots)| {
        runtime.block_on(async { model::run(fresh_store(), ops, snapshots).await });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
