//! Trace context on the bus (a real `nats-server`): an event published inside a trace leaves
//! with a `traceparent` header naming the publisher's context, and reaches a subscriber on
//! another node carrying the same trace and span ids in its metadata; live and durable alike.
//! An event published outside any trace carries none. Fails (never skips) when `nats-server`
//! is missing.

use std::time::Duration;

use aether_core::{ActorId, Event, Namespace, TraceContext};
use aether_nats::{NatsEventBus, wire};
use aether_testkit::nats_server::NatsServer;
use futures::StreamExt;

const PATIENCE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?}: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_events_traceparent_reaches_the_subscriber_on_another_node() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let a = within("connect a", NatsEventBus::connect(&url))
        .await
        .unwrap();
    let b = within("connect b", NatsEventBus::connect(&url))
        .await
        .unwrap();
    let namespace = Namespace::new("traced").unwrap();
    let mut on_b = b.subscribe(&namespace);
    // What travels on the wire, headers included.
    let raw = async_nats::connect(&url).await.unwrap();
    let mut wire_sub = raw
        .subscribe(format!("{}.traced", wire::SUBJECT_PREFIX))
        .await
        .unwrap();
    raw.flush().await.unwrap();
    within("flush b", b.flush()).await.unwrap();

    let actor = ActorId::new("order-1").unwrap();
    let ctx = TraceContext::new_root();
    ctx.scope(a.publish(&namespace, Event::new(actor.clone(), "Placed", 1)))
        .await;
    // Outside any trace: nothing added.
    a.publish(&namespace, Event::new(actor.clone(), "Paid", 2))
        .await;
    within("flush a", a.flush()).await.unwrap();

    let sent = within("the traced message", wire_sub.next()).await.unwrap();
    let header = sent
        .headers
        .as_ref()
        .and_then(|h| h.get(wire::TRACEPARENT_HEADER))
        .map(|v| v.as_str().to_owned());
    assert_eq!(header, Some(ctx.to_string()));
    let plain = within("the plain message", wire_sub.next()).await.unwrap();
    assert!(
        plain
            .headers
            .as_ref()
            .and_then(|h| h.get(wire::TRACEPARENT_HEADER))
            .is_none(),
        "no trace, no header"
    );

    let got = within("the traced event on b", on_b.recv()).await.unwrap();
    assert_eq!(got.event_type, "Placed");
    assert_eq!(TraceContext::from_event(&got), Some(ctx));
    assert_eq!(got.trace_id(), Some(ctx.trace_id_hex().as_str()));
    let plain = within("the plain event on b", on_b.recv()).await.unwrap();
    assert_eq!(plain.event_type, "Paid");
    assert_eq!(plain.trace_id(), None);

    // Durable: stored with the header, delivered with the context.
    let durable_ctx = TraceContext::new_root();
    durable_ctx
        .scope(a.publish_durable(&namespace, Event::new(actor.clone(), "Shipped", 3)))
        .await
        .expect("durable publish");
    let got = within("the durable event on b", on_b.recv()).await.unwrap();
    assert_eq!(got.event_type, "Shipped");
    assert_eq!(TraceContext::from_event(&got), Some(durable_ctx));

    // An event that carries a context already keeps it, whatever the publisher's scope.
    let mut stamped = Event::new(actor, "Closed", 4);
    let own = TraceContext::new_root();
    own.stamp(&mut stamped);
    ctx.scope(a.publish(&namespace, stamped)).await;
    let got = within("the stamped event on b", on_b.recv()).await.unwrap();
    assert_eq!(TraceContext::from_event(&got), Some(own));
}
