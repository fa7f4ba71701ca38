//! Parsing the server list a user gives (`nats://a:4222,nats://b:4222`), shared by the store
//! and the bus so both accept and refuse exactly the same URLs.

use async_nats::ServerAddr;

/// The servers of a comma-separated URL list.
///
/// # Errors
///
/// The first entry that is empty or not a valid NATS URL.
pub(crate) fn parse_server_addrs(url: &str) -> Result<Vec<ServerAddr>, std::io::Error> {
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
