//! [`BusStream`]: the JetStream stream behind durable mode, opened (or created) on first use,
//! and the consumers behind durable subscriptions.

use aether_core::{Event, Namespace, Pattern};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::{self, stream};

use super::{DurableName, DurableStart};
use crate::bus::{BusError, DurableConfig, wire};

/// The bus stream and the JetStream context to reach it.
pub(crate) struct BusStream {
    context: jetstream::Context,
    stream: stream::Stream,
    config: DurableConfig,
}

impl BusStream {
    /// Opens the bus stream, creating it with `config` if it does not exist.
    pub(crate) async fn open(
        client: async_nats::Client,
        config: DurableConfig,
    ) -> Result<Self, BusError> {
        let mut context = jetstream::new(client);
        context.set_timeout(config.request_timeout);
        let subjects = format!("{}.>", wire::SUBJECT_PREFIX);
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
            ..Default::default()
        };
        let mut stream = context.get_or_create_stream(wanted).await.map_err(|e| {
            BusError::backend(format!("cannot open bus stream {}", config.stream_name), e)
        })?;
        let info = stream.info().await.map_err(|e| {
            BusError::backend(format!("cannot read bus stream {}", config.stream_name), e)
        })?;
        if !info.config.subjects.contains(&subjects) {
            return Err(BusError::Backend {
                message: format!(
                    "stream {} exists with subjects {:?}, not {subjects:?}",
                    config.stream_name, info.config.subjects
                ),
                source: None,
            });
        }
        Ok(Self {
            context,
            stream,
            config,
        })
    }

    /// Stores `payload` (the encoded `event`) and waits for the stream's acknowledgement. The
    /// event id is the message id, so a retried publish is stored once.
    pub(crate) async fn publish(
        &self,
        origin: &str,
        namespace: &Namespace,
        event: &Event,
        payload: bytes::Bytes,
    ) -> Result<(), BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(wire::ORIGIN_HEADER, origin);
        headers.insert(NATS_MESSAGE_ID, event.id.as_str());
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Backend {
            message: format!("the bus stream did not store event {}", event.id),
            source: Some(e),
        };
        self.context
            .publish_with_headers(wire::subject(namespace), headers, payload)
            .await
            .map_err(|e| failed(Box::new(e)))?
            .await
            .map_err(|e| failed(Box::new(e)))?;
        Ok(())
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
        let filter = wire::subject_filter(pattern);
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
