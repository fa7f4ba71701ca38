//! Quickstart: an event-sourced bank account on Aether's event store.
//!
//! Run it with `cargo run --release --example quickstart`: no server needed, the account is
//! kept in the embedded durable store in `./aether-data` (`--data DIR` for another directory),
//! so a second run goes on from the first and says so. `--memory` keeps everything in memory
//! instead, and `--nats nats://127.0.0.1:4222` uses NATS JetStream (a `nats-server -js`, 2.12
//! or later). The story is the same code on every engine, generic over the store; only the
//! constructor changes. On NATS every run uses a fresh namespace, `quickstart-<unix time in
//! ms>`, so reruns never collide with earlier ones.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aether::{
    ActorId, ActorSnapshot, DataError, Event, EventBus, EventStore, InMemoryEventStore,
    JetStreamEventStore, Namespace, Pattern, SnapshotStore, SqliteConfig, SqliteEventStore,
    StoreError, SubscribeOptions, Subscription, SubscriptionFilter, Version,
};
use aether_testkit::example_args::{Engine, StoreArgs};
use serde::{Deserialize, Serialize};

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

// --- Domain events: plain serde structs, stored as each event's JSON `data`. ---

#[derive(Serialize, Deserialize)]
struct Opened {
    owner: String,
}

#[derive(Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

#[derive(Serialize, Deserialize)]
struct Withdrawn {
    amount: u64,
}

// --- State: never stored as such, always derived by folding events (or from a snapshot). ---

#[derive(Default, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: u64,
    /// The last event folded in: the next event must be saved above it.
    version: Version,
}

impl Account {
    fn apply(&mut self, event: &Event) -> Result<(), DataError> {
        match event.event_type.as_str() {
            "Opened" => self.owner = event.data_as::<Opened>()?.owner,
            "Deposited" => self.balance += event.data_as::<Deposited>()?.amount,
            "Withdrawn" => {
                // `decide_withdraw` never emits an overdraft, so this never actually saturates.
                let amount = event.data_as::<Withdrawn>()?.amount;
                self.balance = self.balance.saturating_sub(amount);
            }
            _ => {} // Unknown types are skipped, so old code can still read newer streams.
        }
        self.version = event.version;
        Ok(())
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (owner, balance, v) = (&self.owner, self.balance, self.version);
        write!(f, "{owner}'s balance is {balance} at v{v}")
    }
}

/// A domain rule violation: the example's own error, not the library's.
#[derive(Debug)]
struct InsufficientFunds {
    balance: u64,
    requested: u64,
}

impl fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { balance, requested } = self;
        write!(f, "only {balance} available, {requested} requested")
    }
}

impl std::error::Error for InsufficientFunds {}

/// Pure decision: no I/O, just state in, event (or refusal) out, so it is trivial to test.
fn decide_withdraw(account: &Account, requested: u64) -> Result<Withdrawn, InsufficientFunds> {
    let balance = account.balance;
    if requested > balance {
        return Err(InsufficientFunds { balance, requested });
    }
    Ok(Withdrawn { amount: requested })
}

/// One writer: the account it writes to and the correlation id that tags everything it writes,
/// so all events of one request can be found together later.
struct Writer<'a>(&'a ActorId, &'a str);

impl Writer<'_> {
    /// Builds an event at an explicit version: the caller, not the store, chooses versions.
    fn event<T: Serialize>(&self, ty: &str, v: Version, data: &T) -> Result<Event, DataError> {
        let builder = Event::builder(self.0.clone(), ty).version(v);
        Ok(builder.data(data)?.correlation_id(self.1).build())
    }
}

/// Rebuilds the account from its full history.
async fn load<S: EventStore>(store: &S, actor: &ActorId) -> AppResult<Account> {
    let mut account = Account::default();
    for event in store.events(actor, 0).await? {
        account.apply(&event)?;
    }
    Ok(account)
}

#[tokio::main]
async fn main() -> AppResult<()> {
    let recent = match StoreArgs::from_env().engine() {
        Engine::Memory => {
            println!("Engine: in memory (gone when this run ends)");
            run_story(&InMemoryEventStore::new()).await?
        }
        Engine::Data(dir) => {
            let namespace = Namespace::new("quickstart")?;
            let store = SqliteEventStore::open(&dir, namespace, SqliteConfig::default())
                .map_err(|e| format!("--data {}: {e}", dir.display()))?;
            let file = store.file().display();
            println!("Engine: the embedded store in {} ({file})", dir.display());
            run_story(&store).await?
        }
        Engine::Nats(url) => {
            let millis = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
            let namespace = Namespace::new(format!("quickstart-{millis}"))?;
            let store = JetStreamEventStore::connect(&url, namespace)
                .await
                .map_err(|e| format!("--nats {url}: {e}"))?;
            let (ns, stream) = (store.namespace(), store.stream_name());
            println!("Engine: NATS JetStream at {url} (namespace {ns}, stream {stream})");
            run_story(&store).await?
        }
    };

    println!("9. Routing events on the local bus ...");
    route_on_the_bus(&recent).await?;
    Ok(())
}

