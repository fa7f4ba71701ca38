//! [`NatsEventBus`]: the event bus across nodes. The same API as the local
//! [`EventBus`](aether_core::EventBus) — the same [`Subscription`]s, filters and options — with
//! events reaching the other nodes through NATS.
//!
//! ```text
//! publish(ns, e) ─► local subscribers at once (as the local bus)
//!               └─► NATS  aether.events.<ns>  (Aether-Origin, Aether-Seq), from the caller's task
//!                   (try_publish: through the outgoing queue and its task)
//!
//! NATS aether.events.<pattern> ─► reader of <pattern> ─► subscribers of <pattern> on this node
//!      (one NATS subscription per pattern with local subscribers; own events ignored;
//!       events travel still encoded and are decoded by the first subscriber that takes them)
//! ```
//!
//! Decoding happens in `recv` (or in routing, for a subscriber with a filter), once per event
//! however many local subscribers share it: the reader stays light enough to keep up with the
//! network, and a node's subscribers decode in parallel. A node whose subscribers cannot keep
//! up with the publishers still overflows its NATS subscription buffer
//! ([`NatsBusConfig::subscription_capacity`]); that loss is counted in `lost`.
//!
//! **Live mode** ([`publish`](NatsEventBus::publish)) is at-most-once: a node that is not
//! listening misses the event. Every loss on the network path is counted in
//! [`metrics`](NatsEventBus::metrics) — a full outgoing queue, a refused send, a slow consumer,
//! a reconnect, and on the receiving side any gap in a sender's per-namespace sequence.
//!
//! **Durable mode** ([`publish_durable`](NatsEventBus::publish_durable) and
//! [`subscribe_durable`](NatsEventBus::subscribe_durable)) stores events in a JetStream bus
//! stream and delivers them at-least-once, in order, to named subscriptions that catch up on
//! what they missed; see [`DurableSubscription`]. The shared bus stream `aether-bus` serves
//! bus-level subscriptions; each namespace's stream `aether-bus-<enc(ns)>` (a filtered copy)
//! serves that namespace's tenant handles, so tenants can be isolated by NATS permissions
//! (`docs/permissions.md`). Decisions in `docs/adr/0005-nats-event-bus.md`.

mod config;
mod durable;
mod error;
mod gaps;
mod interest;
mod metrics;
mod namespaced;
mod outgoing;
mod traits;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aether_core::{
    Bus, Delivery, Event, EventBus, Namespace, Pattern, SubscribeOptions, Subscription,
    SubscriptionFilter,
};
use async_nats::{Client, ConnectOptions};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tracing::Instrument;

use interest::AbortOnDrop;
use metrics::NetworkCounters;
use outgoing::Queued;

use crate::permissions::violations::{self, Violation, Violations};

pub use config::{DurableConfig, MAX_RETENTION, NatsBusConfig};
pub use durable::{
    DurableBacklog, DurableMetrics, DurableName, DurableOptions, DurableStart, DurableSubscription,
};
pub use error::BusError;
pub use metrics::{NatsBusMetrics, describe as describe_nats_bus_metrics};
pub use namespaced::NatsNamespacedBus;

/// An event bus shared by every node connected to the same NATS. Cheap to clone; clones share
/// subscriptions, connection and metrics. Dropping the last clone stops its background tasks
/// (events already queued for NATS are still sent) and ends its subscriptions.
///
/// Moving code from one node to many is a change of constructor: `EventBus::new()` becomes
/// `NatsEventBus::connect(url).await?`, and `publish`, `try_publish`, `subscribe*`,
/// `namespace` and `metrics` keep their meaning. Both implement
/// [`Bus`](aether_core::Bus) (this one also [`DurableBus`](aether_core::DurableBus)), so code
/// written against the traits needs no change at all.
///
/// Interest is registered with NATS in the background: a subscription receives local events at
/// once, and remote ones as soon as NATS knows about it — [`flush`](Self::flush) waits for that.
///
/// # Examples
///
/// ```no_run
/// use aether_core::{ActorId, Event, Namespace};
/// use aether_nats::NatsEventBus;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let node_a = NatsEventBus::connect("nats://127.0.0.1:4222").await?;
/// let node_b = NatsEventBus::connect("nats://127.0.0.1:4222").await?;
/// let orders = Namespace::new("prod.orders")?;
///
/// let mut on_b = node_b.subscribe(&orders);
/// node_b.flush().await?; // B's interest has reached NATS
/// node_a.publish(&orders, Event::new(ActorId::new("order-1")?, "OrderPlaced", 1)).await;
/// let event = on_b.recv().await.expect("delivered across nodes");
/// assert_eq!(event.event_type, "OrderPlaced");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsEventBus {
    inner: Arc<Inner>,
}

