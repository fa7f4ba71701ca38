//! The calling side of a node: routes `ask`, `tell` and `query` to the node that serves the
//! actor's shard in the newest placement this node has seen, and retries — same command id —
//! after `moved`, no responders or no owner, with a doubling pause, until the call's deadline.
//! A call to an actor served here goes to the local runtime without the network.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aether_cluster::MapVersion;
use aether_core::{ActorId, FencedEventStore, ShardId, SnapshotStore, TraceContext};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::Instrument;

use super::serve::is_fenced;
use super::{ClusterActor, InFlight, Node, Refusal};
use crate::cluster::wire::names::{CALL_CHAIN, DEADLINE, MAP_VERSION, TRACEPARENT};
use crate::cluster::wire::typed::{self, ReplyIn};
use crate::cluster::wire::{AskOk, ErrorKind, Operation};
use crate::effect::CallChain;
use crate::{Actor, ActorError, AskError, AskOptions, AskResult, CommandId, Outcome, QueryOptions};

/// One attempt's result.
enum Attempt<T, R> {
    /// Finished: the answer or a failure to return.
    Done(Result<T, AskError<R>>),
    /// Not served where it was sent: retry once the placement moved on (or after a pause).
    Retry,
}

/// What one call sends, whichever way it goes.
struct Call<'a> {
    actor_id: &'a ActorId,
    shard: ShardId,
    op: Operation,
    command_id: Option<CommandId>,
    deadline: Instant,
    budget: Duration,
    /// The asks waiting for this one (an ask made by an effect), if any.
    chain: CallChain,
    /// The caller's context, if it had one (the call's span continues it).
    parent: Option<TraceContext>,
}

impl Call<'_> {
    fn timeout(&self) -> ActorError {
        ActorError::Timeout {
            actor_id: self.actor_id.clone(),
            command_id: self.command_id.clone(),
            after: self.budget,
        }
    }
}

pub(super) async fn ask<A, S>(
    node: &Arc<Node<A, S>>,
    actor_id: &ActorId,
    command: A::Command,
    options: AskOptions,
    chain: CallChain,
) -> AskResult<A>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let command_id = options
        .command_id
        .clone()
        .unwrap_or_else(CommandId::generate);
    let mut call = call(
        node,
        actor_id,
        Operation::Ask,
        Some(command_id.clone()),
        options.timeout,
    )?;
    call.chain = chain;
    // Refused here as on one node, before anything is sent; written once for every attempt.
    let body = command_request(node, &call, &command)?;
    route(
        node,
        &call,
        body,
        |remaining| {
            let options = AskOptions {
                command_id: Some(command_id.clone()),
                timeout: remaining,
                ..options.clone()
            };
            let command = command.clone();
            let chain = call.chain.clone();
            async move {
                match node
                    .local
                    .ask_checked(actor_id, command, options, chain)
                    .await
                {
                    Err(AskError::Failed(e)) if is_fenced(&e) => {
                        node.passivate_fenced(actor_id);
                        Attempt::Retry
                    }
                    other => Attempt::Done(other),
                }
            }
        },
        |ok: AskOk<A::Reply>| Outcome {
            command_id: command_id.clone(),
            written: ok.written,
            version: ok.version,
            reply: ok.reply,
            duplicate: ok.duplicate,
        },
    )
    .await
}

pub(super) async fn tell<A, S>(
    node: &Arc<Node<A, S>>,
    actor_id: &ActorId,
    command: A::Command,
    command_id: CommandId,
) -> Result<CommandId, ActorError>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let budget = node.local.config().ask.timeout;
    let call = call(
        node,
        actor_id,
        Operation::Tell,
        Some(command_id.clone()),
        budget,
    )?;
    let body = command_request(node, &call, &command)?;
    let result: Result<CommandId, AskError<A::Rejection>> = route(
        node,
        &call,
        body,
        |_| {
            let command = command.clone();
            let command_id = command_id.clone();
            async move {
                match node.local.tell_checked(actor_id, command, command_id).await {
                    Err(e) if is_fenced(&e) => {
                        node.passivate_fenced(actor_id);
                        Attempt::Retry
                    }
                    other => Attempt::Done(other.map_err(AskError::Failed)),
                }
            }
        },
        |_: serde::de::IgnoredAny| command_id.clone(),
    )
    .await;
    result.map_err(|e| match e {
        AskError::Failed(e) => e,
        AskError::Rejected(_) => unexpected_rejection(actor_id),
    })
}

