//! The command line every example shares: `--nats <url>` picks a running NATS server, and
//! without it each example uses its own default (the in-memory store, or a nats-server it
//! starts itself). One parser (clap) for all of them, so usage, `--help` and errors agree.

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
    fn bad_arguments_are_errors_that_name_them() {
        let unknown = ExampleArgs::try_parse_from(["ex", "--nast", "x"]).unwrap_err();
        assert!(unknown.to_string().contains("--nast"), "{unknown}");
        let missing = ExampleArgs::try_parse_from(["ex", "--nats"]).unwrap_err();
        assert!(missing.to_string().contains("--nats"), "{missing}");
    }
}
