//! `--tls-ca`: against a nats-server that requires TLS with a certificate from a test CA, the
//! CLI connects when given the CA, and without it fails naming the server and what to try.

#[path = "support/run.rs"]
mod run;

use aether_testkit::nats_server::{NatsServer, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use run::{aether, json_of};

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// `(ca, server certificate, server key)`.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "aether CLI test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("server.pem", server.pem()),
        write("server-key.pem", server_key.serialize_pem()),
    )
}

#[test]
fn tls_ca_verifies_the_server_and_its_absence_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = NatsServer::start_with(&ServerOptions::new().extra_config(format!(
        "tls {{ cert_file: \"{cert}\", key_file: \"{key}\" }}"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();

    let out = aether(&["--nats", &url, "--tls-ca", &ca, "--json", "namespaces"]);
    assert!(out.ok(), "{out}");
    assert_eq!(json_of(&out.stdout)["namespaces"], serde_json::json!([]));

    let out = aether(&["--nats", &url, "--timeout-ms", "3000", "namespaces"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("cannot reach NATS at {url}")),
        "{out}"
    );
    assert!(out.stderr.contains("--tls-ca"), "{out}");
}
