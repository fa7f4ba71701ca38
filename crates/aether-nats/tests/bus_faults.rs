//! Fault tests of the NATS event bus against a real `nats-server`: the server is SIGKILLed under
//! live traffic and under a durable subscriber, down ~1.5 s, and restarted on the same port and
//! store directory.
//!
//! - Live mode is at-most-once, but every loss must be *counted*: the publisher numbers its
//!   events per namespace (`Aether-Seq`), and the subscriber counts the gaps. After the outage
//!   both buses reconnect on their own, the subscriber receives events published after the
//!   restart, both count the disconnect, and every event the publisher numbered from the
//!   subscriber's first one on is either received or counted as lost — exactly.
//! - Durable mode loses nothing across the restart (file storage survives it): events
//!   published before the kill and after the restart all arrive, first deliveries in order,
//!   and any duplicate is a redelivery (counted as such).
//! - A frozen server (SIGSTOP) fills the publisher's socket and client buffer, so publishes
//!   wait and some are cancelled: a cancelled publish uses up no sequence number, so after
//!   SIGCONT the receiver gets exactly what was sent and counts no loss. And `try_publish`
//!   into the frozen server fills the client, then the outgoing queue, then drops (counted);
//!   `publish` calls after SIGCONT wait behind the queued events, so call order holds.
//!
//! Measured figures (time to resume, events lost, errors seen) are printed with `--nocapture`.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aether_core::{ActorId, Event, Namespace, SubscribeOptions, Subscription};
use aether_nats::{DurableOptions, NatsBusConfig, NatsEventBus};
use aether_testkit::nats_server::NatsServer;
use async_nats::connection::State;
use tokio::time::{Instant, timeout};

/// Longest wait for one step (an event, a reconnect, a reply).
const WAIT: Duration = Duration::from_secs(10);
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_millis(1500);

