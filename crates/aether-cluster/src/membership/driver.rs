//! The I/O around [`View`]: the announcer, the probe responder, the watch of the members bucket
//! (recreated after every reconnection, so a resynchronised view always starts from a fresh
//! snapshot) and the probes.

use aether_core::BackendError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aether_core::NodeId;
use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_nats::header::NATS_MARKER_REASON;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::{self, kv};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::view::{Op, ProbeOutcome, Timings, View};
use super::{
    EVENT_CAPACITY, MemberInfo, Membership, MembershipEvent, MembershipHealth, probe_prefix,
    probe_subject,
};
use crate::kv::{ClusterStore, Expect, put_with_ttl};
use crate::{ClusterConfig, ClusterError, Revision};

/// How often the view checks its connection, re-probes and re-evaluates the freeze.
const TICK: Duration = Duration::from_millis(100);
/// Pause between probe attempts that found no responder (the member may be reconnecting).
const PROBE_RETRY: Duration = Duration::from_millis(100);
/// Added to two heartbeats: how long a watch may stay silent before it is recreated.
const STALE_MARGIN: Duration = Duration::from_millis(250);
/// Pause before recreating a watch that could not be created.
const REOPEN_DELAY: Duration = Duration::from_millis(250);

type ProbeReport = (NodeId, u64, ProbeOutcome);

pub(super) async fn start(
    store: &ClusterStore,
    config: &ClusterConfig,
    local: MemberInfo,
) -> Result<Membership, ClusterError> {
    let client = store.js.client();
    let subject = probe_subject(&config.cluster_name, &local.id);
    refuse_duplicate(&client, &subject, &local.id, config.probe_timeout).await?;
    let value = encode_info(&local)?;
    let (local_tx, local_rx) = watch::channel(local.clone());

    // Answer probes before announcing: whoever sees the key can probe us.
    let probes_in = client
        .subscribe(subject)
        .await
        .map_err(|e| unavailable("cannot subscribe to the probe subject", e))?;
    // Bounded: a connection that is down would make the flush wait for its return, and the
    // node's start hang without a word.
    match tokio::time::timeout(config.request_timeout, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unavailable("cannot subscribe to the probe subject", e)),
        Err(_elapsed) => {
            return Err(ClusterError::Unavailable {
                message: format!(
                    "subscribing to the probe subject was not confirmed within {:?}",
                    config.request_timeout
                ),
                source: None,
            });
        }
    }
    let responder = tokio::spawn(answer_probes(client.clone(), probes_in, local_rx.clone()));

    let key = local.id.to_string();
    let bucket = store.members_bucket().to_owned();
    let first_sent = Instant::now();
    let first_revision = match first_announce(store, config, &bucket, &key, &value).await {
        Ok(revision) => revision,
        Err(e) => {
            responder.abort();
            return Err(e);
        }
    };

    let (members_tx, members) = watch::channel(vec![local.clone()]);
    let (health_tx, health) = watch::channel(MembershipHealth::default());
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let reannounce = Arc::new(Notify::new());
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let timings = Timings {
        member_ttl: config.member_ttl,
        retry: config.heartbeat,
        stabilization_delay: config.stabilization_delay,
    };
    let mut watcher = Watcher {
        local: local_rx.clone(),
        client: client.clone(),
        kv: store.members.clone(),
        view: View::new(local.clone(), timings),
        members_tx,
        health_tx,
        events: events.clone(),
        reannounce: reannounce.clone(),
        probe_prefix: probe_prefix(&config.cluster_name),
        probe_timeout: config.probe_timeout,
        request_timeout: config.request_timeout,
        stale_after: config.heartbeat * 2 + STALE_MARGIN,
        probe_tx,
        probe_rx,
        probes: JoinSet::new(),
    };
    let session = match tokio::time::timeout(config.request_timeout, watcher.initial_sync()).await {
        Ok(Ok(session)) => session,
        failed => {
            responder.abort();
            // Best effort: withdraw the announcement; it expires after the TTL anyway.
            let _ = store.members.delete(&key).await;
            return Err(match failed {
                Ok(Err(e)) => e,
                _ => ClusterError::Unavailable {
                    message: format!(
                        "the member set could not be read within {:?}",
                        config.request_timeout
                    ),
                    source: None,
                },
            });
        }
    };
    let view_task = tokio::spawn(watcher.run(session));
    let (renewed_tx, renewed) = watch::channel(Some(first_sent));
    let announcer = tokio::spawn(announce(
        Announcer {
            js: store.js.clone(),
            members: store.members.clone(),
            bucket,
            key,
            local: local_tx,
            renewed: renewed_tx,
            ttl: config.member_ttl,
            heartbeat: config.heartbeat,
        },
        first_revision,
        reannounce,
    ));
    Ok(Membership {
        local: local_rx,
        renewed,
        store: store.clone(),
        members,
        health,
        events,
        announcer,
        tasks: vec![
            ("probe responder", responder),
            ("membership view", view_task),
        ],
    })
}

