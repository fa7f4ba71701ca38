//! Credentials out of server addresses before they reach an error message, a log line or
//! `Debug` output: every backend prints the address it could not reach, never its secret.

/// `url` with the credentials of every server removed (`nats://user:secret@host:4222` becomes
/// `nats://***@host:4222`; a token in the user part goes the same way), for error messages,
/// logs and `Debug` output. Everything else is kept, so the reader still sees which server.
///
/// ```
/// use aether_core::redact_url_credentials;
///
/// assert_eq!(
///     redact_url_credentials("nats://user:secret@127.0.0.1:4222,nats://h2:4222"),
///     "nats://***@127.0.0.1:4222,nats://h2:4222"
/// );
/// ```
pub fn redact_url_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.find("://") {
                Some(at) => one.split_at(at + 3),
                None => ("", one),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_and_the_rest_kept() {
        let cases = [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://user:secret@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            ("tls://s3cr3t-token@host", "tls://***@host"),
            ("user:pa@ss@host:1", "***@host:1"),
            (
                "nats://a:x@h1:1, nats://h2:2,nats://b:y@h3:3/p?q@r",
                "nats://***@h1:1, nats://h2:2,nats://***@h3:3/p?q@r",
            ),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url_credentials(url), expected, "{url}");
        }
    }
}