fn namespace(prefix: &str) -> Namespace {
    Namespace::new(format!("{prefix}-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

async fn connect(url: &str, config: NatsBusConfig) -> NatsEventBus {
    timeout(WAIT, NatsEventBus::connect_with(url, config))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} took over {WAIT:?}"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// SIGKILLs the server, keeps it down for [`OUTAGE`], starts it again (same port and store)
/// and waits until it is ready. Blocking harness calls run off the async workers' backs.
async fn kill_and_restart(server: &mut NatsServer) -> Instant {
    tokio::task::block_in_place(|| server.kill());
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| server.restart()).unwrap_or_else(|e| panic!("restart: {e}"));
    Instant::now()
}

/// Waits until every bus's connection is up again.
async fn wait_connected(buses: &[&NatsEventBus]) {
    let started = Instant::now();
    while buses
        .iter()
        .any(|bus| bus.client().connection_state() != State::Connected)
    {
        assert!(
            started.elapsed() < WAIT,
            "not reconnected within {WAIT:?} of the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Takes events from `sub` into `got` (their versions) until `done(got)` holds; panics naming
/// `what` if that takes longer than [`WAIT`].
async fn receive_until(
    sub: &mut Subscription,
    got: &mut Vec<u64>,
    what: &str,
    done: impl Fn(&[u64]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(got) {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(event)) => got.push(event.version),
            Ok(None) => panic!("{what}: the subscription ended"),
            Err(_) => panic!(
                "{what}: not within {WAIT:?} ({} received, last v{:?})",
                got.len(),
                got.last()
            ),
        }
    }
}

/// Receptions as runs of consecutive versions, `*` marking redeliveries: "1-20 20*-50* 21-100".
fn runs(received: &[(u64, bool)]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u64, u64, bool)> = None;
    for &(version, redelivered) in received {
        run = match run {
            Some((start, end, r)) if r == redelivered && version == end + 1 => {
                Some((start, version, r))
            }
            Some((start, end, r)) => {
                out.push(run_text(start, end, r));
                Some((version, version, redelivered))
            }
            None => Some((version, version, redelivered)),
        };
    }
    if let Some((start, end, r)) = run {
        out.push(run_text(start, end, r));
    }
    out.join(" ")
}

fn run_text(start: u64, end: u64, redelivered: bool) -> String {
    let mark = if redelivered { "*" } else { "" };
    if start == end {
        format!("{start}{mark}")
    } else {
        format!("{start}{mark}-{end}{mark}")
    }
}

/// A publishes v1, v2, … live every 2 ms in one namespace while B listens; the server is killed
/// and restarted under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_traffic_resumes_after_a_server_restart_and_every_loss_is_counted() {
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace("ticks");
    let a = connect(&url, NatsBusConfig::default()).await;
    let b = connect(&url, NatsBusConfig::default()).await;
    // A queue large enough for the whole run: local drops would be a different loss, not
    // the one measured here (checked below: `dropped == 0`).
    let mut sub = b.subscribe_with(&ns, SubscribeOptions::new().queue_capacity(1 << 20));
    timeout(WAIT, b.flush())
        .await
        .expect("flush within the wait")
        .expect("flush");

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn({
        let (a, ns, stop, published) = (a.clone(), ns.clone(), stop.clone(), published.clone());
        async move {
            let actor = ActorId::new("clock").expect("actor");
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                a.publish(&ns, Event::new(actor.clone(), "Ticked", n)).await;
                published.store(n, Ordering::SeqCst);
            }
            n
        }
    });

    let mut got = Vec::new();
    receive_until(&mut sub, &mut got, "before the outage", |got| {
        got.len() >= 100
    })
    .await;
    let at_kill = published.load(Ordering::SeqCst);
    let restarted = kill_and_restart(&mut server).await;
    let during_outage = published.load(Ordering::SeqCst) - at_kill;
    wait_connected(&[&a, &b]).await;
    let reconnected = restarted.elapsed();
    // B's subscription is registered again (the client resubscribes first thing on reconnect;
    // flush waits for the server's answer behind it). Everything A publishes from now on is
    // published after the restart, to a server that knows B's interest.
    timeout(WAIT, b.flush())
        .await
        .expect("flush after the restart within the wait")
        .expect("flush after the restart");
    let mark = published.load(Ordering::SeqCst);
    receive_until(
        &mut sub,
        &mut got,
        "an event published after the restart",
        |got| got.last().is_some_and(|&last| last > mark),
    )
    .await;
    let resumed = restarted.elapsed();

    stop.store(true, Ordering::SeqCst);
    let sent = timeout(WAIT, publisher)
        .await
        .expect("publisher stops")
        .expect("publisher");
    timeout(WAIT, a.flush())
        .await
        .expect("flush within the wait")
        .expect("flush");
    receive_until(&mut sub, &mut got, "A's last event", |got| {
        got.last() == Some(&sent)
    })
    .await;
    // Nothing after the last one (no duplicates trailing behind).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sub.try_recv().is_none(), "an event after A's last one");

    let (ma, mb) = (a.metrics(), b.metrics());
    println!(
        "A published {sent} ({during_outage} while the server was down); B received {} \
         (first v{}), lost {}; reconnected {reconnected:?} \
         and received post-restart events {resumed:?} after the restart\nA {ma:?}\nB {mb:?}",
        got.len(),
        got[0],
        mb.lost
    );
    assert!(ma.disconnects >= 1, "A did not count the outage: {ma:?}");
    assert!(mb.disconnects >= 1, "B did not count the outage: {mb:?}");
    assert_eq!(ma.published, sent, "{ma:?}");
    assert_eq!(
        ma.sent + ma.send_failed,
        sent,
        "every event A numbered was either handed to NATS or counted as refused: {ma:?}"
    );
    assert_eq!(mb.dropped, 0, "no local drops at B: {mb:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "B received events out of order or twice"
    );

    // The accounting. A numbers its events in this namespace 1, 2, … (`Aether-Seq`; here the
    // version is the same number, as A publishes nothing else in it). B's gap counter starts at
    // the first event it receives from A (`first`) and, for each later one, adds the numbers
    // skipped since the previous one to `lost`. B has received A's last event (`sent`), so
    // every number in first..=sent is either received or counted in a gap:
    //     received + lost == sent - first + 1.
    // `received` counts B's NATS receptions (one pattern here, so one per event), which must
    // also be exactly what the subscription got.
    //
    // How many are lost varies from run to run (0, 224, 995, 1031 in four runs): A's client
    // holds what A publishes until it has reconnected (the outage plus ~0.4 s) and sends it
    // all at once then; if B's client reconnects (and resubscribes) after that, the server has
    // no one to give those events to. Events in a client's write buffer, or inside the server, at the kill are lost
    // too. The identity must hold whatever the amount.
    let first = got[0];
    assert_eq!(mb.received, got.len() as u64, "{mb:?}");
    assert_eq!(
        mb.received + mb.lost,
        sent - first + 1,
        "received + lost must account for every event A numbered from B's first one on \
         (first v{first}, last v{sent}): {mb:?}"
    );
    // And `lost` names exactly the events that did not arrive.
    let arrived: HashSet<u64> = got.iter().copied().collect();
    let missing = (first..=sent).filter(|v| !arrived.contains(v)).count() as u64;
    assert_eq!(missing, mb.lost, "{mb:?}");
}

/// A durable subscriber in the middle of its events when the server is killed; more events
/// are published after the restart. All arrive; first deliveries in order; duplicates only as
/// counted redeliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscriber_loses_nothing_across_a_server_restart() {
    const ACK_WAIT: Duration = Duration::from_secs(2);
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = namespace("ledger");
    let a = connect(&url, NatsBusConfig::default()).await;
    let mut config = NatsBusConfig::default();
    config.durable.ack_wait = ACK_WAIT;
    let b = connect(&url, config).await;
    let mut sub = timeout(
        WAIT,
        b.subscribe_durable("survivor", &ns, DurableOptions::new()),
    )
    .await
    .expect("open within the wait")
    .expect("open");
    let actor = ActorId::new("account-1").expect("actor");
    let all: Vec<Event> = (1..=100)
        .map(|v| Event::new(actor.clone(), "Posted", v))
        .collect();

    // Publishes one event, retrying (with the same id, so it is stored once) while the
    // server is coming back; returns the number of failed attempts.
    let publish = |event: Event| {
        let (a, ns) = (a.clone(), ns.clone());
        async move {
            let deadline = Instant::now() + WAIT;
            let mut failures = 0;
            loop {
                match timeout(WAIT, a.publish_durable(&ns, event.clone())).await {
                    Ok(Ok(_)) => return failures,
                    Ok(Err(e)) if Instant::now() < deadline => {
                        failures += 1;
                        println!("publish_durable v{}: {e}; retrying", event.version);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(Err(e)) => panic!("publish_durable v{}: {e}", event.version),
                    Err(_) => panic!("publish_durable v{} hung", event.version),
                }
            }
        }
    };

    // Each reception: the version, and whether the subscription counted it as a redelivery.
    let mut received: Vec<(u64, bool)> = Vec::new();
    let mut recv_errors = Vec::new();
    let mut take = async |sub: &mut aether_nats::DurableSubscription,
                          received: &mut Vec<(u64, bool)>,
                          deadline: Instant|
           -> bool {
        loop {
            let before = sub.metrics().redelivered;
            match tokio::time::timeout_at(deadline, sub.recv()).await {
                Ok(Ok(Some(event))) => {
                    received.push((event.version, sub.metrics().redelivered > before));
                    return true;
                }
                Ok(Ok(None)) => panic!("the durable subscription ended"),
                // The subscription stays usable across errors: note and go on.
                Ok(Err(e)) => {
                    recv_errors.push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return false,
            }
        }
    };

    for event in &all[..50] {
        assert_eq!(
            publish(event.clone()).await,
            0,
            "no failures before the kill"
        );
    }
    // Mid-stream: 20 taken (19 acknowledged, the 20th in hand), the other 30 stored and
    // delivered or about to be.
    let deadline = Instant::now() + WAIT;
    while received.len() < 20 {
        assert!(
            take(&mut sub, &mut received, deadline).await,
            "20 events before the kill: got {received:?}"
        );
    }

    let restarted = kill_and_restart(&mut server).await;
    wait_connected(&[&a, &b]).await;
    let mut publish_failures = 0;
    for event in &all[50..] {
        publish_failures += publish(event.clone()).await;
    }

    // Until every version has arrived at least once.
    let deadline = Instant::now() + WAIT;
    let mut seen: HashSet<u64> = received.iter().map(|&(v, _)| v).collect();
    while seen.len() < all.len() {
        assert!(
            take(&mut sub, &mut received, deadline).await,
            "all 100 after the restart: missing {:?}",
            (1..=100).filter(|v| !seen.contains(v)).collect::<Vec<_>>()
        );
        seen.insert(received.last().expect("just received").0);
    }
    let caught_up = restarted.elapsed();
    // Anything still owed (an acknowledgement lost in the outage) is redelivered within
    // ack_wait; take it, then the subscription must be settled.
    while take(
        &mut sub,
        &mut received,
        Instant::now() + ACK_WAIT + Duration::from_secs(1),
    )
    .await
    {}
    timeout(WAIT, sub.ack())
        .await
        .expect("ack within the wait")
        .expect("ack");
    let backlog = timeout(WAIT, sub.backlog())
        .await
        .expect("backlog within the wait")
        .expect("backlog");
    println!(
        "caught up {caught_up:?} after the restart; {} receptions; publish retries \
         {publish_failures}; recv errors {recv_errors:?}; {:?}; {backlog:?}\nreceived: {}",
        received.len(),
        sub.metrics(),
        runs(&received)
    );
    assert_eq!(
        (
            backlog.waiting,
            backlog.unacknowledged,
            backlog.redelivering
        ),
        (0, 0, 0),
        "settled: {backlog:?}"
    );

    // None lost, first deliveries in order, every repeat a counted redelivery. (Observed: the
    // events B held unacknowledged at the kill come again right after the restart, e.g.
    // "1-50 20*-50* 51-100"; sometimes from v1, when the acknowledgements B had sent just before
    // the kill did not survive it: "1-50 1*-50* 51-100".)
    let mut first_seen = Vec::new();
    let mut seen = HashSet::new();
    for &(version, redelivered) in &received {
        if seen.insert(version) {
            first_seen.push(version);
        } else {
            assert!(
                redelivered,
                "v{version} delivered again without being a redelivery: {received:?}"
            );
        }
    }
    assert_eq!(
        first_seen,
        (1..=100).collect::<Vec<_>>(),
        "first deliveries in order: {received:?}"
    );
}

/// A fresh namespace, bus A (with `config`) to send on it, and bus B listening to it with room
/// for everything.
async fn sender_and_listener(
    server: &NatsServer,
    prefix: &str,
    config: NatsBusConfig,
) -> (Namespace, NatsEventBus, NatsEventBus, Subscription) {
    let ns = namespace(prefix);
    let a = connect(&server.url(), config).await;
    let b = connect(&server.url(), NatsBusConfig::default()).await;
    let sub = b.subscribe_with(&ns, SubscribeOptions::new().queue_capacity(1 << 20));
    b.flush().await.expect("flush");
    (ns, a, b, sub)
}

/// Events of `actor` with 4 KiB of data each, so that a frozen server's socket fills fast.
fn filler_events(actor: &str) -> impl Fn(u64) -> Event {
    let actor = ActorId::new(actor).expect("actor");
    let filler = "x".repeat(4096);
    move |version| {
        Event::builder(actor.clone(), "Filler")
            .version(version)
            .data(&serde_json::json!({ "filler": filler }))
            .expect("data")
            .build()
    }
}

/// Sends `signal` (`STOP` or `CONT`) to the server process.
fn signal(server: &mut NatsServer, signal: &str) {
    let pid = server.node().pid().expect("the server runs");
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// With the server frozen (SIGSTOP), A's socket and then its client's buffer fill, so
/// publishes wait for the client — and some are cancelled there (a timeout). A cancelled
/// publish was never sent, so it must not use up a number: after SIGCONT the receiver gets
/// exactly the events that were sent, and counts no loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_cancelled_while_the_client_is_full_leave_no_false_gaps() {
    const CANCELLED: u64 = 5;
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let (ns, a, b, mut sub) =
        sender_and_listener(&server, "frozen", NatsBusConfig::default()).await;
    let make = filler_events("frozen-1");
    signal(&mut server, "STOP");
    let started = Instant::now();
    let (mut version, mut cancelled, mut sent_versions) = (0, 0, Vec::new());
    while cancelled < CANCELLED {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the client never filled up: {} sent",
            sent_versions.len()
        );
        version += 1;
        match timeout(Duration::from_millis(20), a.publish(&ns, make(version))).await {
            Ok(_) => sent_versions.push(version),
            Err(_) => cancelled += 1,
        }
    }
    let frozen_for = started.elapsed();
    signal(&mut server, "CONT");
    version += 1;
    a.publish(&ns, make(version)).await;
    sent_versions.push(version);
    a.flush().await.expect("flush after SIGCONT");

    let mut got = Vec::new();
    let expected = sent_versions.len();
    receive_until(&mut sub, &mut got, "after SIGCONT", |got| {
        got.len() >= expected
    })
    .await;
    println!(
        "frozen {frozen_for:?}: {} sent, {CANCELLED} cancelled, all {} received",
        expected - 1,
        got.len()
    );
    assert_eq!(got, sent_versions, "exactly the sent events, in order");
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(ma.sent, expected as u64, "{ma:?}");
    assert_eq!(
        (mb.received, mb.lost),
        (expected as u64, 0),
        "a cancelled publish is no gap: {mb:?}"
    );
}

/// With the server frozen, `try_publish` fills the client, then the outgoing queue, then drops
/// (counted). After SIGCONT, `publish` and `try_publish` calls alternate while the queue drains:
/// a publish waits behind the queued events, so the receiver gets every event that was not
/// dropped, in call order, and no dropped event leaves a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_try_publishes_keep_call_order_with_later_publishes() {
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = NatsBusConfig::default();
    config.outgoing_queue = 64;
    let (ns, a, b, mut sub) = sender_and_listener(&server, "queued", config).await;
    let make = filler_events("queued-1");
    let (mut version, mut sent_versions) = (0, Vec::new());
    let try_publish = |version, sent_versions: &mut Vec<u64>| {
        let dropped = a.metrics().send_dropped;
        a.try_publish(&ns, make(version));
        if a.metrics().send_dropped == dropped {
            sent_versions.push(version);
        }
    };
    signal(&mut server, "STOP");
    let started = Instant::now();
    while a.metrics().send_dropped < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the queue never filled: {:?}",
            a.metrics()
        );
        version += 1;
        try_publish(version, &mut sent_versions);
        // Let the bus's tasks run, as a real caller would between events.
        tokio::task::yield_now().await;
    }
    signal(&mut server, "CONT");
    for round in 0..200 {
        version += 1;
        if round % 3 == 0 {
            a.publish(&ns, make(version)).await;
            sent_versions.push(version);
        } else {
            try_publish(version, &mut sent_versions);
        }
    }
    a.flush().await.expect("flush after SIGCONT");

    let expected = sent_versions.len();
    let mut got = Vec::new();
    receive_until(&mut sub, &mut got, "after SIGCONT", |got| {
        got.len() >= expected
    })
    .await;
    let (ma, mb) = (a.metrics(), b.metrics());
    println!(
        "{version} published: {expected} sent, {} dropped while the queue was full",
        ma.send_dropped
    );
    assert_eq!(got, sent_versions, "every sent event, in call order");
    assert_eq!(
        (ma.sent, ma.sent + ma.send_dropped),
        (expected as u64, version),
        "{ma:?}"
    );
    assert_eq!(
        (mb.received, mb.lost),
        (expected as u64, 0),
        "a dropped try_publish is no gap: {mb:?}"
    );
}
