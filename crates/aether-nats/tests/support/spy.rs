//! A spy on the requests clients send to the server: a separate connection subscribed to
//! API subjects. Shared by the tests that count a store's requests (included by path).

use std::time::Duration;

use futures::StreamExt as _;

/// Subscribes a new connection to `subject` and returns once the server has the
/// subscription: the spy publishes a probe on `probe` (a subject `subject` matches, answered
/// by nothing) and waits for it to come back. A flush alone only writes the SUB to the socket;
/// a request another connection sends right after could reach the server first and be missed.
pub(crate) async fn spy(url: &str, subject: &str, probe: &str) -> async_nats::Subscriber {
    let client = async_nats::connect(url).await.expect("spy connection");
    let mut subscriber = client.subscribe(subject.to_owned()).await.expect("spy");
    client
        .publish(probe.to_owned(), "".into())
        .await
        .expect("spy probe");
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
            .await
            .expect("the spy's probe comes back")
            .expect("spy subscription open");
        if message.subject.as_str() == probe {
            return subscriber;
        }
    }
}
