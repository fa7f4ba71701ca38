//! [`BusStream`]: the JetStream streams behind durable mode, opened (or created) on first use,
//! and the consumers behind durable subscriptions.
//!
//! Two kinds: the **shared** bus stream (`aether-bus`) captures every namespace's durable
//! subject `aether.durable.<ns>` and republishes each event on its live subject; it serves the
//! bus-level (trusted) durable subscriptions. A **namespace** bus stream
//! (`aether-bus-<enc(ns)>`) sources the shared stream's events of one namespace and serves that
//! namespace's tenant handles, so that a tenant can be allowed to read it without reading any
//! other tenant's events (`docs/permissions.md`).

use aether_core::BackendError;
use aether_core::{Event, Namespace, Pattern};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, stream};

use super::{DurableName, DurableStart};
use crate::bus::{BusError, DurableConfig, wire};

/// What the bus stream did with a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Stored now.
    New,
    /// Stored before (same namespace and event id, within the duplicate window): not again.
    Duplicate,
}

/// The bus stream and the JetStream context to reach it.
pub(crate) struct BusStream {
    context: jetstream::Context,
    stream: stream::Stream,
    config: DurableConfig,
    /// The server can reset a consumer to its ack floor (nats-server 2.14+).
    can_reset: bool,
}

impl BusStream {
    /// Opens the bus stream, creating it with `config` if it does not exist.
    pub(crate) async fn open(
        client: async_nats::Client,
        config: DurableConfig,
    ) -> Result<Self, BusError> {
        let can_reset = server_at_least(&client.server_info().version, (2, 14));
        let mut context = jetstream::new(client);
        context.set_timeout(config.request_timeout);
        let subjects = format!("{}.>", wire::DURABLE_SUBJECT_PREFIX);
        // Each stored event is republished on its live subject, so live subscribers see durable
        // events too — once stored, never before — while live publishes are never stored.
        let republish = stream::Republish {
            source: subjects.clone(),
            destination: format!("{}.>", wire::SUBJECT_PREFIX),
            headers_only: false,
        };
        let wanted = stream::Config {
            name: config.stream_name.clone(),
            subjects: vec![subjects.clone()],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            max_age: config.max_age,
            max_bytes: config
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            num_replicas: config.replicas,
            duplicate_window: config.duplicate_window,
            allow_direct: true,
            republish: Some(republish.clone()),
            ..Default::default()
        };
        let mut stream = context.get_or_create_stream(wanted).await.map_err(|e| {
            BusError::backend(format!("cannot open bus stream {}", config.stream_name), e)
        })?;
        let info = stream.info().await.map_err(|e| {
            BusError::backend(format!("cannot read bus stream {}", config.stream_name), e)
        })?;
        if info.config.subjects != [subjects.clone()] || info.config.republish != Some(republish) {
            return Err(BusError::Backend {
                message: format!(
                    "stream {} exists with subjects {:?} and republish {:?}; the bus needs \
                     exactly {subjects:?}, republished to the live subjects",
                    config.stream_name, info.config.subjects, info.config.republish
                ),
                source: None,
            });
        }
        Ok(Self {
            context,
            stream,
            config,
            can_reset,
        })
    }

