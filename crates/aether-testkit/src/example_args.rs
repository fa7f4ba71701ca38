//! The command line the examples share: `--nats <url>` picks a running NATS server, and
//! without it each example uses its own default (a nats-server it starts itself, or the
//! embedded store). Examples that keep data take [`StoreArgs`] instead: the embedded store in
//! `--data DIR` (default `./aether-data`), `--memory`, or `--nats URL`. One parser (clap) for
//! all of them, so usage, `--help` and errors agree.

use std::path::PathBuf;

use clap::Parser;

/// Arguments of an example.
///
/// # Examples
///
/// ```
/// use aether_testkit::example_args::ExampleArgs;
///
/// let args = ExampleArgs::try_parse_from(["quickstart", "--nats", "nats://127.0.0.1:4222"])?;
/// assert_eq!(args.nats.as_deref(), Some("nats://127.0.0.1:4222"));
/// assert!(ExampleArgs::try_parse_from(["quickstart", "--nast"]).is_err());
/// # Ok::<(), clap::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(about = "An Aether example")]
pub struct ExampleArgs {
    /// URL of a running nats-server (2.12 or later, with JetStream: `nats-server -js`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

impl ExampleArgs {
    /// Parses the process's arguments; prints usage and exits on `--help` or a bad argument,
    /// as every command-line program does.
    pub fn from_env() -> Self {
        Self::parse()
    }

    /// Parses `args` (the first is the program name), for tests.
    ///
    /// # Errors
    ///
    /// A [`clap::Error`] naming the bad argument, with the usage.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }
}

/// Where an example that keeps data keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// The embedded durable store in this data directory.
    Data(PathBuf),
    /// Process memory: gone when the example exits.
    Memory,
    /// NATS JetStream at this URL.
    Nats(String),
}

/// Arguments of an example that keeps data: by default in the embedded store in
/// `./aether-data`, so that a second run goes on from the first.
///
/// # Examples
///
/// ```
/// use aether_testkit::example_args::{Engine, StoreArgs};
///
/// assert_eq!(StoreArgs::try_parse_from(["ex"])?.engine(), Engine::Data("aether-data".into()));
/// assert_eq!(StoreArgs::try_parse_from(["ex", "--data", "/tmp/x"])?.engine(), Engine::Data("/tmp/x".into()));
/// assert_eq!(StoreArgs::try_parse_from(["ex", "--memory"])?.engine(), Engine::Memory);
/// assert!(StoreArgs::try_parse_from(["ex", "--memory", "--nats", "nats://h:4222"]).is_err());
/// # Ok::<(), clap::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(about = "An Aether example")]
pub struct StoreArgs {
    /// Data directory of the embedded store (created if missing) [default: ./aether-data].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["memory", "nats"])]
    pub data: Option<PathBuf>,
    /// Keep everything in memory instead (lost on exit).
    #[arg(long, conflicts_with = "nats")]
    pub memory: bool,
    /// URL of a running nats-server (2.12 or later, with JetStream: `nats-server -js`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

/// The data directory used when neither `--data`, `--memory` nor `--nats` is given.
pub const DEFAULT_DATA_DIR: &str = "aether-data";

impl StoreArgs {
    /// Parses the process's arguments; prints usage and exits on `--help` or a bad argument.
    pub fn from_env() -> Self {
        Self::parse()
    }

    /// Parses `args` (the first is the program name), for tests.
    ///
    /// # Errors
    ///
    /// A [`clap::Error`] naming the bad argument, with the usage.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }

    /// The engine chosen.
    pub fn engine(&self) -> Engine {
        match (&self.nats, self.memory, &self.data) {
            (Some(url), _, _) => Engine::Nats(url.clone()),
            (None, true, _) => Engine::Memory,
            (None, false, Some(dir)) => Engine::Data(dir.clone()),
            (None, false, None) => Engine::Data(PathBuf::from(DEFAULT_DATA_DIR)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_spellings_and_none() {
        let url = "nats://127.0.0.1:1";
        for args in [
            vec!["ex", "--nats", url],
            vec!["ex", &format!("--nats={url}")],
        ] {
            assert_eq!(
                ExampleArgs::try_parse_from(args).unwrap().nats.as_deref(),
                Some(url)
            );
        }
        assert_eq!(ExampleArgs::try_parse_from(["ex"]).unwrap().nats, None);
    }

    #[test]
    fn store_arguments_conflict_clearly() {
        for args in [
            vec!["ex", "--data", "d", "--memory"],
            vec!["ex", "--data", "d", "--nats", "nats://h:1"],
            vec!["ex", "--memory", "--nats", "nats://h:1"],
        ] {
            let error = StoreArgs::try_parse_from(args.clone()).unwrap_err();
            assert!(
                error.to_string().contains("cannot be used with"),
                "{args:?}: {error}"
            );
        }
        let missing = StoreArgs::try_parse_from(["ex", "--data"]).unwrap_err();
        assert!(missing.to_string().contains("--data"), "{missing}");
    }

    #[test]
    fn bad_arguments_are_errors_that_name_them() {
        let unknown = ExampleArgs::try_parse_from(["ex", "--nast", "x"]).unwrap_err();
        assert!(unknown.to_string().contains("--nast"), "{unknown}");
        let missing = ExampleArgs::try_parse_from(["ex", "--nats"]).unwrap_err();
        assert!(missing.to_string().contains("--nats"), "{missing}");
    }
}