pub(super) async fn query<A, S>(
    node: &Arc<Node<A, S>>,
    actor_id: &ActorId,
    query: A::Query,
) -> Result<A::QueryReply, ActorError>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let options = QueryOptions::default();
    let call = call(node, actor_id, Operation::Query, None, options.timeout)?;
    let body = lazy_request(&call, &query);
    let result: Result<A::QueryReply, AskError<A::Rejection>> = route(
        node,
        &call,
        body,
        |remaining| {
            let options = QueryOptions {
                timeout: remaining,
                ..options
            };
            let query = query.clone();
            async move {
                match node.local.query_with(actor_id, query, options).await {
                    Err(e) if is_fenced(&e) => {
                        node.passivate_fenced(actor_id);
                        Attempt::Retry
                    }
                    other => Attempt::Done(other.map_err(AskError::Failed)),
                }
            }
        },
        |reply: A::QueryReply| reply,
    )
    .await;
    result.map_err(|e| match e {
        AskError::Failed(e) => e,
        AskError::Rejected(_) => unexpected_rejection(actor_id),
    })
}

/// Wakes `actor_id` for its reminder `name` where it is served (see the `remind` operation
/// in [`wire`]).
pub(super) async fn remind<A, S>(
    node: &Arc<Node<A, S>>,
    actor_id: &ActorId,
    name: &str,
) -> Result<(), ActorError>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let budget = node.local.config().ask.timeout;
    let call = call(node, actor_id, Operation::Remind, None, budget)?;
    let body = lazy_request(&call, &name);
    let result: Result<(), AskError<A::Rejection>> = route(
        node,
        &call,
        body,
        |_| async move {
            Attempt::Done(
                node.local
                    .remind_here(actor_id, name)
                    .await
                    .map_err(AskError::Failed),
            )
        },
        |_: serde::de::IgnoredAny| (),
    )
    .await;
    result.map_err(|e| match e {
        AskError::Failed(e) => e,
        AskError::Rejected(_) => unexpected_rejection(actor_id),
    })
}

fn call<'a, A: Actor, S>(
    node: &Node<A, S>,
    actor_id: &'a ActorId,
    op: Operation,
    command_id: Option<CommandId>,
    budget: Duration,
) -> Result<Call<'a>, ActorError> {
    Ok(Call {
        parent: TraceContext::current(),
        actor_id,
        shard: node.epochs.shard_of_actor::<A>(actor_id)?,
        op,
        command_id,
        deadline: crate::runtime::deadline_after(budget),
        budget,
        chain: CallChain::default(),
    })
}

/// The request of a command, written now — the command checked against the size limit as
/// it is written, as on one node — for every attempt (one served here reads none of it).
fn command_request<A: ClusterActor, S>(
    node: &Node<A, S>,
    call: &Call<'_>,
    command: &A::Command,
) -> Result<impl FnMut() -> Result<Bytes, ActorError> + use<A, S>, ActorError>
where
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    let bytes: Bytes =
        typed::encode_request_with(call.op, call.actor_id, call.command_id.as_ref(), |out| {
            node.local.write_command(command, Some(out))
        })?
        .into();
    Ok(move || Ok(bytes.clone()))
}

/// The request's JSON, written once, the first time it goes over the network.
fn lazy_request<'a, T: serde::Serialize>(
    call: &'a Call<'_>,
    body: &'a T,
) -> impl FnMut() -> Result<Bytes, ActorError> + 'a {
    let mut encoded: Option<Bytes> = None;
    move || {
        if let Some(bytes) = &encoded {
            return Ok(bytes.clone());
        }
        let bytes: Bytes =
            typed::encode_request(call.op, call.actor_id, call.command_id.as_ref(), body)
                .map_err(|e| ActorError::CommandEncode(e.to_string()))?
                .into();
        encoded = Some(bytes.clone());
        Ok(bytes)
    }
}

