//! Parsing the server list a user gives (`nats://a:4222,nats://b:4222`), shared by the store,
//! the bus and tools (the `aether` CLI) so all accept and refuse exactly the same URLs.

use async_nats::{ConnectOptions, ServerAddr};

/// The servers of a comma-separated URL list.
///
/// # Errors
///
/// The first entry that is empty or not a valid NATS URL.
pub fn parse_server_addrs(url: &str) -> Result<Vec<ServerAddr>, std::io::Error> {
    url.split(',')
        .map(|one| match one.trim() {
            "" => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty server address",
            )),
            one => one.parse::<ServerAddr>(),
        })
        .collect()
}

/// `options` with the credentials written in the URL list (`nats://user:password@host` or
/// `nats://token@host`), which async-nats itself ignores. Every server that names credentials
/// must name the same ones (one connection authenticates the same way to each server).
///
/// # Errors
///
/// Two servers of the list with different credentials (the message does not show them).
pub fn with_url_credentials(
    addrs: &[ServerAddr],
    options: ConnectOptions,
) -> Result<ConnectOptions, std::io::Error> {
    let mut named = addrs
        .iter()
        .filter_map(|a| a.username().map(|user| (user, a.password())));
    let Some(first) = named.next() else {
        return Ok(options);
    };
    if named.any(|other| other != first) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the servers of the list carry different credentials",
        ));
    }
    Ok(match first {
        (user, Some(password)) => {
            options.user_and_password(percent_decoded(user), percent_decoded(password))
        }
        (token, None) => options.token(percent_decoded(token)),
    })
}

/// A URL's user-info part as the user typed it before escaping (`%40` → `@`).
fn percent_decoded(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_percent_decoded() {
        assert_eq!(percent_decoded("p%40ss%2Fw%zz%4"), "p@ss/w%zz%4");
        assert_eq!(percent_decoded(""), "");
    }

    #[test]
    fn servers_with_different_credentials_are_refused_without_showing_them() {
        let addrs = parse_server_addrs("nats://a:x-secret@h1:1,nats://a:y-secret@h2:2").unwrap();
        let error = with_url_credentials(&addrs, ConnectOptions::new()).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        let same = parse_server_addrs("nats://a:x@h1:1,nats://h2:2,nats://a:x@h3:3").unwrap();
        assert!(with_url_credentials(&same, ConnectOptions::new()).is_ok());
    }
}