    /// Opens `namespace`'s bus stream (see the module docs). If it does not exist,
    /// `ensure_shared` opens (or creates) the shared stream first, then the namespace's stream
    /// is created sourcing it; a user without the permission to create it gets
    /// [`BusError::PermissionDenied`] (a node creates namespaces; tenants use them).
    pub(crate) async fn open_namespace(
        client: async_nats::Client,
        config: DurableConfig,
        namespace: &Namespace,
        ensure_shared: impl Future<Output = Result<(), BusError>>,
    ) -> Result<Self, BusError> {
        let can_reset = server_at_least(&client.server_info().version, (2, 14));
        let mut context = jetstream::new(client);
        context.set_timeout(config.request_timeout);
        let name = crate::permissions::namespace_bus_stream(&config.stream_name, namespace);
        let source = stream::Source {
            name: config.stream_name.clone(),
            filter_subject: Some(wire::durable_subject(namespace).to_string()),
            ..Default::default()
        };
        let stream = match context.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref js)
                        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                ensure_shared.await?;
                let wanted = stream::Config {
                    name: name.clone(),
                    description: Some(format!("Aether bus events of namespace {namespace}")),
                    sources: Some(vec![source.clone()]),
                    retention: stream::RetentionPolicy::Limits,
                    discard: stream::DiscardPolicy::Old,
                    storage: stream::StorageType::File,
                    max_age: config.max_age,
                    max_bytes: config
                        .max_bytes
                        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                    num_replicas: config.replicas,
                    allow_direct: true,
                    ..Default::default()
                };
                context.get_or_create_stream(wanted).await.map_err(|e| {
                    BusError::backend(format!("cannot create namespace bus stream {name}"), e)
                })?
            }
            Err(e) => {
                return Err(BusError::backend(
                    format!("cannot open namespace bus stream {name}"),
                    e,
                ));
            }
        };
        let found = &stream.cached_info().config;
        let sources: Vec<(&str, Option<&str>)> = found
            .sources
            .iter()
            .flatten()
            .map(|s| (s.name.as_str(), s.filter_subject.as_deref()))
            .collect();
        if !found.subjects.is_empty()
            || sources != [(source.name.as_str(), source.filter_subject.as_deref())]
        {
            return Err(BusError::Backend {
                message: format!(
                    "stream {name} exists with subjects {:?} and sources {sources:?}; a \
                     namespace bus stream has no subjects and sources exactly {} filtered to \
                     {:?}",
                    found.subjects,
                    source.name,
                    source.filter_subject.as_deref().unwrap_or_default()
                ),
                source: None,
            });
        }
        Ok(Self {
            context,
            stream,
            config,
            can_reset,
        })
    }

    /// The stream's name.
    pub(crate) fn name(&self) -> &str {
        &self.stream.cached_info().config.name
    }

    /// Stores `payload` (the encoded `event`) and waits for the stream's acknowledgement.
    /// The message id is the namespace and the event id ([`wire::durable_message_id`]), so a
    /// retried publish is stored once, and the same event id in two namespaces twice. Returns
    /// whether the stream recognised the message as a duplicate (stored before, within its
    /// duplicate window, so not stored again).
    pub(crate) async fn publish(
        &self,
        origin: &str,
        namespace: &Namespace,
        event: &Event,
        payload: bytes::Bytes,
        trace: Option<async_nats::HeaderValue>,
    ) -> Result<Stored, BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(wire::ORIGIN_HEADER, origin);
        if let Some(trace) = trace {
            headers.insert(wire::TRACEPARENT_HEADER, trace);
        }
        headers.insert(
            NATS_MESSAGE_ID,
            wire::durable_message_id(namespace, &event.id).as_str(),
        );
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Backend {
            message: format!("the bus stream did not store event {}", event.id),
            source: Some(e),
        };
        let ack = self
            .context
            .publish_with_headers(wire::durable_subject(namespace), headers, payload)
            .await
            .map_err(|e| failed(Box::new(e)))?
            .await
            .map_err(|e| failed(Box::new(e)))?;
        Ok(if ack.duplicate {
            Stored::Duplicate
        } else {
            Stored::New
        })
    }

    /// The consumer of a durable subscription: the existing one if its filter is `pattern`'s,
    /// a new one starting at `start` if there is none.
    pub(crate) async fn consumer(
        &self,
        consumer_name: &str,
        name: &DurableName,
        pattern: &Pattern,
        start: DurableStart,
    ) -> Result<consumer::Consumer<pull::Config>, BusError> {
        let filter = wire::durable_filter(pattern);
        let wanted = pull::Config {
            durable_name: Some(consumer_name.to_owned()),
            filter_subject: filter.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: match start {
                DurableStart::NewEvents => consumer::DeliverPolicy::New,
                DurableStart::Retained => consumer::DeliverPolicy::All,
            },
            ack_wait: self.config.ack_wait,
            max_ack_pending: i64::try_from(self.config.max_ack_pending).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut consumer: consumer::Consumer<pull::Config> = self
            .stream
            .get_or_create_consumer(consumer_name, wanted)
            .await
            .map_err(|e| {
                BusError::backend(format!("cannot open durable subscription {name}"), e)
            })?;
        let info = consumer.info().await.map_err(|e| {
            BusError::backend(format!("cannot read durable subscription {name}"), e)
        })?;
        if info.config.filter_subject != filter {
            return Err(BusError::DurableNameTaken {
                name: name.to_string(),
                existing: info.config.filter_subject.clone(),
                requested: filter,
            });
        }
        Ok(consumer)
    }

    /// Called when a subscriber (re)opens `consumer`: if events are still out with a
    /// subscriber that is gone (unacknowledged, and nobody is pulling), rewinds the consumer to
    /// its ack floor so they come again now and in order, instead of after `ack_wait` and
    /// behind newer events. Returns the highest stream sequence delivered before, so that
    /// events up to it can be counted as redeliveries (a reset restarts delivery counts).
    pub(crate) async fn rewind_abandoned(
        &self,
        consumer: &mut consumer::Consumer<pull::Config>,
        name: &DurableName,
    ) -> Result<u64, BusError> {
        let info = consumer.info().await.map_err(|e| {
            BusError::backend(format!("cannot read durable subscription {name}"), e)
        })?;
        let delivered = info.delivered.stream_sequence;
        if !self.can_reset || info.num_ack_pending == 0 || info.num_waiting > 0 {
            return Ok(delivered);
        }
        consumer.reset(None).await.map_err(|e| {
            BusError::backend(format!("cannot rewind durable subscription {name}"), e)
        })?;
        Ok(delivered)
    }

    /// Deletes a durable subscription's consumer; `false` if there was none.
    pub(crate) async fn delete(&self, consumer_name: &str) -> Result<bool, BusError> {
        match self.stream.delete_consumer(consumer_name).await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    stream::ConsumerErrorKind::JetStream(ref js)
                        if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(BusError::backend(
                format!("cannot delete durable subscription {consumer_name}"),
                e,
            )),
        }
    }
}

/// True if a `major.minor.patch` server version is at least `wanted`.
fn server_at_least(version: &str, wanted: (u64, u64)) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= wanted
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(super::server_at_least("2.14.0", (2, 14)));
        assert!(super::server_at_least("2.15.1", (2, 14)));
        assert!(super::server_at_least("3.0.0-beta", (2, 14)));
        assert!(!super::server_at_least("2.12.9", (2, 14)));
        assert!(!super::server_at_least("garbage", (2, 14)));
    }
}
