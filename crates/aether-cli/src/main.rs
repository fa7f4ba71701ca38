//! `aether`: operate an Aether deployment from the command line.
//!
//! Thin by design: it parses the command line, calls the libraries (`aether-nats`,
//! `aether-sqlite`, `aether-cluster`, `aether-actor`) and prints, as tables for people or as
//! JSON (`--json`: one document, or JSON lines for the streaming commands `events --follow`,
//! `tail` and `cluster watch`). See README.md, "Operating Aether: the `aether` CLI", and
//! `docs/adr/0011-aether-cli.md`.
//!
//! Exit codes: 0 success, 1 an error (printed on stderr, naming what to do), 2 bad usage.

mod args;
mod commands;
mod connect;
mod error;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{Cli, Command};
use connect::Source;
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `aether … | head`: the reader has gone, nothing left to say.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), CliError> {
    let json = cli.json;
    match &cli.command {
        Command::Namespaces => {
            let source = connect::open(&cli.connect).await?;
            guarded(&source, commands::namespaces::run(&source, json)).await
        }
        Command::Events {
            namespace,
            actor,
            from,
            follow,
            poll_ms,
        } => {
            // Bad input is refused before anything is connected.
            commands::namespace(namespace)?;
            commands::actor_id(actor)?;
            let source = connect::open(&cli.connect).await?;
            let follow = follow.then(|| Duration::from_millis((*poll_ms).max(10)));
            let events = commands::events::run(&source, json, namespace, actor, *from, follow);
            guarded(&source, events).await
        }
        Command::Actor {
            namespace,
            actor,
            cluster,
        } => {
            commands::namespace(namespace)?;
            commands::actor_id(actor)?;
            let source = connect::open(&cli.connect).await?;
            guarded(
                &source,
                commands::actor::run(&source, json, namespace, actor, cluster),
            )
            .await
        }
        Command::Tail {
            pattern,
            types,
            actor,
            count,
        } => {
            aether_core::Pattern::new(pattern)?;
            if let Some(actor) = actor {
                aether_core::Pattern::new(actor)?;
            }
            let nats = needs_nats(cli, "tail", "live bus events travel over NATS").await?;
            let tail = commands::tail::run(&nats, json, pattern, types, actor.as_deref(), *count);
            nats.guard(READS, tail).await
        }
        Command::Cluster { cluster, command } => {
            let nats = needs_nats(cli, "cluster", "the cluster's state is kept in NATS").await?;
            nats.guard(READS, commands::cluster::run(&nats, json, cluster, command))
                .await
        }
        Command::Bench {
            count,
            concurrency,
            rounds,
            patience_ms,
            quiet,
            what,
        } => {
            let nats = needs_nats(cli, "bench", "it measures a NATS server").await?;
            let sizes = commands::bench::Sizes {
                count: *count,
                concurrency: *concurrency,
                rounds: *rounds,
                patience: Duration::from_millis(*patience_ms),
                quiet: *quiet,
            };
            // Guards its own measuring, so that what it created is deleted after a refusal.
            commands::bench::run(&nats, json, *what, sizes).await
        }
    }
}

/// Which role the read commands need, for a permission error.
const READS: &str = "the `aether` read commands need the `cli` role of docs/permissions.md \
     (or `node`), with replies to the inbox prefix it allows (--inbox-prefix, default _INBOX_cli)";

/// Runs a read command on `source`, failing at once if NATS refuses a subject it needs.
async fn guarded<T>(
    source: &Source,
    work: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    match source {
        Source::Nats(nats) => nats.guard(READS, work).await,
        Source::Data(_) => work.await,
    }
}

/// Connects to NATS for a command that has no meaning on a data directory.
async fn needs_nats(
    cli: &Cli,
    command: &'static str,
    why: &'static str,
) -> Result<connect::Nats, CliError> {
    if cli.connect.data.is_some() {
        return Err(CliError::NeedsNats { command, why });
    }
    match connect::open(&cli.connect).await? {
        Source::Nats(nats) => Ok(nats),
        Source::Data(_) => Err(CliError::NeedsNats { command, why }),
    }
}
