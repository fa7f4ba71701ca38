//! `aether tail PATTERN [--type T] [--actor P]`: live events on the bus.

use aether_core::{Pattern, SubscribeOptions, SubscriptionFilter};
use aether_nats::{NatsBusConfig, NatsEventBus};
use serde::Serialize;

use crate::connect::Nats;
use crate::error::CliError;
use crate::output;

/// One line of JSON output.
#[derive(Debug, Serialize)]
struct TailLine<'a> {
    namespace: &'a str,
    event: &'a aether_core::Event,
}

/// Runs the command: prints every matching event until Ctrl-C (or `count` events).
pub(crate) async fn run(
    nats: &Nats,
    json: bool,
    pattern: &str,
    types: &[String],
    actor: Option<&str>,
    count: Option<u64>,
) -> Result<(), CliError> {
    let pattern = Pattern::new(pattern)?;
    let mut filter = SubscriptionFilter::new().event_types(types.iter().cloned());
    if let Some(actor) = actor {
        let actors = Pattern::new(actor)?;
        filter = filter.actor_pattern(actors);
    }
    let bus = NatsEventBus::with_client(nats.client.clone(), NatsBusConfig::default())?;
    let mut subscription =
        bus.subscribe_across_namespaces(&pattern, SubscribeOptions::new().filter(filter));
    bus.flush().await?;
    // On stderr: the output stays events only; scripts and tests wait for this line.
    eprintln!(
        "listening for events in namespaces matching {pattern} on {}",
        nats.url
    );
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let next = tokio::select! {
            next = subscription.recv_with_namespace() => next,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some((namespace, event)) = next else {
            break;
        };
        seen += 1;
        if json {
            output::json_line(&TailLine {
                namespace: namespace.as_str(),
                event: &event,
            })?;
        } else {
            output::line(format!(
                "{}  {}  {}  v{}  {}  {}",
                output::time(&event.timestamp),
                namespace,
                event.actor_id,
                event.version,
                event.event_type,
                output::short_json(&event.data, 80)
            ))?;
        }
    }
    Ok(())
}