struct Inner {
    local: EventBus,
    client: Client,
    url: String,
    origin: Arc<str>,
    sender: Arc<outgoing::Sender>,
    outgoing: mpsc::Sender<Queued>,
    interest: mpsc::UnboundedSender<interest::Command>,
    counters: Arc<NetworkCounters>,
    config: NatsBusConfig,
    bus_stream: OnceCell<durable::BusStream>,
    /// Namespace bus streams opened so far (tenant handles' durable subscriptions, and every
    /// durable publish, which makes sure its namespace's stream exists).
    namespace_streams: Mutex<HashMap<Namespace, Arc<OnceCell<Arc<durable::BusStream>>>>>,
    /// Permission violations the server reported on this bus's connection.
    violations: Violations,
    /// Holds the interest task (and through it the readers) for as long as the bus lives.
    _interest_task: AbortOnDrop,
}

impl NatsEventBus {
    /// Connects to NATS at `url` (several servers: comma-separated) with the default
    /// [`NatsBusConfig`].
    ///
    /// # Errors
    ///
    /// See [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::connect_with(url, NatsBusConfig::default()).await
    }

    /// Connects to NATS at `url` (several servers: comma-separated). The connection reconnects
    /// on its own after an outage. Must be called within a tokio runtime: the bus runs
    /// background tasks on it. Credentials may be given in the URL
    /// (`nats://user:password@host`, `nats://token@host`); they never appear in errors or
    /// `Debug` output. For NKeys, creds files or TLS, use
    /// [`connect_with_options`](Self::connect_with_options).
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for settings [`NatsBusConfig::validate`] refuses (nothing
    /// is connected); [`BusError::Unavailable`] naming the URL (without credentials) if it is
    /// malformed, the
    /// server refuses the credentials, or no server answers within `config.connect_timeout`.
    pub async fn connect_with(url: &str, config: NatsBusConfig) -> Result<Self, BusError> {
        let options = ConnectOptions::new().name("aether-event-bus");
        Self::connect_with_options(url, options, config).await
    }

    /// Connects to NATS at `url` with `options` (user and password, token, NKey, creds file,
    /// TLS, a client name, …), as [`connect_with`](Self::connect_with) does. The bus sets the
    /// options' connection timeout (from `config.connect_timeout`), subscription capacity and
    /// event callback (to count disconnects and slow-consumer events).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use aether_nats::{NatsBusConfig, NatsEventBus};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = async_nats::ConnectOptions::with_user_and_password("node".into(), "…".into());
    /// let bus = NatsEventBus::connect_with_options("nats://127.0.0.1:4222", options, NatsBusConfig::default())
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub async fn connect_with_options(
        url: &str,
        options: ConnectOptions,
        config: NatsBusConfig,
    ) -> Result<Self, BusError> {
        config.validate()?;
        let shown = aether_core::redact_url_credentials(url);
        let unavailable =
            |message: &str, source: Option<aether_core::BoxError>| BusError::Unavailable {
                url: shown.clone(),
                message: message.to_owned(),
                source,
            };
        let addrs = crate::server_addrs::parse_server_addrs(url)
            .map_err(|e| unavailable("not a valid NATS URL", Some(Box::new(e))))?;
        let counters = Arc::new(NetworkCounters::new());
        let events = counters.clone();
        let violations = Violations::default();
        let refused = violations.clone();
        let server_count = u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
        let options = crate::server_addrs::with_url_credentials(&addrs, options)
            .map_err(|e| unavailable("not a valid NATS URL", Some(Box::new(e))))?;
        let connecting = options
            .connection_timeout(config.connect_timeout / server_count)
            .subscription_capacity(config.subscription_capacity.max(1))
            .event_callback(move |event| {
                let counters = events.clone();
                let refused = refused.clone();
                async move {
                    match event {
                        async_nats::Event::SlowConsumer(_) => counters.slow_consumer.incr(),
                        async_nats::Event::Disconnected => counters.disconnects.incr(),
                        async_nats::Event::ServerError(error) => refused.record(&error),
                        _ => {}
                    }
                }
            })
            .connect(addrs);
        let client = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|e| {
                unavailable(
                    "no server answered within connect_timeout",
                    Some(Box::new(e)),
                )
            })?
            .map_err(|e| unavailable("cannot connect", Some(Box::new(e))))?;
        Ok(Self::start(client, shown, config, counters, violations))
    }

    /// A bus on an existing connection (for example one shared with a
    /// [`JetStreamEventStore`](crate::JetStreamEventStore), or made with options of your own).
    /// Must be called within a tokio runtime. The disconnect and slow-consumer counters of
    /// [`NatsBusMetrics`] stay at 0 on such a connection: they are hooked in when the bus makes
    /// the connection itself ([`connect_with_options`](Self::connect_with_options)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use aether_nats::{NatsBusConfig, NatsEventBus};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let bus = NatsEventBus::with_client(client, NatsBusConfig::default())?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidConfig`] for settings [`NatsBusConfig::validate`] refuses.
    pub fn with_client(client: Client, config: NatsBusConfig) -> Result<Self, BusError> {
        config.validate()?;
        let info = client.server_info();
        let url = format!("{}:{}", info.host, info.port);
        Ok(Self::start(
            client,
            url,
            config,
            Arc::new(NetworkCounters::new()),
            Violations::default(),
        ))
    }

    fn start(
        client: Client,
        url: String,
        config: NatsBusConfig,
        counters: Arc<NetworkCounters>,
        violations: Violations,
    ) -> Self {
        let origin: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let local = EventBus::with_interest_listener(
            config.local,
            Arc::new(interest::Relay(interest_tx.clone())),
        );
        let (outgoing_tx, outgoing_rx) = mpsc::channel(config.outgoing_queue.max(1));
        let sender = Arc::new(outgoing::Sender::new(
            client.clone(),
            async_nats::HeaderValue::from(&*origin),
            counters.clone(),
        ));
        tokio::spawn(outgoing::run(sender.clone(), outgoing_rx));
        let shared = interest::Shared {
            client: client.clone(),
            bus: local.clone(),
            origin: origin.clone(),
            counters: counters.clone(),
        };
        let interest_task = AbortOnDrop(tokio::spawn(interest::run(shared, interest_rx)));
        Self {
            inner: Arc::new(Inner {
                local,
                client,
                url,
                origin,
                sender,
                outgoing: outgoing_tx,
                interest: interest_tx,
                counters,
                config,
                bus_stream: OnceCell::new(),
                namespace_streams: Mutex::default(),
                violations,
                _interest_task: interest_task,
            }),
        }
    }

    /// Publishes `event` in `namespace`: to local subscribers as
    /// [`EventBus::publish`](aether_core::EventBus::publish) does, and to the other nodes
    /// through NATS (waiting if the client's buffer is full). Never fails: a send that NATS
    /// refuses is counted in [`NatsBusMetrics::send_failed`].
    pub async fn publish(&self, namespace: &Namespace, mut event: Event) -> Delivery {
        let trace = wire::trace(&mut event);
        if let Some(payload) = self.encode(&event) {
            self.inner
                .sender
                .send(&self.inner.outgoing, namespace, payload, trace)
                .await;
        }
        self.inner.local.publish(namespace, event).await
    }

    /// Publishes `event` in `namespace` without ever waiting: local subscribers as
    /// [`EventBus::try_publish`](aether_core::EventBus::try_publish), and other nodes directly
    /// when the NATS client has room, otherwise through the outgoing queue, unless that is full
    /// too (then counted in [`NatsBusMetrics::send_dropped`]).
    ///
    /// The client and the queue are emptied by tasks, so a loop of `try_publish` calls that
    /// never yields to the runtime can fill both: use [`publish`](Self::publish) to send as
    /// fast as the connection allows.
    pub fn try_publish(&self, namespace: &Namespace, mut event: Event) -> Delivery {
        let trace = wire::trace(&mut event);
        if let Some(payload) = self.encode(&event) {
            self.inner
                .sender
                .try_send(&self.inner.outgoing, namespace, payload, trace);
        }
        self.inner.local.try_publish(namespace, event)
    }

    fn encode(&self, event: &Event) -> Option<bytes::Bytes> {
        match wire::encode(event) {
            Ok(payload) => Some(payload),
            Err(error) => {
                self.inner.counters.send_failed.incr();
                tracing::warn!(%error, "event bus: event not sent to other nodes");
                None
            }
        }
    }

    /// Stores `event` in the bus stream (waiting for JetStream's acknowledgement), then
    /// delivers it to local subscribers. Live subscribers on other nodes receive it too; durable
    /// subscriptions receive it even if they are away now. The stream deduplicates on the
    /// namespace and the event id, so retrying after an error stores the event once (within the
    /// stream's duplicate window; counted in [`NatsBusMetrics::durable_duplicates`]), while the
    /// same event id in another namespace is another event.
    ///
    /// # Errors
    ///
    /// [`BusError::Encode`] if the event cannot be encoded, [`BusError::PermissionDenied`] if
    /// the server refuses this user the namespace's durable subject or bus stream,
    /// [`BusError::Backend`] if the bus stream cannot be opened or did not acknowledge (then no
    /// local subscriber has it; other nodes may, if only the acknowledgement was lost — retry).
    pub async fn publish_durable(
        &self,
        namespace: &Namespace,
        mut event: Event,
    ) -> Result<Delivery, BusError> {
        let trace = wire::trace(&mut event);
        let span = tracing::debug_span!(
            "aether.bus.publish_durable",
            namespace = %namespace,
            actor_id = %event.actor_id,
            event_id = %event.id,
            version = event.version,
            trace_id = event.trace_id(),
            span_id = event.span_id(),
        );
        let payload = wire::encode(&event)?;
        let subject = wire::durable_subject(namespace);
        let stored = async {
            let stream = self.namespace_stream(namespace).await?;
            self.guarded(
                |v| v.subject == subject.as_str(),
                stream.publish(&self.inner.origin, namespace, &event, payload, trace),
            )
            .await?
        }
        .instrument(span)
        .await?;
        match stored {
            durable::Stored::New => self.inner.counters.durable_published.incr(),
            durable::Stored::Duplicate => self.inner.counters.durable_duplicates.incr(),
        }
        // Local subscribers get a duplicate too: it may be the retry of a publish whose
        // acknowledgement was lost, which never reached them.
        Ok(self.inner.local.publish(namespace, event).await)
    }

    /// Subscribes to every event published in `namespace`, on any node.
    pub fn subscribe(&self, namespace: &Namespace) -> Subscription {
        self.inner.local.subscribe(namespace)
    }

    /// Subscribes to the events of `namespace` that pass `filter`, on any node.
    pub fn subscribe_with_filter(
        &self,
        namespace: &Namespace,
        filter: SubscriptionFilter,
    ) -> Subscription {
        self.inner.local.subscribe_with_filter(namespace, filter)
    }

    /// Subscribes to `namespace` with explicit options (filter, queue size, overflow policy).
    pub fn subscribe_with(&self, namespace: &Namespace, options: SubscribeOptions) -> Subscription {
        self.inner.local.subscribe_with(namespace, options)
    }

    /// Subscribes to every namespace matching `pattern`, on any node. **Crosses namespace
    /// boundaries**: for trusted components only, as
    /// [`EventBus::subscribe_across_namespaces`](aether_core::EventBus::subscribe_across_namespaces).
    pub fn subscribe_across_namespaces(
        &self,
        pattern: &Pattern,
        options: SubscribeOptions,
    ) -> Subscription {
        self.inner
            .local
            .subscribe_across_namespaces(pattern, options)
    }

    /// Opens the durable subscription `name` to `namespace`, creating it if it does not exist
    /// (starting as `options` says) and resuming where it left off if it does.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidDurableName`] for a bad name (nothing created);
    /// [`BusError::DurableNameTaken`] if `name` follows another namespace or pattern;
    /// [`BusError::PermissionDenied`] if the server refuses this user the bus stream (the
    /// shared one here: tenants use their handle's, see [`namespace`](Self::namespace));
    /// [`BusError::Backend`] if the bus stream or the consumer cannot be opened.
    pub async fn subscribe_durable(
        &self,
        name: &str,
        namespace: &Namespace,
        options: DurableOptions,
    ) -> Result<DurableSubscription, BusError> {
        self.open_durable(None, name, Pattern::exact(namespace), options)
            .await
    }

    /// Opens the durable subscription `name` to every namespace matching `pattern`. **Crosses
    /// namespace boundaries**, like
    /// [`subscribe_across_namespaces`](Self::subscribe_across_namespaces).
    ///
    /// # Errors
    ///
    /// As [`subscribe_durable`](Self::subscribe_durable).
    pub async fn subscribe_durable_across_namespaces(
        &self,
        name: &str,
        pattern: &Pattern,
        options: DurableOptions,
    ) -> Result<DurableSubscription, BusError> {
        self.open_durable(None, name, pattern.clone(), options)
            .await
    }

    pub(crate) async fn open_durable(
        &self,
        scope: Option<&Namespace>,
        name: &str,
        pattern: Pattern,
        options: DurableOptions,
    ) -> Result<DurableSubscription, BusError> {
        let name = DurableName::new(name)?;
        let consumer_name = name.consumer_name(scope);
        match scope {
            Some(namespace) => {
                let stream = self.namespace_stream(namespace).await?;
                let opening =
                    DurableSubscription::open(&stream, name, &consumer_name, pattern, options);
                self.guarded(|v| violations::names(v, stream.name()), opening)
                    .await?
            }
            None => {
                let stream = self.bus_stream().await?;
                let opening =
                    DurableSubscription::open(stream, name, &consumer_name, pattern, options);
                self.guarded(|v| violations::names(v, stream.name()), opening)
                    .await?
            }
        }
    }

    /// Deletes the durable subscription `name` (made on this bus, not on a tenant handle) and
    /// its position; `Ok(false)` if there was none.
    ///
    /// # Errors
    ///
    /// [`BusError::InvalidDurableName`] for a bad name, [`BusError::Backend`] if the server
    /// refused.
    pub async fn delete_durable(&self, name: &str) -> Result<bool, BusError> {
        self.delete_durable_in(None, name).await
    }

    pub(crate) async fn delete_durable_in(
        &self,
        scope: Option<&Namespace>,
        name: &str,
    ) -> Result<bool, BusError> {
        let name = DurableName::new(name)?;
        let consumer = name.consumer_name(scope);
        match scope {
            Some(namespace) => {
                let stream = self.namespace_stream(namespace).await?;
                self.guarded(
                    |v| violations::names(v, stream.name()),
                    stream.delete(&consumer),
                )
                .await?
            }
            None => {
                let stream = self.bus_stream().await?;
                self.guarded(
                    |v| violations::names(v, stream.name()),
                    stream.delete(&consumer),
                )
                .await?
            }
        }
    }

    /// Creates `namespace`'s bus stream if it does not exist (and the shared bus stream it
    /// sources from), so that tenants of `namespace` — who may use it but not create it, see
    /// `docs/permissions.md` — can subscribe durably. A node does this once per namespace,
    /// before its tenants connect; [`publish_durable`](Self::publish_durable) does it too.
    ///
    /// # Errors
    ///
    /// [`BusError::PermissionDenied`] if this user may not create (or read) the streams,
    /// [`BusError::Backend`] if the server refused or a stream exists with other settings.
    pub async fn provision_namespace(&self, namespace: &Namespace) -> Result<(), BusError> {
        self.namespace_stream(namespace).await.map(drop)
    }

    async fn bus_stream(&self) -> Result<&durable::BusStream, BusError> {
        let shared = &self.inner.config.durable.stream_name;
        self.inner
            .bus_stream
            .get_or_try_init(|| async {
                let opening = durable::BusStream::open(
                    self.inner.client.clone(),
                    self.inner.config.durable.clone(),
                );
                self.guarded(|v| violations::names(v, shared), opening)
                    .await?
            })
            .await
    }

    /// `namespace`'s bus stream, opened (or created) once per bus.
    async fn namespace_stream(
        &self,
        namespace: &Namespace,
    ) -> Result<Arc<durable::BusStream>, BusError> {
        let cell = self
            .inner
            .namespace_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.clone())
            .or_default()
            .clone();
        let config = &self.inner.config.durable;
        let name = crate::permissions::namespace_bus_stream(&config.stream_name, namespace);
        cell.get_or_try_init(|| async {
            let opening = durable::BusStream::open_namespace(
                self.inner.client.clone(),
                config.clone(),
                namespace,
                async { self.bus_stream().await.map(drop) },
            );
            self.guarded(|v| violations::names(v, &name), opening)
                .await?
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Runs `operation`, failing with [`BusError::PermissionDenied`] as soon as the server
    /// refuses a subject `wanted` accepts, or this connection's inbox (without which no
    /// request is answered).
    fn guarded<'a, T: 'a>(
        &'a self,
        wanted: impl Fn(&Violation) -> bool + 'a,
        operation: impl Future<Output = T> + 'a,
    ) -> impl Future<Output = Result<T, BusError>> + 'a {
        // Boxed before anything holds it: the operations are large futures, some nested (a
        // namespace stream opens the shared one), and would otherwise sit inline in every
        // caller's state, and on the stack.
        let operation = Box::pin(operation);
        async move {
            self.inner
                .violations
                .guard(|v| wanted(v) || v.subject.starts_with("_INBOX"), operation)
                .await
                .map_err(BusError::from)
        }
    }

    /// Waits until every subscription made and every event published on this bus so far is
    /// known to the NATS server: after it, events published anywhere reach this bus's
    /// subscriptions, and this bus's events have left it.
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] if the bus's background tasks have stopped;
    /// [`BusError::PermissionDenied`] if the server refused this connection's user a
    /// publish or a subscription that was not reported yet (a live publish to a
    /// namespace it may not use, a subscription to one: NATS drops them without an answer, so
    /// this is where they surface). Only on a bus that made its own connection
    /// ([`connect_with_options`](Self::connect_with_options) and the other `connect*`).
    pub async fn flush(&self) -> Result<(), BusError> {
        let stopped = || BusError::Unavailable {
            url: self.inner.url.clone(),
            message: "the bus's background tasks have stopped".to_owned(),
            source: None,
        };
        let (interest_done, interest_flushed) = oneshot::channel();
        self.inner
            .interest
            .send(interest::Command::Flush(interest_done))
            .map_err(|_| stopped())?;
        let (outgoing_done, outgoing_flushed) = oneshot::channel();
        self.inner
            .outgoing
            .send(Queued::Flush(outgoing_done))
            .await
            .map_err(|_| stopped())?;
        interest_flushed.await.map_err(|_| stopped())?;
        outgoing_flushed.await.map_err(|_| stopped())?;
        // `Client::flush` only writes the buffer to the socket. A request on the same
        // connection is answered after the server processed everything sent before it: here a
        // fresh inbox nobody listens on, answered at once with "no responders".
        let round_trip = self
            .inner
            .client
            .request(self.inner.client.new_inbox(), bytes::Bytes::new());
        match self.guarded(|_| false, round_trip).await? {
            Ok(_) => self.refused_since_last_flush(),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                self.refused_since_last_flush()
            }
            Err(e) => Err(BusError::Unavailable {
                url: self.inner.url.clone(),
                message: "the server did not confirm the flush".to_owned(),
                source: Some(Box::new(e)),
            }),
        }
    }

    /// The first permission violation reported on this connection that no operation or
    /// flush reported yet: a live publish or subscription the server refused (it drops them
    /// silently otherwise).
    fn refused_since_last_flush(&self) -> Result<(), BusError> {
        match self.inner.violations.unreported() {
            Some(violation) => Err(violation.into()),
            None => Ok(()),
        }
    }

    /// A handle confined to `namespace`: what tenant code should receive. The generic
    /// [`NamespacedBus`](aether_core::NamespacedBus), with durable mode: its durable
    /// subscriptions are consumers on the namespace's own bus stream `aether-bus-<enc(ns)>`,
    /// which holds that namespace's events only, so a NATS user limited to the namespace can
    /// use them (`docs/permissions.md`; a node creates the stream:
    /// [`provision_namespace`](Self::provision_namespace)).
    pub fn namespace(&self, namespace: Namespace) -> NatsNamespacedBus {
        Bus::namespace(self, namespace)
    }

    /// Number of live local subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.inner.local.subscriber_count()
    }

    /// The bus's totals: local deliveries and the network path, losses included.
    pub fn metrics(&self) -> NatsBusMetrics {
        self.inner
            .counters
            .read()
            .with_local(self.inner.local.metrics())
    }

    /// This bus instance's origin id (the `Aether-Origin` header on what it sends).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The NATS connection (to share it with a
    /// [`JetStreamEventStore`](crate::JetStreamEventStore), for example).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }
}

impl std::fmt::Debug for NatsEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEventBus")
            .field("url", &self.inner.url)
            .field("origin", &self.inner.origin)
            .field("subscribers", &self.subscriber_count())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