fn unexpected_rejection(actor_id: &ActorId) -> ActorError {
    ActorError::Remote {
        actor_id: actor_id.clone(),
        node: String::new(),
        kind: ErrorKind::Internal.as_str().to_owned(),
        message: "a rejection where none can be".to_owned(),
    }
}

/// Sends `call` to the owner of its shard until it is answered or its deadline passes.
/// Routes a call in its span, `aether.actor.call`, with its trace context current (so that
/// a call served here continues it, and a remote one sends it).
async fn route<A, S, T, W, F, Fut>(
    node: &Arc<Node<A, S>>,
    call: &Call<'_>,
    body: impl FnMut() -> Result<Bytes, ActorError>,
    local: F,
    convert: impl Fn(W) -> T,
) -> Result<T, AskError<A::Rejection>>
where
    A: ClusterActor,
    W: DeserializeOwned,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Attempt<T, A::Rejection>>,
{
    let span = tracing::info_span!(
        "aether.actor.call",
        namespace = %node.namespace,
        actor_type = A::ACTOR_TYPE,
        actor_id = %call.actor_id,
        op = call.op.as_str(),
        command_id = call.command_id.as_ref().map(tracing::field::display),
        shard = call.shard.get(),
        node = %node.me.node,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_span_id = call.parent.map(|p| tracing::field::display(p.span_id_hex())),
    );
    let trace = super::span_context(call.parent, &span);
    TraceContext::scope_opt(trace, route_attempts(node, call, body, local, convert))
        .instrument(span)
        .await
}

