//! Where the data is: a NATS connection (`--nats`, with credentials and TLS options) or an
//! embedded data directory (`--data`, read-only, see `docs/adr/0011-aether-cli.md`).

use std::path::PathBuf;
use std::time::Duration;

use aether_core::redact_url_credentials;
use aether_nats::permissions::{Violation, permission_violation};
use aether_nats::server_addrs::{parse_server_addrs, with_url_credentials};
use aether_sqlite::SqliteInspector;
use async_nats::ConnectOptions;
use tokio::sync::watch;

use crate::args::ConnectArgs;
use crate::error::CliError;

/// An open connection to Aether's data.
#[derive(Debug)]
pub(crate) enum Source {
    /// A NATS deployment.
    Nats(Nats),
    /// An embedded data directory.
    Data(Data),
}

/// A NATS connection and the URL it was made to, without credentials.
#[derive(Debug, Clone)]
pub(crate) struct Nats {
    /// The connection.
    pub(crate) client: async_nats::Client,
    /// The URL as shown in messages (no credentials).
    pub(crate) url: String,
    /// How long to wait for NATS to answer a request.
    pub(crate) timeout: Duration,
    /// The first permission violation the server reported on the connection, if any.
    refused: watch::Receiver<Option<Violation>>,
}

impl Nats {
    /// Runs `work`, unless the server refuses this user a subject first: then a
    /// [`CliError::PermissionDenied`] naming it, at once — the server drops a refused request
    /// and says so only out of band, so `work` itself would wait for its timeout. `hint` says
    /// which role the command needs.
    pub(crate) async fn guard<T>(
        &self,
        hint: &'static str,
        work: impl Future<Output = Result<T, CliError>>,
    ) -> Result<T, CliError> {
        let mut refused = self.refused.clone();
        let denied = |v: Violation| CliError::PermissionDenied {
            url: self.url.clone(),
            action: v.action,
            subject: v.subject,
            hint,
        };
        tokio::select! {
            biased;
            done = work => match (done, self.refused.borrow().clone()) {
                // A refusal that came with the failure explains it better than a timeout.
                (Err(_), Some(v)) => Err(denied(v)),
                (done, _) => done,
            },
            first = refused.wait_for(Option::is_some) => {
                let first = first.ok().and_then(|v| v.clone());
                match first {
                    Some(v) => Err(denied(v)),
                    // The connection is gone: nothing more will be refused.
                    None => Err(CliError::Nats {
                        url: self.url.clone(),
                        message: "the connection closed".to_owned(),
                    }),
                }
            }
        }
    }

    /// A JetStream context with the request timeout.
    pub(crate) fn jetstream(&self) -> async_nats::jetstream::Context {
        let mut js = async_nats::jetstream::new(self.client.clone());
        js.set_timeout(self.timeout);
        js
    }

    /// An error from NATS, naming the server.
    pub(crate) fn error(&self, what: &str, error: impl std::fmt::Display) -> CliError {
        CliError::Nats {
            url: self.url.clone(),
            message: format!("{what}: {error}"),
        }
    }
}

/// An embedded data directory, opened read-only.
#[derive(Debug)]
pub(crate) struct Data {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// The reader.
    pub(crate) inspector: SqliteInspector,
}

/// Opens what `args` name: `--data` or `--nats`.
pub(crate) async fn open(args: &ConnectArgs) -> Result<Source, CliError> {
    if let Some(dir) = &args.data {
        return open_data(dir).map(Source::Data);
    }
    nats(args).await.map(Source::Nats)
}

/// Opens the data directory `dir`, read-only.
fn open_data(dir: &std::path::Path) -> Result<Data, CliError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let inspector = SqliteInspector::open(dir)?;
    Ok(Data {
        dir: dir.to_owned(),
        inspector,
    })
}

/// Connects to NATS as `args` say; for commands that only work on NATS.
pub(crate) async fn nats(args: &ConnectArgs) -> Result<Nats, CliError> {
    let from_env = std::env::var("AETHER_NATS")
        .ok()
        .filter(|url| !url.is_empty());
    let Some(url) = args.nats.as_deref().or(from_env.as_deref()) else {
        return Err(CliError::NoConnection);
    };
    let shown = redact_url_credentials(url);
    let unreachable = |reason: String| CliError::Unreachable {
        url: shown.clone(),
        reason: scrub(&reason, args, url),
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let addrs =
        parse_server_addrs(url).map_err(|e| unreachable(format!("not a valid NATS URL ({e})")))?;
    let mut options = match &args.creds {
        Some(file) => ConnectOptions::with_credentials_file(file)
            .await
            .map_err(|e| {
                CliError::Options(format!(
                    "cannot use the credentials file {}: {e}",
                    file.display()
                ))
            })?,
        None => ConnectOptions::new(),
    };
    options = with_url_credentials(&addrs, options)
        .map_err(|e| unreachable(format!("not a valid NATS URL ({e})")))?;
    match (&args.user, &args.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        (None, None) => {}
        _ => {
            return Err(CliError::Options(
                "--user and --password go together (or AETHER_NATS_USER and \
                 AETHER_NATS_PASSWORD)"
                    .to_owned(),
            ));
        }
    }
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &args.tls_ca {
        if !ca.is_file() {
            return Err(CliError::Options(format!(
                "--tls-ca {}: no such file",
                ca.display()
            )));
        }
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let (refusals, refused) = watch::channel(None);
    let refusals = std::sync::Arc::new(refusals);
    let connecting = options
        .name("aether-cli")
        .custom_inbox_prefix(args.inbox_prefix.clone())
        .event_callback(move |event| {
            let refusals = refusals.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event
                    && let Some(violation) = permission_violation(&error)
                {
                    refusals.send_if_modified(|first| {
                        first.is_none() && {
                            *first = Some(violation);
                            true
                        }
                    });
                }
            }
        })
        .connection_timeout(timeout)
        .connect(addrs);
    let client = tokio::time::timeout(timeout + Duration::from_millis(500), connecting)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(Nats {
        client,
        url: shown,
        timeout,
        refused,
    })
}

/// `message` without any secret the user gave: a library's error text should not hold one,
/// and this makes sure it never reaches the terminal.
fn scrub(message: &str, args: &ConnectArgs, url: &str) -> String {
    let mut secrets: Vec<String> = [&args.password, &args.token]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for one in url.split(',') {
        let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            secrets.push(userinfo.to_owned());
            secrets.extend(userinfo.split(':').map(str::to_owned));
        }
    }
    let mut scrubbed = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        scrubbed = scrubbed.replace(secret.as_str(), "***");
    }
    scrubbed
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let cli = crate::args::Cli::parse_from([
            "aether",
            "--token",
            "tok-secret",
            "--nats",
            "nats://alice:pw-secret@h:1",
            "namespaces",
        ]);
        let message = "failed: tok-secret alice:pw-secret pw-secret";
        let scrubbed = scrub(message, &cli.connect, cli.connect.nats.as_deref().unwrap());
        assert!(!scrubbed.contains("secret"), "{scrubbed}");
    }
}