fn unavailable(
    message: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ClusterError {
    ClusterError::Unavailable {
        message: message.to_owned(),
        source: Some(Box::new(source)),
    }
}

fn connects(client: &Client) -> u64 {
    client.statistics().connects.load(Ordering::Relaxed)
}

fn connected(client: &Client) -> bool {
    client.connection_state() == State::Connected
}

/// Refuses to start a second live node with the same id: if anyone answers our probe subject,
/// that id is taken.
async fn refuse_duplicate(
    client: &Client,
    subject: &str,
    id: &NodeId,
    timeout: Duration,
) -> Result<(), ClusterError> {
    match tokio::time::timeout(timeout, client.request(subject.to_owned(), Bytes::new())).await {
        Ok(Ok(answer)) => {
            let incarnation = serde_json::from_slice::<MemberInfo>(&answer.payload).map_or_else(
                |_| "unknown".to_owned(),
                |info| info.incarnation.to_string(),
            );
            Err(ClusterError::InvalidConfig(format!(
                "node_id {id} is already used by a live node (incarnation {incarnation})"
            )))
        }
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) if e.kind() == RequestErrorKind::TimedOut => Ok(()),
        Ok(Err(e)) => Err(unavailable("cannot check whether the node id is free", e)),
        Err(_elapsed) => Ok(()),
    }
}

/// Answers every probe with this node's info.
async fn answer_probes(client: Client, mut probes: Subscriber, local: watch::Receiver<MemberInfo>) {
    while let Some(probe) = probes.next().await {
        let Some(reply) = probe.reply else { continue };
        // This node's current incarnation: a lapse makes a new one.
        let Ok(info) = encode_info(&local.borrow()) else {
            continue;
        };
        if let Err(error) = client.publish(reply, info).await {
            tracing::debug!(%error, "membership: cannot answer a probe");
        }
    }
}

fn encode_info(info: &MemberInfo) -> Result<Bytes, ClusterError> {
    serde_json::to_vec(info)
        .map(Bytes::from)
        .map_err(|e| ClusterError::InvalidConfig(format!("member info cannot be encoded: {e}")))
}