async fn route_attempts<A, S, T, W, F, Fut>(
    node: &Arc<Node<A, S>>,
    call: &Call<'_>,
    mut body: impl FnMut() -> Result<Bytes, ActorError>,
    mut local: F,
    convert: impl Fn(W) -> T,
) -> Result<T, AskError<A::Rejection>>
where
    A: ClusterActor,
    W: DeserializeOwned,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Attempt<T, A::Rejection>>,
{
    let mut pause = node.routing.retry_min;
    loop {
        let (version, owner) = {
            let placement = node.placements.borrow();
            let owner = placement.slot(call.shard).and_then(|s| s.owner.clone());
            (placement.version, owner)
        };
        let attempt = match owner {
            None => Attempt::Retry,
            Some(owner) if owner.node == node.me.node => {
                match node.admit(call.shard, version, call.deadline).await {
                    Ok(in_flight) => {
                        let remaining = call.deadline.saturating_duration_since(Instant::now());
                        let attempt = local(remaining).await;
                        drop::<InFlight<A, S>>(in_flight);
                        attempt
                    }
                    // Not current (lapsed or leaving): until the deadline, the placement may
                    // move the shard or the membership renew.
                    Err(Refusal::Moved(_) | Refusal::NotCurrent) => Attempt::Retry,
                }
            }
            Some(owner) => remote(node, call, &owner.node, version, &mut body, &convert).await,
        };
        match attempt {
            Attempt::Done(result) => return result,
            Attempt::Retry => node.route.retries.inc(),
        }
        let now = Instant::now();
        if now >= call.deadline {
            let owned = node
                .placements
                .borrow()
                .slot(call.shard)
                .is_some_and(|s| s.owner.is_some());
            let error = if owned {
                call.timeout()
            } else {
                ActorError::NoOwner {
                    actor_id: call.actor_id.clone(),
                    shard: call.shard.get(),
                    map_version: node.placements.borrow().version.get(),
                }
            };
            return Err(AskError::Failed(error));
        }
        // Wait for a newer placement, at most the pause (the owner may catch up instead).
        let mut placements = node.placements.clone();
        let wake = now
            .checked_add(pause)
            .map_or(call.deadline, |at| at.min(call.deadline));
        let newer = async {
            while placements.borrow_and_update().version <= version {
                if placements.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        if tokio::time::timeout_at(wake, newer).await.is_err() {
            pause = pause.saturating_mul(2).min(node.routing.retry_max);
        }
    }
}

/// Resolves once the placement this node follows says `owner` can no longer be serving
/// `shard`: another node owns it, and it is not moving from `owner` (which, while it is,
/// finishes what it has in flight). Never, if the placements stop.
async fn moved_away<A: Actor, S>(node: &Node<A, S>, shard: ShardId, owner: &aether_core::NodeId) {
    let mut placements = node.placements.clone();
    loop {
        let elsewhere = placements.borrow_and_update().slot(shard).is_none_or(|s| {
            s.owner.as_ref().is_none_or(|o| &o.node != owner)
                && s.moving_from.as_ref().is_none_or(|f| &f.node != owner)
        });
        if elsewhere {
            return;
        }
        if placements.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One request to `owner` over NATS.
async fn remote<A, S, T, W>(
    node: &Node<A, S>,
    call: &Call<'_>,
    owner: &aether_core::NodeId,
    version: MapVersion,
    body: &mut impl FnMut() -> Result<Bytes, ActorError>,
    convert: &impl Fn(W) -> T,
) -> Attempt<T, A::Rejection>
where
    A: ClusterActor,
    W: DeserializeOwned,
{
    let body = match body() {
        Ok(body) => body,
        Err(e) => return Attempt::Done(Err(AskError::Failed(e))),
    };
    let remaining = call
        .deadline
        .saturating_duration_since(Instant::now())
        .min(node.routing.attempt_timeout);
    let deadline_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    // The call's context (current in its span), if it has one: see `span_context`.
    let trace = TraceContext::current();
    let headers = if trace.is_none() && call.chain.is_empty() {
        node.headers.get(version, deadline_ms)
    } else {
        let mut headers = HeaderCache::build(version, deadline_ms);
        if let Some(trace) = trace {
            headers.insert(TRACEPARENT, trace.to_string());
        }
        if !call.chain.is_empty() {
            // A list of strings always serializes.
            let chain = serde_json::to_string(&call.chain.to_strings()).unwrap_or_default();
            headers.insert(CALL_CHAIN, chain);
        }
        headers
    };
    let subject = node.request_subject(owner);
    let sent = node.client.send_request(
        subject,
        async_nats::Request::new()
            .payload(body)
            .headers(headers)
            .timeout(Some(remaining.max(Duration::from_millis(1)))),
    );
    // An owner that crashed or paused after the request reached it never answers; once a
    // newer placement gives the shard to another node, send it there at once.
    node.route.remote.inc();
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        sent = sent => Some(sent),
        () = moved_away(node, call.shard, owner) => None,
    };
    node.route
        .remote_seconds
        .record(started.elapsed().as_secs_f64());
    let message = match outcome {
        None => return Attempt::Retry,
        Some(Ok(message)) => message,
        Some(Err(e)) => {
            // No responders (the owner is down or not subscribed yet), a timeout, a lost
            // connection: the outcome of a command sent may be unknown; the retry carries the
            // same command id, so it is applied at most once.
            tracing::debug!(error = %e, %owner, "actor request failed; retrying");
            return Attempt::Retry;
        }
    };
    let remote_error = |kind: &str, message: String| ActorError::Remote {
        actor_id: call.actor_id.clone(),
        node: owner.to_string(),
        kind: kind.to_owned(),
        message,
    };
    match ReplyIn::<W, A::Rejection>::decode(&message.payload) {
        Ok(ReplyIn::Ok(value)) => Attempt::Done(Ok(convert(value))),
        Ok(ReplyIn::Rejected(rejection)) => Attempt::Done(Err(AskError::Rejected(rejection))),
        Ok(ReplyIn::Moved { map_version }) => {
            tracing::debug!(%owner, %map_version, "actor request answered moved; retrying");
            Attempt::Retry
        }
        // The owner is not a current member (lapsed, leaving, shutting down): the placement
        // moves on, or the owner renews; the retry keeps the command id.
        Ok(ReplyIn::Error {
            kind: ErrorKind::Unavailable,
            ..
        }) => Attempt::Retry,
        // The owner ran out of this attempt's time: again, within the call's deadline.
        Ok(ReplyIn::Error {
            kind: ErrorKind::Timeout,
            ..
        }) => Attempt::Retry,
        Ok(ReplyIn::Error {
            kind: ErrorKind::Reentrant,
            ..
        }) => Attempt::Done(Err(AskError::Failed(ActorError::Reentrant {
            actor_id: call.actor_id.clone(),
            chain: call.chain.to_strings(),
        }))),
        Ok(ReplyIn::Error { kind, message }) => {
            Attempt::Done(Err(AskError::Failed(remote_error(kind.as_str(), message))))
        }
        Err(e) => Attempt::Done(Err(AskError::Failed(remote_error(
            ErrorKind::Internal.as_str(),
            format!("the reply does not decode: {e}"),
        )))),
    }
}

/// The headers of the last request sent with only a placement version and a deadline, to be
/// cloned for the next: async-nats builds each header at about 1 200 instructions (an entry
/// of a SipHash map, a `Vec` and a `String`), a clone of the map costs a fraction of that, and
/// a node's calls mostly carry the same placement version and the same budget in whole
/// milliseconds.
#[derive(Default)]
pub(super) struct HeaderCache(std::sync::Mutex<Option<(MapVersion, u64, async_nats::HeaderMap)>>);

impl HeaderCache {
    /// `Aether-Map-Version: version` and `Aether-Deadline-Ms: deadline_ms`.
    fn get(&self, version: MapVersion, deadline_ms: u64) -> async_nats::HeaderMap {
        let mut cached = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cached {
            Some((v, d, headers)) if *v == version && *d == deadline_ms => headers.clone(),
            _ => {
                let headers = Self::build(version, deadline_ms);
                *cached = Some((version, deadline_ms, headers.clone()));
                headers
            }
        }
    }

    fn build(version: MapVersion, deadline_ms: u64) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MAP_VERSION, async_nats::HeaderValue::from(version.get()));
        headers.insert(DEADLINE, async_nats::HeaderValue::from(deadline_ms));
        headers
    }
}

/// What the node's runtime uses for its actors' effects to peers and its due reminders: the
/// same routes as the node's own calls.
pub(super) struct NodeRouter<A: Actor, S> {
    pub(super) node: std::sync::Weak<Node<A, S>>,
}

impl<A, S> NodeRouter<A, S>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    fn node(&self) -> Result<Arc<Node<A, S>>, ActorError> {
        self.node.upgrade().ok_or(ActorError::ShuttingDown)
    }
}

