//! `aether-cluster-node`'s command line: bad arguments and unusable addresses give a clear
//! error and an exit code, and never print a credential from the address.

use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether-cluster-node"))
        .args(args)
        .output()
        .expect("run aether-cluster-node")
}

#[test]
fn an_invalid_address_is_refused_without_showing_its_password() {
    let output = node(&[
        "--nats",
        "nats://user:s3cret-pass@127.0.0.1:notaport",
        "--id",
        "x",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nats://***@127.0.0.1:notaport"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the password is shown: {stderr}"
    );
}

#[test]
fn bad_arguments_exit_with_code_2_and_the_usage() {
    for args in [
        &["--id", "x"][..],
        &["--nats", "nats://127.0.0.1:1", "--id", "not valid"],
        &[
            "--nats",
            "nats://127.0.0.1:1",
            "--id",
            "x",
            "--lease-ttl-ms",
            "ten",
        ],
        &[
            "--nats",
            "nats://127.0.0.1:1",
            "--id",
            "x",
            "--no-such-option",
            "1",
        ],
    ] {
        let output = node(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.is_empty(), "{args:?}: no message");
    }
}
