//! Two nodes: Aether's event bus across NATS, with two nodes in one process.
//!
//! Node A and node B are two [`NatsEventBus`]es on two separate NATS connections, as two
//! services on two machines would be. The example shows, and checks:
//!
//! 1. cross-node delivery: A publishes; B's exact, filtered and cross-namespace (audit)
//!    subscriptions receive what they asked for, in order, and A's own local subscriber
//!    receives each event once (A's events coming back to it through NATS are ignored);
//! 2. isolation: two tenants, each with `namespace(..)` handles on both nodes; a tenant's
//!    subscriber never sees the other tenant's events, even for the same actor id;
//! 3. a durable subscriber catching up: B opens the durable subscription "billing" and goes
//!    away; A publishes with `publish_durable`; a new node B' on a new connection opens
//!    "billing" again and receives, in order, exactly the events it missed, then acknowledges;
//! 4. the metrics of the nodes: sent, received, lost.
//!
//! Run it with `cargo run -p aether --example two_nodes`: it starts its own `nats-server`
//! (2.12 or later on `PATH` or in `NATS_SERVER_BIN`; `scripts/install-nats-server.sh` installs
//! one) on a free port with a temporary store, and stops it at the end. Or point it at a
//! running `nats-server -js` with
//! `cargo run -p aether --example two_nodes -- --nats nats://127.0.0.1:4222`; every run uses
//! fresh namespaces under `two-nodes-<unix time in ms>`, so reruns never collide.
//!
//! Every delivery is checked and every wait is bounded: if an event is missing, duplicated,
//! out of order or late, the example stops with an error and exits non-zero.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aether::nats::{DurableOptions, NatsBusMetrics, NatsEventBus};
use aether::{
    ActorId, Event, Namespace, Pattern, SubscribeOptions, Subscription, SubscriptionFilter,
};
use aether_testkit::example_args::ExampleArgs;
use aether_testkit::nats_server::NatsServer;
use serde::{Deserialize, Serialize};

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Longest wait for an event that must arrive.
const WAIT: Duration = Duration::from_secs(10);
/// How long to listen for events that must not arrive (after the publisher has flushed).
const QUIET: Duration = Duration::from_millis(300);

/// Fails the example with a message unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+).into());
        }
    };
}

#[derive(Serialize, Deserialize)]
struct Invoice {
    amount: u64,
}

/// The namespaces of one run, all under a root unique to the run.
struct Names {
    root: Namespace,
    orders: Namespace,
    payments: Namespace,
    acme: Namespace,
    globex: Namespace,
    billing: Namespace,
}

impl Names {
    fn new() -> AppResult<Self> {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let root = format!("two-nodes-{millis}");
        let ns = |suffix: &str| Namespace::new(format!("{root}.{suffix}"));
        Ok(Self {
            orders: ns("shop.orders")?,
            payments: ns("shop.payments")?,
            acme: ns("tenant.acme")?,
            globex: ns("tenant.globex")?,
            billing: ns("billing")?,
            root: Namespace::new(root)?,
        })
    }

