//! Bank accounts as actors: Aether's actor runtime on one node.
//!
//! Each account is an event-sourced actor: a command (deposit, withdraw) is decided on the
//! account's state into events, the events are stored, then applied. The example shows, and
//! checks:
//!
//! 1. commands and their outcomes (versions written, the reply);
//! 2. a rejected overdraft: a typed rejection, nothing written;
//! 3. a command retried with the same command id after the state changed (as after a lost
//!    reply): applied once, answered with its original outcome;
//! 4. passivation and reactivation by replay: the state comes back from the stored events;
//! 5. a transfer between two accounts: one actor's decision tells another actor to deposit
//!    (an effect, run after the withdrawal is stored, with a command id derived from the
//!    transfer's: retrying the transfer moves the money once);
//! 6. a restart: a new runtime on the same store resumes every account (and still recognises
//!    the retried command).
//!
//! Run it with `cargo run -p aether --features actor --example actors`: the accounts live in
//! the embedded durable store in `./aether-data` (namespace `bank-example`; `--data DIR` for
//! another directory), and every further run resumes them — the opening deposit has a fixed
//! command id, so it is applied once across all runs (as long as it is among alice's last
//! 1024 commands, the default command horizon: some 300 runs). `--memory` keeps them in
//! memory instead, and `--nats nats://127.0.0.1:4222` in JetStream (a running
//! `nats-server -js`), resumed the same way.
//!
//! Every step is checked: if a balance, a version or an outcome is not what it must be, the
//! example stops with an error and exits non-zero.

use std::process::ExitCode;

use aether::actor::{
    Actor, ActorConfig, Actors, AskError, AskOptions, CommandId, Decision, SnapshotPolicy,
};
use aether::nats::JetStreamEventStore;
use aether::{
    ActorId, InMemoryEventStore, Namespace, SnapshotStore, SqliteConfig, SqliteEventStore,
};
use aether_testkit::example_args::{Engine, StoreArgs};
use serde::{Deserialize, Serialize};

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Fails the example with a message unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+).into());
        }
    };
}