/// Sections 1 to 8 on `store`, whatever the engine. Returns the account's last three events.
async fn run_story<S: EventStore + SnapshotStore>(store: &S) -> AppResult<Vec<Event>> {
    let acct = ActorId::new("account-42")?;

    println!("1. Opening an account ...");
    let earlier = load(store, &acct).await?;
    if earlier.version == 0 {
        let owner = "Ada".to_owned();
        let opened = Writer(&acct, "open-1").event("Opened", 1, &Opened { owner })?;
        store.save_event(opened).await?;
        println!("   saved Opened at v1 for {acct}");
    } else {
        // A durable store: the account of an earlier run is still there.
        println!("   {acct} is already open from an earlier run: {earlier}; going on from there");
    }

    println!("2. Depositing with explicit versions (latest + 1) ...");
    for amount in [100, 50] {
        let v = store.latest_version(&acct).await? + 1;
        let deposit = Writer(&acct, "branch").event("Deposited", v, &Deposited { amount })?;
        store.save_event(deposit).await?;
        println!("   saved Deposited {{ amount: {amount} }} at v{v}");
    }

    println!("3. Two tellers race (optimistic concurrency) ...");
    let (teller_a, teller_b) = (Writer(&acct, "teller-a"), Writer(&acct, "teller-b"));
    let seen_by_a = load(store, &acct).await?;
    let seen_by_b = load(store, &acct).await?;
    println!("   both read: {seen_by_a}");
    let w = decide_withdraw(&seen_by_a, 30)?;
    let v = seen_by_a.version + 1;
    let withdrawal = teller_a.event("Withdrawn", v, &w)?;
    store.save_event(withdrawal).await?;
    println!("   teller A withdrew 30 at v{v}");
    let w = decide_withdraw(&seen_by_b, 80)?;
    let attempt = teller_b.event("Withdrawn", seen_by_b.version + 1, &w)?;
    match store.save_event(attempt).await {
        Err(StoreError::VersionConflict {
            current_version, ..
        }) => {
            println!("   teller B got VersionConflict: account already at v{current_version}");
            // B decided on stale state, so the decision may be wrong: replay, decide again, retry.
            let fresh = load(store, &acct).await?;
            let w = decide_withdraw(&fresh, 80)?;
            let v = current_version + 1;
            let retry = teller_b.event("Withdrawn", v, &w)?;
            store.save_event(retry).await?;
            println!("   teller B re-read ({fresh}), re-decided, withdrew 80 at v{v}");
        }
        Ok(_) => return Err("expected teller B to conflict".into()),
        Err(e) => return Err(e.into()),
    }
    // The domain, not the store, refuses overdrafts, so nothing reaches the store.
    let current = load(store, &acct).await?;
    let too_much = current.balance + 1;
    match decide_withdraw(&current, too_much) {
        Err(e) => println!("   withdrawing {too_much} is refused by the domain: {e}"),
        Ok(_) => return Err("expected the overdraft to be refused".into()),
    }

    println!("4. Retrying a save is idempotent ...");
    let v = store.latest_version(&acct).await? + 1;
    let deposit = Writer(&acct, "atm-9").event("Deposited", v, &Deposited { amount: 25 })?;
    let first = store.save_event(deposit.clone()).await?;
    // E.g. the reply to the first save was lost, so the client sends the very same event again.
    let again = store.save_event(deposit).await?;
    println!("   first save: {first:?}; same event again: {again:?} (stored once)");

    println!("5. Rebuilding state by replay ...");
    let account = load(store, &acct).await?;
    println!("   {account}");

    println!("6. Saving a batch atomically (transfer + fee) ...");
    // Both events are stored or neither: a transfer is never recorded without its fee.
    let (transfer, fee, v) = (40, 2, account.version + 1);
    decide_withdraw(&account, transfer + fee)?;
    let writer = Writer(&acct, "transfer-7");
    let batch = vec![
        writer.event("Withdrawn", v, &Withdrawn { amount: transfer })?,
        writer.event("Withdrawn", v + 1, &Withdrawn { amount: fee })?,
    ];
    let outcome = store.save_events(batch).await?;
    println!(
        "   {outcome:?}: v{v} transfer of {transfer} + v{} fee of {fee}",
        v + 1
    );

    println!("7. Snapshots: replay only the tail ...");
    let interest = Writer(&acct, "interest");
    let start = store.latest_version(&acct).await? + 1;
    let end = start.div_ceil(1000) * 1000;
    for v in start..=end {
        let deposit = interest.event("Deposited", v, &Deposited { amount: 1 })?;
        store.save_event(deposit).await?;
    }
    println!("   added {} deposits of 1, now at v{end}", end + 1 - start);
    let state = load(store, &acct).await?;
    let v = state.version;
    let snapshot = ActorSnapshot::new(acct.clone(), v, serde_json::to_value(&state)?);
    store.save_snapshot(snapshot).await?;
    println!("   saved a snapshot at v{v}");
    let later = Writer(&acct, "after-snapshot");
    let tail = [
        later.event("Deposited", v + 1, &Deposited { amount: 10 })?,
        later.event("Withdrawn", v + 2, &Withdrawn { amount: 5 })?,
        later.event("Deposited", v + 3, &Deposited { amount: 20 })?,
    ];
    for event in tail {
        store.save_event(event).await?;
    }
    let full = store.events(&acct, 0).await?;
    let mut from_full = Account::default();
    for event in &full {
        from_full.apply(event)?;
    }
    // A snapshot is only a cache: without one we would simply replay everything from v1.
    let (mut from_snap, snap_v) = match store.latest_snapshot(&acct).await? {
        Some(s) => (serde_json::from_value::<Account>(s.state)?, s.version),
        None => (Account::default(), 0),
    };
    let tail = store.events(&acct, snap_v + 1).await?;
    for event in &tail {
        from_snap.apply(event)?;
    }
    let (n_full, n_tail) = (full.len(), tail.len());
    println!("   full replay: {n_full} events; snapshot at v{snap_v} + {n_tail} tail events");
    if (from_full.balance, from_full.version) != (from_snap.balance, from_snap.version) {
        return Err("snapshot and full replay disagree".into());
    }
    println!("   both agree: {from_snap}");

    println!("8. Bad input is a typed error, and nothing is written ...");
    match ActorId::new("accounts.*") {
        Err(e) => println!("   ActorId::new(\"accounts.*\"): {e}"),
        Ok(_) => return Err("expected the wildcard actor id to be rejected".into()),
    }
    // The builder defaults to version 0, which means "no events yet" and cannot be stored.
    let no_version = Event::builder(acct.clone(), "Deposited").build();
    let empty_type = Event::new(acct.clone(), "", from_full.version + 1);
    for (what, bad) in [("version 0", no_version), ("empty type", empty_type)] {
        match store.save_event(bad).await {
            Err(StoreError::InvalidEvent(reason)) => println!("   {what}: InvalidEvent({reason})"),
            other => return Err(format!("expected InvalidEvent for {what}, got {other:?}").into()),
        }
    }
    let v = store.latest_version(&acct).await?;
    println!("   the account is still at v{v}");
    Ok(full[full.len() - 3..].to_vec())
}