    /// `namespace` without the run's root, for narration: `shop.orders`.
    fn short<'a>(&self, namespace: &'a Namespace) -> &'a str {
        let relative = namespace.as_str().strip_prefix(self.root.as_str());
        relative
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(namespace.as_str())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("two_nodes failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The whole story; an error (a failed check included) ends it, with our server stopped.
async fn run() -> AppResult<()> {
    let started = Instant::now();
    let (mut own_server, url) = match ExampleArgs::from_env().nats {
        Some(url) => {
            println!("Server: the nats-server at {url}");
            (None, url)
        }
        None => {
            let server = NatsServer::start()
                .map_err(|e| format!("no --nats given, so starting a nats-server: {e}"))?;
            let url = server.url();
            println!("Server: started our own nats-server at {url} (temporary store)");
            (Some(server), url)
        }
    };
    let names = Names::new()?;
    println!(
        "Namespaces of this run: under {} (shortened below)",
        names.root
    );

    let a = NatsEventBus::connect(&url)
        .await
        .map_err(|e| format!("node A: {e}"))?;
    let b = NatsEventBus::connect(&url)
        .await
        .map_err(|e| format!("node B: {e}"))?;
    println!("Node A connected (origin {})", a.origin());
    println!("Node B connected (origin {})", b.origin());

    println!("1. Cross-node delivery: A publishes, B's subscribers receive ...");
    let mut audit = cross_node_delivery(&a, &b, &names).await?;

    println!("2. Isolation: two tenants on two nodes ...");
    tenant_isolation(&a, &b, &names, &mut audit).await?;
    // The audit is done; from here on B only holds its durable subscription.
    audit.unsubscribe();

    println!("3. A durable subscriber catches up on what it missed ...");
    let (b_metrics, b2) = durable_catch_up(&a, b, &url, &names).await?;

    println!("4. Metrics of the nodes ...");
    show_metrics(&a.metrics(), &b_metrics, &b2.metrics())?;

    drop((a, b2));
    if let Some(server) = own_server.as_mut() {
        server.stop();
        println!("Stopped our nats-server.");
    }
    let elapsed = started.elapsed();
    println!("All checks passed in {:.2} s.", elapsed.as_secs_f64());
    Ok(())
}

/// Section 1. Returns B's audit subscription (every namespace of the run), which section 2
/// uses too.
async fn cross_node_delivery(
    a: &NatsEventBus,
    b: &NatsEventBus,
    names: &Names,
) -> AppResult<Subscription> {
    let Names {
        root,
        orders,
        payments,
        ..
    } = names;
    // Node B: a service following every order, one that only cares about payments of orders,
    // and a trusted audit log that crosses namespaces through the explicitly named call.
    let mut b_orders = b.subscribe(orders);
    let paid = SubscriptionFilter::new().event_types(["OrderPaid"]);
    let mut b_paid = b.subscribe_with_filter(orders, paid);
    let everything = Pattern::new(format!("{root}.>"))?;
    let mut audit = b.subscribe_across_namespaces(&everything, SubscribeOptions::new());
    // Node A follows orders too, locally.
    let mut a_orders = a.subscribe(orders);
    // Live mode is at-most-once: B's interest must reach NATS before A publishes.
    b.flush().await?;
    let short = |ns| names.short(ns);
    println!(
        "   B subscribed to {} (all, and OrderPaid only) and to {root}.> (audit)",
        short(orders)
    );
    println!(
        "   A subscribed to {} locally; B flushed, so NATS knows B listens",
        short(orders)
    );

    let order = ActorId::new("order-1")?;
    let published = [
        (orders, Event::new(order.clone(), "OrderPlaced", 1)),
        (orders, Event::new(order.clone(), "OrderPaid", 2)),
        (
            payments,
            Event::new(ActorId::new("payment-1")?, "Captured", 1),
        ),
        (orders, Event::new(order, "OrderShipped", 3)),
    ];
    for (namespace, event) in &published {
        let delivery = a.publish(namespace, event.clone()).await;
        println!(
            "   A published {} in {} (local subscribers: {})",
            describe(event),
            short(namespace),
            delivery.delivered
        );
    }
    let in_orders: Vec<_> = published.iter().filter(|(ns, _)| *ns == orders).collect();
    let only_paid: Vec<_> = in_orders
        .iter()
        .copied()
        .filter(|(_, e)| e.event_type == "OrderPaid")
        .collect();
    let all: Vec<_> = published.iter().collect();

    expect(&mut b_orders, "B, all orders", &in_orders).await?;
    expect(&mut b_paid, "B, OrderPaid only", &only_paid).await?;
    expect(&mut audit, "B, audit", &all).await?;
    expect(&mut a_orders, "A, its own orders", &in_orders).await?;

    // A listens to orders through NATS too, so its own events come back to it: they must be
    // recognised (by origin) and ignored, not delivered twice.
    a.flush().await?;
    expect_quiet(&mut [
        ("A, its own orders", &mut a_orders),
        ("B, all orders", &mut b_orders),
        ("B, OrderPaid only", &mut b_paid),
        ("B, audit", &mut audit),
    ])
    .await?;
    println!("   after {QUIET:?} of quiet: no duplicates anywhere, A received each event once");
    Ok(audit)
}

/// Section 2.
async fn tenant_isolation(
    a: &NatsEventBus,
    b: &NatsEventBus,
    names: &Names,
    audit: &mut Subscription,
) -> AppResult<()> {
    // Tenant code gets handles confined to its namespace, here on both nodes: it writes on A
    // and reads on B. A handle has no way to publish to, or subscribe to, another namespace.
    let (acme_on_a, globex_on_a) = (
        a.namespace(names.acme.clone()),
        a.namespace(names.globex.clone()),
    );
    let (acme_on_b, globex_on_b) = (
        b.namespace(names.acme.clone()),
        b.namespace(names.globex.clone()),
    );
    let mut acme_inbox = acme_on_b.subscribe();
    let mut globex_inbox = globex_on_b.subscribe();
    b.flush().await?;
    println!("   B: acme and globex each subscribed through their own handle");

    // Both tenants have an actor "cart-1": the same id, two unrelated actors.
    let cart = ActorId::new("cart-1")?;
    let writes = [
        (&acme_on_a, Event::new(cart.clone(), "ItemAdded", 1)),
        (&globex_on_a, Event::new(cart.clone(), "ItemAdded", 1)),
        (&acme_on_a, Event::new(cart.clone(), "ItemAdded", 2)),
        (&globex_on_a, Event::new(cart.clone(), "CheckedOut", 2)),
        (&acme_on_a, Event::new(cart, "CheckedOut", 3)),
    ];
    let mut published = Vec::new();
    for (tenant, event) in writes {
        let namespace = tenant.namespace();
        println!(
            "   A published {} as {}",
            describe(&event),
            names.short(namespace)
        );
        tenant.publish(event.clone()).await;
        published.push((namespace, event));
    }
    let of = |ns: &Namespace| -> Vec<_> { published.iter().filter(|(n, _)| *n == ns).collect() };
    let (acme, globex) = (of(&names.acme), of(&names.globex));
    let all: Vec<_> = published.iter().collect();

    expect(&mut acme_inbox, "B, tenant acme", &acme).await?;
    expect(&mut globex_inbox, "B, tenant globex", &globex).await?;
    // The trusted audit crosses tenants, and knows which namespace each event came from.
    expect(audit, "B, audit", &all).await?;

    a.flush().await?;
    expect_quiet(&mut [
        ("B, tenant acme", &mut acme_inbox),
        ("B, tenant globex", &mut globex_inbox),
        ("B, audit", audit),
    ])
    .await?;
    println!("   after {QUIET:?} of quiet: acme never saw globex's events, nor globex acme's");
    Ok(())
}

/// Section 3. Takes node B away; returns B's final metrics and the node that replaced it.
async fn durable_catch_up(
    a: &NatsEventBus,
    b: NatsEventBus,
    url: &str,
    names: &Names,
) -> AppResult<(NatsBusMetrics, NatsEventBus)> {
    let billing_on_a = a.namespace(names.billing.clone());
    let invoice = |number: u32, amount: u64| -> AppResult<Event> {
        let actor = ActorId::new(format!("invoice-{number}"))?;
        Ok(Event::builder(actor, "InvoiceIssued")
            .version(1)
            .data(&Invoice { amount })?
            .build())
    };

    // The durable subscription belongs to the billing namespace's handle, so its name is
    // scoped to that namespace: another tenant's "billing" would be another subscription.
    let billing_on_b = b.namespace(names.billing.clone());
    let mut billing = billing_on_b
        .subscribe_durable("billing", DurableOptions::new())
        .await?;
    println!(
        "   B opened durable subscription \"billing\" of {}",
        names.short(&names.billing)
    );

    let first = invoice(1, 100)?;
    billing_on_a.publish_durable(first.clone()).await?;
    println!("   A stored {}", describe(&first));
    let got = durable_next(&mut billing, "B, billing").await?;
    ensure!(
        got.id == first.id,
        "B, billing: expected {}, got {}",
        describe(&first),
        describe(&got)
    );
    billing.ack().await?;
    println!("   B received {} and acknowledged it", describe(&got));

    let b_metrics = b.metrics();
    billing.close().await?;
    drop((billing_on_b, b));
    println!("   B went away (its durable subscription closed, its bus and connection dropped)");

    let mut missed = Vec::new();
    for (number, amount) in [(2, 250), (3, 75), (4, 1_200)] {
        let event = invoice(number, amount)?;
        billing_on_a.publish_durable(event.clone()).await?;
        println!("   A stored {} while B is away", describe(&event));
        missed.push(event);
    }

    let b2 = NatsEventBus::connect(url)
        .await
        .map_err(|e| format!("node B': {e}"))?;
    println!(
        "   Node B' connected (origin {}, a new connection)",
        b2.origin()
    );
    let billing_on_b2 = b2.namespace(names.billing.clone());
    let mut billing = billing_on_b2
        .subscribe_durable("billing", DurableOptions::new())
        .await?;
    let backlog = billing.backlog().await?;
    let outstanding = backlog.waiting + backlog.unacknowledged;
    println!(
        "   B' reopened \"billing\": the server holds {outstanding} events for it \
         ({} waiting, {} delivered but unacknowledged)",
        backlog.waiting, backlog.unacknowledged
    );
    ensure!(
        outstanding == missed.len() as u64,
        "B', billing: expected {} outstanding events, the server has {backlog:?}",
        missed.len()
    );
    for expected in &missed {
        let got = durable_next(&mut billing, "B', billing").await?;
        ensure!(
            got.id == expected.id,
            "B', billing: expected {} next, got {}",
            describe(expected),
            describe(&got)
        );
        let Invoice { amount } = got.data_as()?;
        println!("   B' caught up on {} (amount {amount})", describe(&got));
    }
    billing.ack().await?;
    let backlog = billing.backlog().await?;
    let metrics = billing.metrics();
    println!(
        "   B' acknowledged: {} waiting, {} unacknowledged; {} received, {} redelivered",
        backlog.waiting, backlog.unacknowledged, metrics.received, metrics.redelivered
    );
    ensure!(
        backlog.waiting == 0 && backlog.unacknowledged == 0,
        "B', billing: events left after the acknowledgement: {backlog:?}"
    );
    ensure!(
        metrics.received == missed.len() as u64 && metrics.redelivered == 0,
        "B', billing: each missed event once, none redelivered; got {metrics:?}"
    );

    drop(billing);
    let deleted = billing_on_b2.delete_durable("billing").await?;
    ensure!(
        deleted,
        "the durable subscription \"billing\" was not found to delete"
    );
    println!("   deleted \"billing\": its position is gone from the server");
    Ok((b_metrics, b2))
}

/// Section 4: prints the nodes' counters and checks that nothing was lost.
fn show_metrics(a: &NatsBusMetrics, b: &NatsBusMetrics, b2: &NatsBusMetrics) -> AppResult<()> {
    println!("   node  published  sent  durable  received  delivered  lost  dropped  failed");
    for (node, m) in [("A", a), ("B", b), ("B'", b2)] {
        let failed = m.send_failed + m.send_dropped;
        println!(
            "   {node:<4}  {:>9}  {:>4}  {:>7}  {:>8}  {:>9}  {:>4}  {:>7}  {failed:>6}",
            m.published, m.sent, m.durable_published, m.received, m.delivered, m.lost, m.dropped,
        );
    }
    println!("   (B as it was when it went away; B' only read the durable subscription)");
    for (node, m) in [("A", a), ("B", b), ("B'", b2)] {
        ensure!(
            m.lost == 0 && m.dropped == 0 && m.send_failed == 0 && m.send_dropped == 0,
            "node {node} lost events: {m:?}"
        );
    }
    // A published 4 + 5 events live and 4 durably; it never receives its own events back.
    ensure!(
        a.sent == 9 && a.durable_published == 4 && a.received == 0,
        "node A: expected 9 sent, 4 durable, 0 received; got {a:?}"
    );
    // B received each live event once per pattern it listened with: section 1, 3 (orders) + 4
    // (audit); section 2, 3 (acme) + 2 (globex) + 5 (audit).
    ensure!(
        b.received == 17 && b.sent == 0,
        "node B: expected 17 received, 0 sent; got {b:?}"
    );
    Ok(())
}

/// Receives exactly `expected` (same events, same namespaces, same order) on `subscription`.
async fn expect(
    subscription: &mut Subscription,
    who: &str,
    expected: &[&(&Namespace, Event)],
) -> AppResult<()> {
    for (namespace, event) in expected {
        let next = tokio::time::timeout(WAIT, subscription.recv_with_namespace()).await;
        let (got_ns, got) = match next {
            Ok(Some(received)) => received,
            Ok(None) => return Err(format!("{who}: subscription closed").into()),
            Err(_) => {
                let want = describe(event);
                return Err(format!("{who}: {want} not received within {WAIT:?}").into());
            }
        };
        ensure!(
            got.id == event.id && got_ns == **namespace,
            "{who}: expected {} in {namespace}, got {} in {got_ns}",
            describe(event),
            describe(&got)
        );
    }
    let list: Vec<_> = expected
        .iter()
        .map(|(_, e)| e.event_type.as_str())
        .collect();
    println!("   {who} received {}: {}", list.len(), list.join(", "));
    Ok(())
}

/// Waits [`QUIET`] and checks that none of `subscriptions` received anything more.
async fn expect_quiet(subscriptions: &mut [(&str, &mut Subscription)]) -> AppResult<()> {
    tokio::time::sleep(QUIET).await;
    for (who, subscription) in subscriptions {
        if let Some(extra) = subscription.try_recv() {
            return Err(format!("{who}: unexpected extra {}", describe(&extra)).into());
        }
    }
    Ok(())
}

/// The next event of a durable subscription, within [`WAIT`].
async fn durable_next(
    subscription: &mut aether::nats::DurableSubscription,
    who: &str,
) -> AppResult<Arc<Event>> {
    match tokio::time::timeout(WAIT, subscription.recv()).await {
        Ok(Ok(Some(event))) => Ok(event),
        Ok(Ok(None)) => Err(format!("{who}: the durable subscription was deleted").into()),
        Ok(Err(e)) => Err(format!("{who}: {e}").into()),
        Err(_) => Err(format!("{who}: nothing received within {WAIT:?}").into()),
    }
}

/// `OrderPlaced v1 of order-1`.
fn describe(event: &Event) -> String {
    let (ty, v, actor) = (&event.event_type, event.version, &event.actor_id);
    format!("{ty} v{v} of {actor}")
}
