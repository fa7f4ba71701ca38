//! The serving side of a node: answers the requests on its subject ([`wire`]) from the local
//! runtime, for the shards it serves, and `moved` for the others.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use aether_core::{ActorId, FencedEventStore, SnapshotStore, StoreError, TraceContext};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::{ClusterActor, Node, Refusal};
use crate::cluster::wire::typed::{self, ReplyOut};
use crate::cluster::wire::{self, AskOk, ErrorKind, Operation, Reply};
use crate::effect::CallChain;
use crate::error::ActivationFailure;
use crate::{ActorError, AskError, AskOptions, QueryOptions};

/// Answers every request on `subscription` while the node lives, many at once: each is a
/// future polled by this task (not a task of its own), so that a request costs no spawn and
/// no wake-up of a task of its own; the actors' work runs in their own tasks. Once `stop` is
/// cancelled (a graceful shutdown), it unsubscribes and answers the requests it took.
pub(super) async fn answer_requests<A, S>(
    node: Weak<Node<A, S>>,
    mut subscription: async_nats::Subscriber,
    stop: tokio_util::sync::CancellationToken,
) where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let mut answering = futures::stream::FuturesUnordered::new();
    // Made once: a new one each turn would register with the token for every request.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            Some(()) = answering.next(), if !answering.is_empty() => {}
            () = &mut stopped => break,
            message = subscription.next() => {
                let Some(message) = message else { break };
                let Some(node) = node.upgrade() else { return };
                // Polled once here first: most answers are ready at once (a query of an
                // idle actor, a refusal), and then take no slot in `answering` (whose
                // bookkeeping cost more per request than the box).
                let mut answer = Box::pin(answer_one(node, message));
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(answer.as_mut().poll(cx))
                })
                .await;
                if first.is_pending() {
                    answering.push(answer);
                }
            }
        }
    }
    // Stopped, or the subscription ended: take no more (unsubscribed, later requests find no
    // responder here), and answer those already taken.
    drop(subscription);
    while answering.next().await.is_some() {}
}

/// Answers one request on its reply subject.
async fn answer_one<A, S>(node: Arc<Node<A, S>>, message: async_nats::Message)
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let Some(reply_to) = message.reply.clone() else {
        // Nobody to answer: a request must be a NATS request (with a reply subject).
        tracing::debug!(subject = %message.subject, "actor request without a reply subject ignored");
        return;
    };
    let reply = answer_traced(&node, &message).await;
    node.route.served.inc();
    if let Err(e) = node.client.publish(reply_to, reply.into()).await {
        tracing::debug!(error = %e, "could not send an actor reply");
    }
}

/// [`answer`] in the request's span, `aether.actor.request`, whose trace context continues
/// the caller's `traceparent` (or starts a trace, when the span is recorded) and is current
/// while the request is served.
async fn answer_traced<A, S>(node: &Arc<Node<A, S>>, message: &async_nats::Message) -> Vec<u8>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let headers = wire::RequestHeaders::read(message.headers.as_ref());
    let parent = headers
        .traceparent
        .and_then(|v| v.parse::<TraceContext>().ok());
    let span = tracing::info_span!(
        "aether.actor.request",
        namespace = %node.namespace,
        actor_type = A::ACTOR_TYPE,
        actor_id = tracing::field::Empty,
        op = tracing::field::Empty,
        command_id = tracing::field::Empty,
        shard = tracing::field::Empty,
        node = %node.me.node,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_span_id = parent.map(|p| tracing::field::display(p.span_id_hex())),
    );
    let trace = super::span_context(parent, &span);
    TraceContext::scope_opt(trace, answer(node, message, headers))
        .instrument(span)
        .await
}

