//! The history checker of the chaos test: reads every record of every actor straight from the
//! JetStream stream (events and fence records, with their `Aether-Owner-Epoch` headers), and
//! checks them against what the clients saw.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aether_actor::cluster::WRITER_KEY;
use aether_core::{Event, Namespace};
use aether_nats::naming::{actor_of_subject, stream_name, stream_subjects};
use aether_nats::{FENCE_HEADER, OWNER_EPOCH_HEADER};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

use super::load::{CommandOutcome, History};

/// One record of an actor's subject, in stream order.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Event {
        version: u64,
        command_id: Option<String>,
        writer: Option<String>,
        epoch: u64,
    },
    Fence {
        epoch: u64,
    },
}

/// Every actor's records (by stream id, e.g. `account.acct-7`), in stream order.
pub(crate) async fn read_all(
    client: &async_nats::Client,
    namespace: &Namespace,
) -> BTreeMap<String, Vec<Record>> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(stream_name(namespace))
        .await
        .expect("the namespace's stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: stream_subjects(namespace),
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let total = stream.get_info().await.expect("stream info").state.messages;
    let mut messages = consumer.messages().await.expect("messages");
    let mut records: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut read = 0u64;
    while read < total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream is read to its end")
            .expect("a message")
            .expect("a readable message");
        read += 1;
        let actor = actor_of_subject(namespace, &message.subject)
            .expect("every subject of the stream names an actor")
            .to_string();
        let header = |name: &str| -> Option<u64> {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .and_then(|v| v.as_str().parse().ok())
        };
        let record = match header(FENCE_HEADER) {
            Some(epoch) => Record::Fence { epoch },
            None => {
                let event = Event::from_json(&message.payload).expect("an event");
                Record::Event {
                    version: event.version,
                    command_id: event.command_id.clone(),
                    writer: event.metadata.get(WRITER_KEY).cloned(),
                    epoch: header(OWNER_EPOCH_HEADER).unwrap_or(0),
                }
            }
        };
        records.entry(actor).or_default().push(record);
    }
    records
}

/// What the checker counted, and the violations it found.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) commands: usize,
    pub(crate) acked: usize,
    pub(crate) unknown: usize,
    pub(crate) retried_commands: usize,
    pub(crate) queries: usize,
    pub(crate) events: usize,
    pub(crate) fences: usize,
    pub(crate) longest_stall: Duration,
    /// The longest stalls: when the command was sent, how long until its acknowledgement.
    pub(crate) stalls: Vec<(tokio::time::Instant, Duration)>,
    pub(crate) violations: Vec<String>,
}

/// Checks `records` against the clients' `histories`; `stream_of(actor)` names an actor's
/// stream id.
pub(crate) fn check(
    records: &BTreeMap<String, Vec<Record>>,
    histories: &[History],
    stream_of: impl Fn(usize) -> String,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut violations = Vec::new();
    // Per actor: the stored command ids with their versions, and one writer per epoch.
    let mut stored: HashMap<String, HashMap<String, Vec<u64>>> = HashMap::new();
    for (actor, list) in records {
        let mut expected = 1u64;
        let mut epoch_seen = 0u64;
        let mut writers: HashMap<u64, String> = HashMap::new();
        let ids = stored.entry(actor.clone()).or_default();
        for record in list {
            match record {
                Record::Fence { epoch } => {
                    verdict.fences += 1;
                    if *epoch < epoch_seen {
                        violations.push(format!(
                            "{actor}: a fence of epoch {epoch} after a record of epoch {epoch_seen}"
                        ));
                    }
                    epoch_seen = epoch_seen.max(*epoch);
                }
                Record::Event {
                    version,
                    command_id,
                    writer,
                    epoch,
                } => {
                    verdict.events += 1;
                    if *version != expected {
                        violations.push(format!(
                            "{actor}: version {version} where {expected} was next (not contiguous)"
                        ));
                    }
                    expected = version + 1;
                    if *epoch < epoch_seen {
                        violations.push(format!(
                            "{actor}: version {version} written under epoch {epoch} after epoch \
                             {epoch_seen} (a write past a newer owner's fence)"
                        ));
                    }
                    epoch_seen = epoch_seen.max(*epoch);
                    if *epoch == 0 {
                        violations.push(format!("{actor}: version {version} carries no epoch"));
                    }
                    match writer {
                        Some(writer) => {
                            let first = writers.entry(*epoch).or_insert_with(|| writer.clone());
                            if first != writer {
                                violations.push(format!(
                                    "{actor}: epoch {epoch} written by {first} and by {writer}"
                                ));
                            }
                        }
                        None => {
                            violations.push(format!("{actor}: version {version} names no writer"))
                        }
                    }
                    match command_id {
                        Some(id) => ids.entry(id.clone()).or_default().push(*version),
                        None => {
                            violations.push(format!("{actor}: version {version} has no command id"))
                        }
                    }
                }
            }
        }
        for (id, versions) in ids.iter() {
            if versions.len() > 1 {
                violations.push(format!(
                    "{actor}: command {id} stored {} times at {versions:?}",
                    versions.len()
                ));
            }
        }
    }
    // Per actor: acknowledgements, in time order, for the query check.
    let mut acks: HashMap<usize, Vec<(tokio::time::Instant, u64)>> = HashMap::new();
    for history in histories {
        for command in &history.commands {
            verdict.commands += 1;
            if command.retried > 0 {
                verdict.retried_commands += 1;
            }
            let stream = stream_of(command.actor);
            let versions = stored
                .get(&stream)
                .and_then(|ids| ids.get(&command.command_id));
            match &command.outcome {
                CommandOutcome::Acked { version, at } => {
                    verdict.acked += 1;
                    verdict.longest_stall = verdict.longest_stall.max(*at - command.sent);
                    verdict.stalls.push((command.sent, *at - command.sent));
                    acks.entry(command.actor).or_default().push((*at, *version));
                    match versions.map(Vec::as_slice) {
                        Some([stored]) if stored == version => {}
                        other => violations.push(format!(
                            "{stream}: command {} acknowledged at version {version}, stored at {other:?}",
                            command.command_id
                        )),
                    }
                }
                CommandOutcome::Unknown { .. } => verdict.unknown += 1,
            }
        }
    }
    for list in acks.values_mut() {
        list.sort();
    }
    for history in histories {
        for query in &history.queries {
            verdict.queries += 1;
            let required = acks
                .get(&query.actor)
                .map(|list| {
                    list.iter()
                        .take_while(|(at, _)| *at < query.sent)
                        .map(|(_, v)| *v)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            if query.version < required {
                violations.push(format!(
                    "{}: a query sent after version {required} was acknowledged answered version {}",
                    stream_of(query.actor),
                    query.version
                ));
            }
        }
    }
    verdict.stalls.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    verdict.stalls.truncate(5);
    verdict.violations = violations;
    verdict
}
