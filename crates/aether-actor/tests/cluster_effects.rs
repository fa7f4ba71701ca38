//! Actors talking to actors across nodes on a real `nats-server` (feature `cluster`): effects
//! (`then_tell`/`then_ask` to another actor type through its `ClusterActors` handle,
//! `then_tell_peer`/`then_ask_peer` to the same type) reach actors served by another node;
//! an ask cycle across nodes ends in `Reentrant`; and a reminder follows its actor to the
//! shard's new owner, where it fires once. Placements are driven by hand (the test is the
//! leader). Needs `nats-server` >= 2.12; fails (never skips) with the install command when it
//! is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "support/relay.rs"]
mod relay;

use std::time::Duration;

use aether_actor::cluster::{ClusterActors, Incarnate, Placement, RoutingConfig};
use aether_core::{ActorId, EventStore, ShardId};
use aether_nats::JetStreamEventStore;
use bank::Bank;
use cluster::{Cluster, SHARDS, balance, incarnate, never_gone, start_server};
use relay::{Command, Relay, id};

type Banks = ClusterActors<Bank, JetStreamEventStore>;
type Relays = ClusterActors<Relay<Banks>, JetStreamEventStore>;

/// One node hosting both actor types; its relays talk to the bank through its own handle.
struct Node {
    banks: Banks,
    relays: Relays,
}

impl Node {
    async fn start(cluster: &Cluster, me: &Incarnate) -> Self {
        let banks = cluster.node(me, None).await;
        let relay = Relay {
            bank: banks.clone(),
        };
        let relays = cluster
            .host(me, relay, None, RoutingConfig::default())
            .await;
        Self { banks, relays }
    }

    async fn shutdown(&self) {
        self.relays.shutdown().await;
        self.banks.shutdown().await;
    }
}

/// Shard `s` goes to node `a` when even and `b` when odd.
fn alternate<'a>(a: &'a Incarnate, b: &'a Incarnate) -> [&'a Incarnate; SHARDS as usize] {
    [a, b, a, b]
}

/// The first id `<prefix>-<n>` whose shard (in `handle`'s type) is odd (`on_b`) or even.
fn id_on<A: aether_actor::cluster::ClusterActor>(
    handle: &ClusterActors<A, JetStreamEventStore>,
    prefix: &str,
    on_b: bool,
) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|name| handle.shard_of(&id(name)).unwrap().get() % 2 == u32::from(on_b))
        .unwrap()
}

