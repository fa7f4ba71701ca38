//! Running the `aether` binary and reading what it printed.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// What a finished run printed, and its exit code.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aether"));
    command
        .args(args)
        .env_remove("AETHER_NATS")
        .env_remove("AETHER_NATS_USER")
        .env_remove("AETHER_NATS_PASSWORD")
        .env_remove("AETHER_NATS_TOKEN")
        .env_remove("AETHER_NATS_CREDS")
        .env_remove("AETHER_NATS_TLS_CA")
        .env_remove("AETHER_NATS_INBOX_PREFIX");
    command
}

/// Runs `aether args…` to the end, with `AETHER_NATS` and the credential variables unset.
pub(crate) fn aether(args: &[&str]) -> Output {
    finish(command(args))
}

/// Runs `aether args…` with extra environment variables.
pub(crate) fn aether_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command(args);
    command.envs(env.iter().copied());
    finish(command)
}

fn finish(mut command: Command) -> Output {
    let out = command.output().expect("the aether binary runs");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `aether` (a streaming command), read line by line.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
}

/// Starts `aether args…` in the background.
pub(crate) fn spawn(args: &[&str]) -> Running {
    spawn_with_env(args, &[])
}

/// Starts `aether args…` in the background, with extra environment variables.
pub(crate) fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the aether binary starts");
    let (lines, errors) = (pump(child.stdout.take()), pump(child.stderr.take()));
    Running {
        child,
        lines,
        errors,
    }
}

fn pump(from: Option<impl std::io::Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(from) = from {
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

impl Running {
    /// The next line on stdout, waiting at most `patience`.
    pub(crate) fn next_line(&mut self, patience: Duration) -> Option<String> {
        self.lines.recv_timeout(patience).ok()
    }

    /// The next line on stderr, waiting at most `patience`.
    pub(crate) fn next_error_line(&mut self, patience: Duration) -> Option<String> {
        self.errors.recv_timeout(patience).ok()
    }

    /// The lines on stderr so far, without waiting.
    pub(crate) fn error_lines_so_far(&mut self) -> Vec<String> {
        self.errors.try_iter().collect()
    }

    /// Waits for the process to end on its own; its exit code.
    pub(crate) fn wait(mut self) -> Option<i32> {
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Stops the process (by its own id).
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` as JSON.
pub(crate) fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