/// The answer to one request, encoded.
async fn answer<A, S>(
    node: &Arc<Node<A, S>>,
    message: &async_nats::Message,
    headers: wire::RequestHeaders<'_>,
) -> Vec<u8>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let invalid = |message: String| {
        Reply::Error {
            kind: ErrorKind::Invalid,
            message,
        }
        .encode()
    };
    let request = match typed::read_request(&message.payload) {
        Ok(request) => request,
        Err(e) => return invalid(e.to_string()),
    };
    // `read_request` leaves the body unchecked: one that does not read may not be JSON at
    // all, and then the request itself is invalid, as the full decoder says.
    let unreadable =
        |what: &str, e: serde_json::Error| match typed::decode_request(&message.payload) {
            Err(bad_request) => invalid(bad_request.to_string()),
            Ok(_) => invalid(format!("body is not {what}: {e}")),
        };
    let sender_version = match wire::parse_map_version(headers.map_version) {
        Ok(version) => version,
        Err(e) => return invalid(e.to_string()),
    };
    let chain = match wire::parse_call_chain(headers.call_chain) {
        Ok(chain) => CallChain::from_keys(chain),
        Err(e) => return invalid(e.to_string()),
    };
    let timeout = match deadline(headers.deadline, node) {
        Ok(timeout) => timeout,
        Err(e) => return invalid(e),
    };
    let deadline = crate::runtime::deadline_after(timeout);
    let shard = match node.epochs.shard_of_actor::<A>(&request.actor_id) {
        Ok(shard) => shard,
        Err(e) => return invalid(e.to_string()),
    };
    let span = tracing::Span::current();
    // Nothing to do for a span no subscriber wants (the usual case, and each call costs).
    if !span.is_disabled() {
        span.record("actor_id", tracing::field::display(&request.actor_id));
        span.record("op", request.op.as_str());
        if let Some(id) = &request.command_id {
            span.record("command_id", tracing::field::display(id));
        }
        span.record("shard", shard.get());
    }
    let _in_flight = match node.admit(shard, sender_version, deadline).await {
        Ok(in_flight) => in_flight,
        Err(refusal) => return refused(node, refusal).encode(),
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let actor_id = &request.actor_id;
    match request.op {
        Operation::Ask => {
            let command = match serde_json::from_str::<A::Command>(request.body) {
                Ok(command) => command,
                Err(e) => return unreadable("a command of this actor", e),
            };
            // Checked on the JSON received, not written again to be measured.
            if let Err(e) = node.local.check_command_json(request.body) {
                return failed(node, actor_id, &e).encode();
            }
            let options = AskOptions {
                command_id: request.command_id,
                timeout: remaining,
                ..node.local.config().ask.clone()
            };
            // Boxed, like the tell and the reminder: their futures are large, and a request's
            // future (held for each request in flight) is sized by its largest arm.
            match Box::pin(node.local.ask_checked(actor_id, command, options, chain)).await {
                Ok(outcome) => ok(&AskOk::from(outcome)),
                Err(AskError::Rejected(rejection)) => ReplyOut::<(), _>::Rejected(&rejection)
                    .encode()
                    .unwrap_or_else(|e| {
                        internal(format!("the rejection does not serialize: {e}")).encode()
                    }),
                Err(AskError::Failed(e)) => failed(node, actor_id, &e).encode(),
            }
        }
        Operation::Tell => {
            let command = match serde_json::from_str::<A::Command>(request.body) {
                Ok(command) => command,
                Err(e) => return unreadable("a command of this actor", e),
            };
            // Checked on the JSON received, not written again to be measured.
            if let Err(e) = node.local.check_command_json(request.body) {
                return failed(node, actor_id, &e).encode();
            }
            let Some(command_id) = request.command_id else {
                return invalid("a tell needs a command id".to_owned());
            };
            match Box::pin(node.local.tell_checked(actor_id, command, command_id)).await {
                Ok(id) => ok(&id.as_str()),
                Err(e) => failed(node, actor_id, &e).encode(),
            }
        }
        Operation::Query => {
            let query = match serde_json::from_str::<A::Query>(request.body) {
                Ok(query) => query,
                Err(e) => return unreadable("a query of this actor", e),
            };
            let options = QueryOptions {
                timeout: remaining,
                ..QueryOptions::default()
            };
            match node.local.query_with(actor_id, query, options).await {
                Ok(reply) => ok(&reply),
                Err(e) => failed(node, actor_id, &e).encode(),
            }
        }
        Operation::Remind => {
            let name = match serde_json::from_str::<String>(request.body) {
                Ok(name) => name,
                Err(e) => return unreadable("a reminder's name", e),
            };
            if let Err(reason) = crate::effect::check_name(&name) {
                return invalid(reason);
            }
            match Box::pin(node.local.remind_here(actor_id, &name)).await {
                Ok(()) => ok(&()),
                Err(e) => failed(node, actor_id, &e).encode(),
            }
        }
    }
}