impl<A, S> crate::runtime::router::Router<A> for NodeRouter<A, S>
where
    A: ClusterActor,
    S: FencedEventStore + SnapshotStore + Clone + 'static,
{
    fn ask(
        &self,
        actor_id: ActorId,
        command: A::Command,
        command_id: CommandId,
        chain: CallChain,
    ) -> futures::future::BoxFuture<'static, AskResult<A>> {
        let node = self.node();
        Box::pin(async move {
            let node = node?;
            let options = node.local.config().ask.clone().command_id(command_id);
            ask(&node, &actor_id, command, options, chain).await
        })
    }

    fn tell(
        &self,
        actor_id: ActorId,
        command: A::Command,
        command_id: CommandId,
    ) -> futures::future::BoxFuture<'static, Result<(), ActorError>> {
        let node = self.node();
        Box::pin(async move {
            tell(&node?, &actor_id, command, command_id)
                .await
                .map(|_| ())
        })
    }

    fn remind(
        &self,
        actor_id: ActorId,
        name: String,
    ) -> futures::future::BoxFuture<'static, Result<(), ActorError>> {
        let node = self.node();
        Box::pin(async move { remind(&node?, &actor_id, &name).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_headers_follow_the_version_and_the_deadline() {
        let cache = HeaderCache::default();
        let read = |headers: &async_nats::HeaderMap| {
            let found = crate::cluster::wire::RequestHeaders::read(Some(headers));
            (
                found.map_version.map(str::to_owned),
                found.deadline.map(str::to_owned),
                headers.iter().count(),
            )
        };
        let some = |s: &str| Some(s.to_owned());
        for (version, deadline, expected) in [
            (7, 4_999, (some("7"), some("4999"), 2)),
            (7, 4_999, (some("7"), some("4999"), 2)),
            (8, 4_999, (some("8"), some("4999"), 2)),
            (8, 250, (some("8"), some("250"), 2)),
            (7, 250, (some("7"), some("250"), 2)),
        ] {
            let headers = cache.get(MapVersion::new(version), deadline);
            assert_eq!(read(&headers), expected);
        }
    }
}