/// The account actor type (no configuration).
struct Account;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Balance {
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Command {
    Deposit {
        cents: u64,
    },
    Withdraw {
        cents: u64,
    },
    /// Withdraws `cents` and tells account `to` to deposit them.
    Transfer {
        to: String,
        cents: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Event {
    Deposited { cents: u64 },
    Withdrawn { cents: u64 },
    Sent { to: String, cents: u64 },
}

#[derive(Debug)]
enum Rejection {
    Overdraft { balance: u64, wanted: u64 },
    BadAccount(String),
}

impl Actor for Account {
    const ACTOR_TYPE: &'static str = "account";
    type State = Balance;
    type Command = Command;
    type Event = Event;
    /// The balance after the command.
    type Reply = u64;
    type Rejection = Rejection;
    /// The only query: the balance.
    type Query = ();
    type QueryReply = u64;

    fn decide(&self, state: &Balance, command: Command) -> Result<Decision<Self>, Rejection> {
        let balance = state.cents;
        match command {
            Command::Deposit { cents } => Ok(Decision::new(
                vec![Event::Deposited { cents }],
                balance + cents,
            )),
            Command::Withdraw { cents } if cents > balance => Err(Rejection::Overdraft {
                balance,
                wanted: cents,
            }),
            Command::Withdraw { cents } => Ok(Decision::new(
                vec![Event::Withdrawn { cents }],
                balance - cents,
            )),
            Command::Transfer { cents, .. } if cents > balance => Err(Rejection::Overdraft {
                balance,
                wanted: cents,
            }),
            Command::Transfer { to, cents } => {
                let to_id =
                    ActorId::new(to.as_str()).map_err(|e| Rejection::BadAccount(e.to_string()))?;
                // Stored first; then the runtime tells the other account to deposit.
                Ok(
                    Decision::new(vec![Event::Sent { to, cents }], balance - cents)
                        .then_tell_peer(to_id, Command::Deposit { cents }),
                )
            }
        }
    }

    fn apply(&self, state: &mut Balance, event: &Event) {
        match event {
            Event::Deposited { cents } => state.cents += cents,
            Event::Withdrawn { cents } | Event::Sent { cents, .. } => state.cents -= cents,
        }
    }

    fn query(&self, state: &Balance, (): ()) -> u64 {
        state.cents
    }
}

fn config() -> ActorConfig {
    ActorConfig {
        snapshots: SnapshotPolicy::EveryEvents(10),
        ..ActorConfig::default()
    }
}

async fn run<S: SnapshotStore + Clone + 'static>(store: S) -> AppResult<()> {
    let namespace = Namespace::new("bank-example")?;
    let accounts = Actors::new(namespace.clone(), Account, store.clone(), config())?;
    let alice = ActorId::new("alice")?;
    let bob = ActorId::new("bob")?;

    // 1. Commands. The opening deposit has a fixed command id: applied once, ever.
    let start_alice = accounts.query(&alice, ()).await?;
    let start_bob = accounts.query(&bob, ()).await?;
    println!("start: alice {start_alice}, bob {start_bob} (resumed from the store)");
    let opening = CommandId::new("alice-opening-deposit")?;
    let outcome = accounts
        .ask_with(
            &alice,
            Command::Deposit { cents: 10_000 },
            AskOptions::default().command_id(opening.clone()),
        )
        .await?;
    let first_run = !outcome.duplicate;
    println!(
        "alice opening deposit: balance {} at version {} ({})",
        outcome.reply,
        outcome.version,
        if first_run {
            "applied"
        } else {
            "already applied in an earlier run: not applied again"
        }
    );
    let alice_now = if first_run {
        start_alice + 10_000
    } else {
        start_alice
    };
    ensure!(
        accounts.query(&alice, ()).await? == alice_now,
        "alice should have {alice_now}"
    );
    let outcome = accounts
        .ask(&bob, Command::Deposit { cents: 2_500 })
        .await?;
    ensure!(
        outcome.reply == start_bob + 2_500,
        "bob's deposit: {outcome:?}"
    );
    println!(
        "bob deposits 2500: balance {}, version {}",
        outcome.reply, outcome.version
    );

    // 2. A rejected overdraft: nothing written.
    let bob_stream = accounts.stream_id(&bob)?;
    let version_before = store.latest_version(&bob_stream).await?;
    match accounts
        .ask(
            &bob,
            Command::Withdraw {
                cents: 1_000_000_000,
            },
        )
        .await
    {
        Err(AskError::Rejected(Rejection::Overdraft { balance, wanted })) => {
            println!("bob withdraws {wanted}: rejected, the balance is {balance}");
        }
        other => return Err(format!("the overdraft must be rejected, got {other:?}").into()),
    }
    let version_after = store.latest_version(&bob_stream).await?;
    ensure!(
        version_after == version_before,
        "the rejection wrote something: {version_before} -> {version_after}"
    );

    // 3. A retried command after a lost reply, on a changed state: applied once.
    let transfer = CommandId::generate();
    let options = AskOptions::default().command_id(transfer.clone());
    let original = accounts
        .ask_with(&alice, Command::Withdraw { cents: 300 }, options.clone())
        .await?;
    accounts.ask(&alice, Command::Deposit { cents: 50 }).await?; // the state changes
    let retry = accounts
        .ask_with(&alice, Command::Withdraw { cents: 300 }, options.clone())
        .await?;
    ensure!(
        retry.duplicate && retry.reply == original.reply && retry.written == original.written,
        "the retry must answer the original outcome: {original:?} vs {retry:?}"
    );
    let alice_now = alice_now - 300 + 50;
    ensure!(
        accounts.query(&alice, ()).await? == alice_now,
        "alice: withdrawn once"
    );
    println!(
        "alice withdraws 300 (command {transfer}), deposits 50, the withdrawal is retried: \
         applied once, the retry answers the original balance {}",
        retry.reply
    );

    // 4. Passivation and reactivation by replay.
    ensure!(accounts.passivate(&alice).await, "alice was active");
    let activations = accounts.stats().activations;
    let replayed = accounts.query(&alice, ()).await?;
    ensure!(
        replayed == alice_now,
        "after reactivation alice has {replayed}, not {alice_now}"
    );
    ensure!(
        accounts.stats().activations == activations + 1,
        "reactivated once"
    );
    println!("alice passivated, reactivated by replay: balance {replayed}");

    // 5. A transfer from bob to alice: bob's decision tells alice to deposit, after bob's
    // withdrawal is stored. Retried with the same command id: the money moves once.
    let payment = CommandId::generate();
    let options_transfer = AskOptions::default().command_id(payment.clone());
    let send = Command::Transfer {
        to: "alice".into(),
        cents: 1_000,
    };
    let sent = accounts
        .ask_with(&bob, send.clone(), options_transfer.clone())
        .await?;
    let resent = accounts.ask_with(&bob, send, options_transfer).await?;
    ensure!(
        resent.duplicate && resent.reply == sent.reply,
        "the retried transfer answers its outcome: {sent:?} vs {resent:?}"
    );
    match accounts
        .ask(
            &bob,
            Command::Transfer {
                to: String::new(),
                cents: 1,
            },
        )
        .await
    {
        Err(AskError::Rejected(Rejection::BadAccount(reason))) => {
            println!("bob transfers to \"\": rejected ({reason}), nothing sent");
        }
        other => return Err(format!("a transfer to no account is rejected, got {other:?}").into()),
    }
    // The tell was delivered before bob's outcome returned; this query queues behind it.
    let alice_now = alice_now + 1_000;
    ensure!(
        accounts.query(&alice, ()).await? == alice_now,
        "alice received the transfer once"
    );
    let alice_events = store
        .events_with_errors(&accounts.stream_id(&alice)?, 0)
        .await?
        .events;
    let deposit_id = payment.derived("e0");
    ensure!(
        alice_events.last().and_then(|e| e.command_id.as_deref()) == Some(deposit_id.as_str()),
        "alice's deposit carries the id derived from the transfer"
    );
    println!(
        "bob transfers 1000 to alice (command {payment}), retried: bob {}, alice {alice_now}; \
         alice's deposit is command {deposit_id}",
        sent.reply
    );

    // 6. A restart: a new runtime on the same store.
    accounts.shutdown().await;
    let restarted = Actors::new(namespace, Account, store, config())?;
    ensure!(
        restarted.query(&alice, ()).await? == alice_now,
        "alice after the restart"
    );
    let again = restarted
        .ask_with(&alice, Command::Withdraw { cents: 300 }, options)
        .await?;
    ensure!(
        again.duplicate,
        "the retried withdrawal is still recognised after the restart"
    );
    let bob_now = restarted.query(&bob, ()).await?;
    ensure!(
        bob_now == start_bob + 2_500 - 1_000,
        "bob after the restart: {bob_now}"
    );
    println!(
        "restarted: alice {alice_now}, bob {bob_now}; the retried withdrawal is still applied once"
    );
    let stats = restarted.stats();
    restarted.shutdown().await;
    println!(
        "stats of the restarted runtime: {} activations, {} commands, {} duplicates",
        stats.activations, stats.commands, stats.duplicates
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let namespace = || Namespace::new("bank-example").expect("a valid namespace");
    let result = match StoreArgs::from_env().engine() {
        Engine::Nats(url) => match JetStreamEventStore::connect(&url, namespace()).await {
            Ok(store) => {
                println!("store: JetStream at {url}");
                run(store).await
            }
            Err(e) => Err(format!("--nats {url}: {e}").into()),
        },
        Engine::Data(dir) => {
            match SqliteEventStore::open(&dir, namespace(), SqliteConfig::default()) {
                Ok(store) => {
                    println!("store: the embedded store in {}", dir.display());
                    run(store).await
                }
                Err(e) => Err(format!("--data {}: {e}", dir.display()).into()),
            }
        }
        Engine::Memory => {
            println!("store: in memory (gone when this run ends)");
            run(InMemoryEventStore::new()).await
        }
    };
    match result {
        Ok(()) => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