/// Renews this node's key every heartbeat with a fresh TTL, and at once when the view saw the
/// key vanish or the connection came back.
/// The first announcement, retried while NATS is unavailable (a bucket just created on a
/// 3-server cluster answers "no responders" on some servers until its stream has a leader they
/// know of), up to `config.ready_timeout` with pauses doubling from 50 ms to 1 s.
async fn first_announce(
    store: &ClusterStore,
    config: &ClusterConfig,
    bucket: &str,
    key: &str,
    value: &Bytes,
) -> Result<Revision, ClusterError> {
    let deadline = Instant::now() + config.ready_timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let put = put_with_ttl(
            &store.js,
            bucket,
            key,
            value.clone(),
            Expect::Anything,
            config.member_ttl,
        );
        match put.await {
            Ok(revision) => return Ok(revision),
            Err(e @ ClusterError::Unavailable { .. }) if Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "membership: first announcement not taken yet, retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the announcer renews, and where it reports.
struct Announcer {
    js: jetstream::Context,
    /// The members bucket, to read this node's key after a refused renewal.
    members: kv::Store,
    bucket: String,
    key: String,
    /// This node's info; a new incarnation after a lapse.
    local: watch::Sender<MemberInfo>,
    /// Send time of the last successful renewal.
    renewed: watch::Sender<Option<Instant>>,
    ttl: Duration,
    heartbeat: Duration,
}

async fn announce(announcer: Announcer, first_revision: Revision, now: Arc<Notify>) {
    let Announcer {
        js,
        members,
        bucket,
        key,
        local,
        renewed,
        ttl,
        heartbeat,
    } = announcer;
    let mut failing = false;
    // Each renewal expects the key's last revision to be this node's last write: if it is not,
    // the key expired (or was deleted) in between — however briefly, the others may have
    // declared this node failed and given its shards away — and this node announces itself
    // as a new incarnation, which owns nothing of what the earlier one owned (ADR 0009).
    let mut last_revision = Some(first_revision);
    loop {
        tokio::select! {
            () = tokio::time::sleep(heartbeat) => {}
            () = now.notified() => {}
        }
        let sent = Instant::now();
        let value = match encode_info(&local.borrow()) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "membership: cannot encode this node's info");
                continue;
            }
        };
        let expect = last_revision.map_or(Expect::Anything, Expect::Revision);
        match put_with_ttl(&js, &bucket, &key, value.clone(), expect, ttl).await {
            Ok(revision) => {
                if failing {
                    tracing::info!(node = %key, "membership: announcing again");
                }
                failing = false;
                last_revision = Some(revision);
                renewed.send_replace(Some(sent));
            }
            Err(ClusterError::Conflict { .. }) => {
                // A renewal whose answer was lost (a server went down after storing it) is
                // this node's own value: adopt its revision and renew again, at once.
                if let Ok(Some(entry)) = members.entry(&key).await
                    && entry.operation == kv::Operation::Put
                    && entry.value == value
                {
                    last_revision = Some(Revision::new(entry.revision));
                    now.notify_one();
                    continue;
                }
                local.send_modify(MemberInfo::renew_incarnation);
                tracing::warn!(
                    node = %key,
                    incarnation = local.borrow().incarnation,
                    "membership: the member key expired or changed since the last renewal; \
                     announcing a new incarnation"
                );
                // The next renewal (at once) writes the new incarnation whatever is there.
                last_revision = None;
                now.notify_one();
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, node = %key, "membership: cannot renew the member key");
            }
            Err(error) => tracing::debug!(%error, node = %key, "membership: renewal failed"),
        }
    }
}

/// Probes `subject` until an answer or `timeout`; a missing responder is retried (the member
/// may be reconnecting). Inconclusive if our own connection dropped meanwhile.
async fn probe(client: &Client, subject: String, timeout: Duration) -> ProbeOutcome {
    let connects_before = connects(client);
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, client.request(subject.clone(), Bytes::new())).await {
            Ok(Ok(answer)) => {
                return ProbeOutcome::Alive(serde_json::from_slice(&answer.payload).ok());
            }
            Ok(Err(_no_answer)) => {
                let pause = PROBE_RETRY.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
            Err(_elapsed) => break,
        }
    }
    if connected(client) && connects(client) == connects_before {
        ProbeOutcome::NoAnswer
    } else {
        ProbeOutcome::Inconclusive
    }
}

/// What an entry of the members bucket records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Delete,
    Purge,
}

/// KV operations are headers: `KV-Operation: DEL|PURGE` from clients, `Nats-Marker-Reason:
/// MaxAge|Purge|Remove` on the server's markers (a TTL expiry is `MaxAge`).
fn kind(message: &async_nats::Message) -> Kind {
    let Some(headers) = message.headers.as_ref() else {
        return Kind::Put;
    };
    match (
        headers.get("KV-Operation").map(|v| v.as_str()),
        headers.get(NATS_MARKER_REASON).map(|v| v.as_str()),
    ) {
        (Some("DEL"), _) | (None, Some("Remove")) => Kind::Delete,
        (Some("PURGE"), _) | (None, Some(_)) => Kind::Purge,
        _ => Kind::Put,
    }
}