/// Publishes events for two tenants and shows who receives what.
async fn route_on_the_bus(recent: &[Event]) -> AppResult<()> {
    let bus = EventBus::new();
    // Tenant code gets a handle confined to its namespace: it cannot reach another tenant.
    let (eu, us) = (
        bus.namespace(Namespace::new("bank.eu")?),
        bus.namespace(Namespace::new("bank.us")?),
    );
    let mut eu_app = eu.subscribe();
    let mut us_app = us.subscribe();
    // Trusted components may cross namespaces, but only through an explicitly named call.
    let mut audit =
        bus.subscribe_across_namespaces(&Pattern::new("bank.>")?, SubscribeOptions::new());
    let mut withdrawals =
        eu.subscribe_with_filter(SubscriptionFilter::new().event_types(["Withdrawn"]));

    for event in recent {
        eu.publish(event.clone()).await;
    }
    us.publish(Event::new(ActorId::new("account-7")?, "Opened", 1))
        .await;

    println!(
        "   bank.eu app received {}, bank.us app received {}",
        count(&mut eu_app),
        count(&mut us_app)
    );
    println!(
        "   Withdrawn-only subscriber received {}",
        count(&mut withdrawals)
    );
    for _ in 0..audit.queued() {
        if let Some((namespace, event)) = audit.recv_with_namespace().await {
            let (ty, v, actor) = (&event.event_type, event.version, &event.actor_id);
            println!("   audit saw {ty} v{v} of {actor} in {namespace}");
        }
    }
    Ok(())
}

/// Takes everything queued on `subscription` and says how many there were.
fn count(subscription: &mut Subscription) -> usize {
    std::iter::from_fn(|| subscription.try_recv()).count()
}
