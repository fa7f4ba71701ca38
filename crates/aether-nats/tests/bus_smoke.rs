//! Smoke test of the NATS event bus: two buses on one server.

use std::time::Duration;

use aether_core::{ActorId, Event, Namespace, Pattern, SubscribeOptions};
use aether_nats::{DurableOptions, NatsEventBus};
use aether_testkit::nats_server::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_exchange_events() {
    let server = NatsServer::start().expect("nats-server");
    let a = NatsEventBus::connect(&server.url()).await.unwrap();
    let b = NatsEventBus::connect(&server.url()).await.unwrap();
    let ns = Namespace::new("prod.orders").unwrap();
    let mut on_b = b.subscribe(&ns);
    let mut wild_b =
        b.subscribe_across_namespaces(&Pattern::new("prod.*").unwrap(), SubscribeOptions::new());
    let mut on_a = a.subscribe(&ns);
    b.flush().await.unwrap();
    a.flush().await.unwrap();
    let actor = ActorId::new("o-1").unwrap();
    for v in 1..=3 {
        a.publish(&ns, Event::new(actor.clone(), "Placed", v)).await;
    }
    for v in 1..=3 {
        let e = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.version, v);
        let e = tokio::time::timeout(Duration::from_secs(5), wild_b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.version, v);
        let e = on_a.try_recv().unwrap();
        assert_eq!(e.version, v);
    }
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(on_a.try_recv().is_none(), "own events once");
    assert!(on_b.try_recv().is_none());
    println!("a {:?}\nb {:?}", a.metrics(), b.metrics());

    // durable
    let mut d = b
        .subscribe_durable("proj", &ns, DurableOptions::new())
        .await
        .unwrap();
    for v in 4..=6 {
        a.publish_durable(&ns, Event::new(actor.clone(), "Placed", v))
            .await
            .unwrap();
    }
    for v in 4..=6 {
        let e = tokio::time::timeout(Duration::from_secs(5), d.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.version, v);
    }
    d.ack().await.unwrap();
    println!("{:?} {:?}", d.metrics(), d.backlog().await.unwrap());
}