/// One watch of the members bucket, valid for one connection.
struct Session {
    messages: Ordered,
    connects: u64,
    /// When the watch last delivered anything.
    last_entry: Instant,
}

/// What woke the watcher up.
enum Wake {
    Entry(Option<Result<Box<jetstream::Message>, String>>),
    Probe(ProbeReport),
    Tick,
}

struct Watcher {
    /// This node's info (a lapse makes a new incarnation).
    local: watch::Receiver<MemberInfo>,
    client: Client,
    kv: kv::Store,
    view: View,
    members_tx: watch::Sender<Vec<MemberInfo>>,
    health_tx: watch::Sender<MembershipHealth>,
    events: broadcast::Sender<MembershipEvent>,
    reannounce: Arc<Notify>,
    probe_prefix: String,
    probe_timeout: Duration,
    request_timeout: Duration,
    /// Silence after which the watch is presumed dead: two heartbeats and a bit.
    stale_after: Duration,
    probe_tx: mpsc::UnboundedSender<ProbeReport>,
    probe_rx: mpsc::UnboundedReceiver<ProbeReport>,
    probes: JoinSet<()>,
}

impl Watcher {
    /// Opens the first watch and reads the snapshot.
    async fn initial_sync(&mut self) -> Result<Session, ClusterError> {
        let mut session = self.open_session().await?;
        while !self.view.is_synced() {
            match session.messages.next().await {
                Some(Ok(message)) => self.on_message(&message),
                Some(Err(e)) => return Err(ClusterError::backend("membership watch failed", e)),
                None => {
                    return Err(ClusterError::Unavailable {
                        message: "membership watch ended".to_owned(),
                        source: None,
                    });
                }
            }
        }
        Ok(session)
    }

    /// A fresh watch: the last entry of every key, then the changes.
    async fn open_session(&mut self) -> Result<Session, ClusterError> {
        let connects = connects(&self.client);
        self.view.begin_resync();
        let create = self.kv.stream.create_consumer(OrderedConfig {
            deliver_subject: self.client.new_inbox(),
            description: Some("aether membership watch".to_owned()),
            filter_subject: format!("{}>", self.kv.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        });
        let consumer = tokio::time::timeout(self.request_timeout, create)
            .await
            .map_err(|_| ClusterError::Unavailable {
                message: "creating the membership watch timed out".to_owned(),
                source: None,
            })?
            .map_err(|e| ClusterError::backend("cannot create the membership watch", e))?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| ClusterError::backend("cannot start the membership watch", e))?;
        if pending == 0 {
            self.view.finish_resync(Instant::now());
        }
        self.publish();
        Ok(Session {
            messages,
            connects,
            last_entry: Instant::now(),
        })
    }

    fn on_message(&mut self, message: &jetstream::Message) {
        let Ok(info) = message.info() else {
            return;
        };
        let pending = info.pending;
        if let Some(key) = message.subject.as_str().strip_prefix(&self.kv.prefix) {
            self.on_entry(key, message);
        }
        if pending == 0 && !self.view.is_synced() {
            self.view.finish_resync(Instant::now());
        }
        self.publish();
    }

    fn on_entry(&mut self, key: &str, message: &async_nats::Message) {
        let Ok(id) = NodeId::new(key) else {
            tracing::warn!(key, "membership: ignoring a key that is no node id");
            return;
        };
        let op = match kind(message) {
            Kind::Delete => Op::Delete,
            Kind::Purge => Op::Purge,
            Kind::Put => match serde_json::from_slice::<MemberInfo>(&message.payload) {
                Ok(info) if info.id == id => Op::Put(info),
                Ok(info) => {
                    tracing::warn!(key, id = %info.id, "membership: ignoring a mismatched entry");
                    return;
                }
                Err(error) => {
                    tracing::warn!(key, %error, "membership: ignoring an unreadable entry");
                    return;
                }
            },
        };
        if self.local.has_changed().unwrap_or(false) {
            // A new incarnation of this node (after a lapse): its own entries are not another
            // process's.
            self.view.set_local(self.local.borrow_and_update().clone());
        }
        self.view.entry(id, op, Instant::now());
    }