async fn log(relays: &Relays, who: &str) -> Vec<String> {
    relays.query(&id(who), ()).await.expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_reach_actors_served_by_other_nodes() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = Node::start(&cluster, &a).await;
    let node_b = Node::start(&cluster, &b).await;
    cluster.place(&alternate(&a, &b));
    let relay_a = id_on(&node_a.relays, "relay", false);
    let relay_b = id_on(&node_a.relays, "relay", true);
    let account_b = id_on(&node_a.banks, "acct", true);

    // Another type, through the node's `ClusterActors<Bank>`: a tell, then an ask.
    let pay = Command::Pay {
        to: account_b.clone(),
        cents: 7,
    };
    node_a.relays.ask(&id(&relay_a), pay).await.expect("pay");
    // The tell was in b's mailbox before relay_a's outcome returned.
    assert_eq!(balance(&node_a.banks, &id(&account_b)).await, 7);
    let collect = Command::Collect {
        from: account_b.clone(),
        cents: 5,
    };
    node_a
        .relays
        .ask(&id(&relay_a), collect)
        .await
        .expect("collect");
    assert_eq!(
        log(&node_a.relays, &relay_a).await,
        [
            format!("sent to {account_b}"),
            format!("sent to {account_b}"),
            "ok 2".to_owned()
        ]
    );
    assert_eq!(balance(&node_b.banks, &id(&account_b)).await, 2);

    // The same type: a peer served by b.
    let forward = Command::Forward {
        to: relay_b.clone(),
        text: "hello".into(),
    };
    node_a
        .relays
        .ask(&id(&relay_a), forward)
        .await
        .expect("forward");
    assert_eq!(log(&node_b.relays, &relay_b).await, ["hello"]);

    // Every actor lives on its owner only, and no effect failed.
    assert!(
        node_b
            .banks
            .local()
            .mailbox_depth(&id(&account_b))
            .is_some()
    );
    assert!(
        node_a
            .banks
            .local()
            .mailbox_depth(&id(&account_b))
            .is_none()
    );
    assert!(node_a.relays.local().mailbox_depth(&id(&relay_b)).is_none());
    for node in [&node_a, &node_b] {
        assert_eq!(node.relays.local().stats().effect_failures, 0);
        assert_eq!(node.relays.stats().fenced, 0);
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_cycle_across_nodes_ends_in_reentrant() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = Node::start(&cluster, &a).await;
    let node_b = Node::start(&cluster, &b).await;
    cluster.place(&alternate(&a, &b));
    let x = id_on(&node_a.relays, "relay", false);
    let y = id_on(&node_a.relays, "relay", true);
    // x (on a) asks y (on b), whose effect asks x: x is waiting in the chain.
    let cycle = Command::Cycle {
        path: vec![y.clone(), x.clone()],
    };
    tokio::time::timeout(Duration::from_secs(3), node_b.relays.ask(&id(&x), cycle))
        .await
        .expect("no deadlock: refused at once, not after a timeout")
        .expect("cycle");
    assert_eq!(
        log(&node_a.relays, &y).await,
        [format!("sent to {x}"), "reentrant".to_owned()]
    );
    assert_eq!(
        log(&node_b.relays, &x).await,
        [format!("sent to {y}"), "ok 1".to_owned()]
    );
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_follows_its_actor_to_the_new_owner_and_fires_once() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = Node::start(&cluster, &a).await;
    let node_b = Node::start(&cluster, &b).await;
    let v1 = cluster.place(&[&a, &a, &a, &a]);
    // Two relays with a reminder due in 1.5 s, both set on a. After the move, `quiet` is
    // not touched (only a's scheduler knows its reminder); `woken` is queried on b first (so
    // b's scheduler knows it too, and both wake it).
    let quiet = "quiet".to_owned();
    let woken = "woken".to_owned();
    for who in [&quiet, &woken] {
        let remind = Command::Remind {
            name: "ping".into(),
            ms: 1500,
        };
        node_a.relays.ask(&id(who), remind).await.expect("remind");
    }
    let v2 = cluster.place(&[&b, &b, &b, &b]);
    let released =
        |s| node_a.relays.has_released(s, v2.version) && node_a.banks.has_released(s, v2.version);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !(0..SHARDS).all(|s| released(ShardId::new(s))) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a releases its shards");
    let v3: Placement = v2
        .settle(|who, s| who == &a && released(s), never_gone)
        .expect("settles");
    assert!(v3.version > v1.version);
    cluster.placements.send_replace(v3);
    assert_eq!(
        log(&node_b.relays, &woken).await,
        ["reminder ping"],
        "not due yet"
    );

    // Watched in the store, not through the actor: a query would activate it on b.
    let store = cluster.store().await;
    let fired = |who: &ActorId| {
        let stream = node_b.relays.local().stream_id(who).unwrap();
        let store = store.clone();
        async move {
            loop {
                let replay = store.events_with_errors(&stream, 0).await.expect("replay");
                if replay
                    .events
                    .iter()
                    .any(|e| e.data.get("text").is_some_and(|t| t == "reminded ping"))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for who in [&quiet, &woken] {
        tokio::time::timeout(Duration::from_secs(10), fired(&id(who)))
            .await
            .unwrap_or_else(|_| panic!("{who}: the reminder never fired on the new owner"));
        assert!(
            node_b.relays.local().mailbox_depth(&id(who)).is_some(),
            "{who} woken on the new owner"
        );
        assert!(
            node_a.relays.local().mailbox_depth(&id(who)).is_none(),
            "{who} not active on the old owner"
        );
    }
    // Both schedulers have let go: nothing fires again, a does not retry.
    let failures = node_a.relays.local().stats().effect_failures;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(node_a.relays.local().stats().effect_failures, failures);
    assert_eq!(failures, 0, "a delivered its due reminders to b");
    for who in [&quiet, &woken] {
        assert_eq!(
            log(&node_b.relays, who).await,
            ["reminder ping", "reminded ping"],
            "{who}"
        );
    }
    assert_eq!(node_b.relays.local().stats().reminders_fired, 2);
    node_a.shutdown().await;
    node_b.shutdown().await;
}