/// The request's time budget: its `Aether-Deadline-Ms`, at most
/// [`RoutingConfig::max_deadline`](super::RoutingConfig::max_deadline); without one, the
/// runtime's default ask timeout.
fn deadline<A: ClusterActor, S: FencedEventStore + SnapshotStore + Clone + 'static>(
    value: Option<&str>,
    node: &Node<A, S>,
) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(node
            .local
            .config()
            .ask
            .timeout
            .min(node.routing.max_deadline));
    };
    let millis: u64 = value
        .parse()
        .map_err(|_| format!("header {}: not a decimal number", wire::DEADLINE_HEADER))?;
    Ok(Duration::from_millis(millis).min(node.routing.max_deadline))
}

fn ok<T: serde::Serialize>(value: &T) -> Vec<u8> {
    ReplyOut::<_, ()>::Ok(value)
        .encode()
        .unwrap_or_else(|e| internal(format!("the reply does not serialize: {e}")).encode())
}

fn internal(message: String) -> Reply {
    Reply::Error {
        kind: ErrorKind::Internal,
        message,
    }
}

fn refused<A: ClusterActor, S>(node: &Node<A, S>, refusal: Refusal) -> Reply {
    match refusal {
        Refusal::Moved(map_version) => {
            node.route.moved.inc();
            Reply::Moved { map_version }
        }
        Refusal::NotCurrent => Reply::Error {
            kind: ErrorKind::Unavailable,
            message: format!(
                "node {} is not a current member of the cluster: it answers nothing until it has renewed",
                node.me.node
            ),
        },
    }
}

/// Whether `error` says a newer owner fenced the actor (or its shard is no longer served).
pub(crate) fn is_fenced(error: &ActorError) -> bool {
    match error {
        ActorError::Store { source, .. } => source.is_fenced(),
        ActorError::Activation(e) => {
            matches!(&e.reason, ActivationFailure::Store(s) if StoreError::is_fenced(s))
        }
        _ => false,
    }
}

/// Whether `error` is the store's infrastructure failing (not a refusal of the input).
fn infrastructure(error: &ActorError) -> bool {
    let store = match error {
        ActorError::Store { source, .. } => source.as_ref(),
        ActorError::Activation(e) => match &e.reason {
            ActivationFailure::Store(source) => source.as_ref(),
            _ => return false,
        },
        _ => return false,
    };
    store.kind() == aether_core::ErrorKind::Infrastructure
        && !matches!(store, StoreError::UndecodableRecord { .. })
}

/// The reply for a runtime failure.
fn failed<A, S>(node: &Arc<Node<A, S>>, actor_id: &ActorId, error: &ActorError) -> Reply
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    if is_fenced(error) {
        node.passivate_fenced(actor_id);
        // Nothing was written: the sender retries (same command id) at the new owner.
        node.route.moved.inc();
        return Reply::Moved {
            map_version: node.version(),
        };
    }
    let kind = match error {
        ActorError::InvalidActorId { .. }
        | ActorError::CommandTooLarge { .. }
        | ActorError::CommandEncode(_)
        | ActorError::InvalidEvents { .. }
        | ActorError::EventEncode { .. }
        | ActorError::InvalidEffect { .. } => ErrorKind::Invalid,
        ActorError::Reentrant { .. } => ErrorKind::Reentrant,
        ActorError::Overloaded { .. } => ErrorKind::Overloaded,
        ActorError::Timeout { .. } => ErrorKind::Timeout,
        ActorError::Conflict { .. } => ErrorKind::Conflict,
        ActorError::ShuttingDown | ActorError::Stopped { .. } => ErrorKind::Unavailable,
        // The store could not be reached or failed (a NATS restart): the outcome is unknown;
        // the sender retries with the same command id within its deadline.
        e if infrastructure(e) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Reply::Error {
        kind,
        message: error.to_string(),
    }
}