    /// Hands the view's output to the world: events, probes, re-announcements, channels.
    fn publish(&mut self) {
        let (events, probes, reannounce) = self.view.take_output();
        for event in events {
            let kind = match &event {
                MembershipEvent::Joined(_) => "joined",
                MembershipEvent::Left(_) => "left",
                MembershipEvent::Suspected(_) => "suspected",
                MembershipEvent::Failed(_) => "failed",
                MembershipEvent::Recovered(_) => "recovered",
            };
            tracing::info!(?event, "membership");
            metrics::counter!("aether_cluster_membership_events_total", "event" => kind)
                .increment(1);
            let _ = self.events.send(event);
        }
        for id in probes {
            let client = self.client.clone();
            let subject = format!("{}{id}", self.probe_prefix);
            let generation = self.view.generation();
            let report = self.probe_tx.clone();
            let timeout = self.probe_timeout;
            self.probes.spawn(async move {
                let outcome = probe(&client, subject, timeout).await;
                let _ = report.send((id, generation, outcome));
            });
        }
        while self.probes.try_join_next().is_some() {}
        if reannounce {
            self.reannounce.notify_one();
        }
        let members = self.view.members();
        // Set every round, not only on a change: a view that starts as it stays (one node)
        // must show too.
        metrics::gauge!("aether_cluster_members").set(members.len() as f64);
        self.members_tx.send_if_modified(|current| {
            let changed = *current != members;
            if changed {
                *current = members;
            }
            changed
        });
        let health = self.view.health(Instant::now());
        self.health_tx.send_if_modified(|current| {
            let changed = *current != health;
            if changed {
                *current = health;
            }
            changed
        });
    }

    /// Follows the bucket for as long as the membership lives; after every disconnection it
    /// waits for the connection, then reads a fresh snapshot.
    async fn run(mut self, session: Session) {
        let mut session = Some(session);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let Some(current) = session.as_mut() else {
                while let Ok((id, generation, outcome)) = self.probe_rx.try_recv() {
                    self.view
                        .probe_result(&id, generation, outcome, Instant::now());
                }
                self.view.tick(Instant::now());
                self.publish();
                if connected(&self.client) {
                    match self.open_session().await {
                        Ok(opened) => {
                            self.reannounce.notify_one();
                            session = Some(opened);
                        }
                        Err(error) => {
                            tracing::debug!(%error, "membership: cannot watch yet");
                            tokio::time::sleep(REOPEN_DELAY).await;
                        }
                    }
                } else {
                    tick.tick().await;
                }
                continue;
            };
            let wake = tokio::select! {
                entry = current.messages.next() => {
                    Wake::Entry(entry.map(|r| r.map(Box::new).map_err(|e| e.to_string())))
                }
                Some(report) = self.probe_rx.recv() => Wake::Probe(report),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Entry(Some(Ok(message))) => {
                    current.last_entry = Instant::now();
                    self.on_message(&message);
                }
                Wake::Entry(ended) => {
                    if let Some(Err(error)) = ended {
                        tracing::warn!(%error, "membership: watch failed; resynchronising");
                    }
                    session = None;
                    self.view.begin_resync();
                    self.publish();
                }
                Wake::Probe((id, generation, outcome)) => {
                    self.view
                        .probe_result(&id, generation, outcome, Instant::now());
                    self.publish();
                }
                Wake::Tick => {
                    if !connected(&self.client) || connects(&self.client) != current.connects {
                        tracing::info!("membership: connection lost; resynchronising");
                        session = None;
                        self.view.begin_resync();
                    } else if current.last_entry.elapsed() > self.stale_after {
                        // Our own renewals alone pass through every heartbeat: silence means
                        // the watch's consumer is gone (its server died) or we cannot write.
                        tracing::info!("membership: watch silent; resynchronising");
                        session = None;
                        self.view.begin_resync();
                    }
                    self.view.tick(Instant::now());
                    self.publish();
                }
            }
        }
    }
}
