//! Trace context across nodes (feature `cluster`, a real `nats-server`): a call made on node A
//! inside a trace yields, on node B which owns the actor, a request span whose parent is A's
//! call span, in the same trace; the command's span continues it, and the event it stores
//! carries the trace id. Fails (never skips) when `nats-server` is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "support/spans.rs"]
mod spans;

use aether_core::{EventStore, TraceContext};
use bank::Command;
use cluster::{Cluster, actor, incarnate, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_node_a_is_the_parent_of_the_handler_span_on_node_b() {
    let spans = spans::install();
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = cluster.node(&a, None).await;
    let node_b = cluster.node(&b, None).await;
    // Every shard on b: a call from a always crosses the network.
    cluster.place(&[&b, &b, &b, &b]);
    let id = actor(1);
    let caller = TraceContext::new_root();
    let outcome = caller
        .scope(node_a.ask(&id, Command::Deposit { cents: 7 }))
        .await
        .expect("ask via a");
    assert_eq!(outcome.version, 1);

    let trace = caller.trace_id_hex();
    let call = spans
        .named("aether.actor.call")
        .into_iter()
        .find(|s| s.field("trace_id") == Some(trace.as_str()))
        .unwrap_or_else(|| panic!("no call span in trace {trace}: {:#?}", spans.all()));
    assert_eq!(call.field("node"), Some("a"));
    assert_eq!(call.field("actor_id"), Some("acct-1"));
    assert_eq!(call.field("op"), Some("ask"));
    assert_eq!(
        call.field("parent_span_id"),
        Some(caller.span_id_hex().as_str()),
        "the call continues the caller's context"
    );
    let call_span = call.field("span_id").expect("span_id").to_owned();

    let request = spans
        .named("aether.actor.request")
        .into_iter()
        .find(|s| s.field("trace_id") == Some(trace.as_str()))
        .unwrap_or_else(|| panic!("no request span in trace {trace}: {:#?}", spans.all()));
    assert_eq!(request.field("node"), Some("b"), "served on b");
    assert_eq!(request.field("parent_span_id"), Some(call_span.as_str()));
    assert_eq!(request.field("actor_id"), Some("acct-1"));
    assert_eq!(request.field("op"), Some("ask"));
    let request_span = request.field("span_id").expect("span_id").to_owned();
    assert_ne!(request_span, call_span);

    let command = spans
        .named("aether.actor.command")
        .into_iter()
        .find(|s| s.field("trace_id") == Some(trace.as_str()))
        .unwrap_or_else(|| panic!("no command span in trace {trace}: {:#?}", spans.all()));
    assert_eq!(command.field("parent_span_id"), Some(request_span.as_str()));
    let command_span = command.field("span_id").expect("span_id").to_owned();

    // The stored event carries the trace, and the span of the command that stored it.
    let store = cluster.store().await;
    let stream = node_b.local().stream_id(&id).unwrap();
    let events = store.events(&stream, 0).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].trace_id(), Some(trace.as_str()));
    assert_eq!(events[0].span_id(), Some(command_span.as_str()));

    // A call without a context starts a trace of its own.
    node_a
        .ask(&actor(2), Command::Deposit { cents: 1 })
        .await
        .expect("ask via a");
    let roots: Vec<_> = spans
        .named("aether.actor.call")
        .into_iter()
        .filter(|s| s.field("actor_id") == Some("acct-2"))
        .collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].field("parent_span_id"), None);
    assert_ne!(roots[0].field("trace_id"), Some(trace.as_str()));

    node_a.shutdown().await;
    node_b.shutdown().await;
}
