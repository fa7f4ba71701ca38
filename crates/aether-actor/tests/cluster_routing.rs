//! Actors across nodes on a real `nats-server` (feature `cluster`): calls routed to the owner
//! of the actor's shard from any node, a planned move with the state intact and no command
//! lost, the storage fence against a node that still believes it owns a shard, command ids
//! across nodes, and bad requests on the wire. Placements are driven by hand here (the test
//! is the leader); nodes are separate connections in one process. Needs `nats-server`
//! >= 2.12; fails (never skips) with the install command when it is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use aether_actor::cluster::wire::{self, Reply};
use aether_actor::cluster::{ClusterActors, Incarnate, Placement, RoutingConfig};
use aether_actor::{ActorConfig, ActorError, AskError, AskOptions, CommandId};
use aether_core::{
    ActorId, EventStore, FencedEventStore, NodeId, OwnerEpoch, ShardId, SnapshotStore,
};
use bank::{Bank, Command, Query, Rejection};
use cluster::{Cluster, SHARDS, actor, balance, incarnate, never_gone, shards, start_server};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_the_owner_from_any_node_and_actors_live_only_there() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = cluster.node(&a, None).await;
    let node_b = cluster.node(&b, None).await;
    cluster.place(&[&a, &b, &a, &b]);
    let nodes = [&node_a, &node_b];
    for i in 0..12 {
        let id = actor(i);
        for (k, node) in nodes.iter().enumerate() {
            let outcome = node
                .ask(&id, Command::Deposit { cents: 10 })
                .await
                .unwrap_or_else(|e| panic!("ask {id} via node {k}: {e}"));
            assert_eq!(outcome.version, k as u64 + 1);
            assert_eq!(outcome.reply, 10 * (k as u64 + 1));
        }
        node_b
            .tell(&id, Command::Deposit { cents: 1 })
            .await
            .expect("tell");
        // The tell is in the owner's mailbox before it answered: queries see it.
        for node in nodes {
            assert_eq!(balance(node, &id).await, 21, "{id}");
        }
        let rejected = node_a.ask(&id, Command::Withdraw { cents: 1000 }).await;
        assert!(
            matches!(
                rejected,
                Err(AskError::Rejected(Rejection::Overdraft {
                    balance: 21,
                    wanted: 1000
                }))
            ),
            "{rejected:?}"
        );
        // Active on its owner only.
        let shard = node_a.shard_of(&id).unwrap().get();
        let (owner, other) = if shard % 2 == 0 {
            (&node_a, &node_b)
        } else {
            (&node_b, &node_a)
        };
        assert!(
            owner.local().mailbox_depth(&id).is_some(),
            "{id} active on its owner"
        );
        assert!(
            other.local().mailbox_depth(&id).is_none(),
            "{id} not active elsewhere"
        );
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_is_applied_once_whichever_node_it_is_sent_from() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = cluster.node(&a, None).await;
    let node_b = cluster.node(&b, None).await;
    cluster.place(&[&b, &b, &b, &b]);
    let id = actor(1);
    let command_id = CommandId::new("transfer-7").unwrap();
    let options = AskOptions::default().command_id(command_id.clone());
    let first = node_a
        .ask_with(&id, Command::Deposit { cents: 5 }, options.clone())
        .await
        .expect("first");
    node_a
        .ask(&id, Command::Deposit { cents: 100 })
        .await
        .expect("another");
    // The same command again, from the owner itself (local path), then from the other node.
    for node in [&node_b, &node_a] {
        let retry = node
            .ask_with(&id, Command::Deposit { cents: 5 }, options.clone())
            .await
            .expect("retry");
        assert!(retry.duplicate);
        assert_eq!((retry.version, retry.reply), (first.version, first.reply));
    }
    assert_eq!(balance(&node_a, &id).await, 105);
    // No deadline at all (Duration::MAX), from both nodes: no overflow, answered.
    let forever = AskOptions {
        timeout: Duration::MAX,
        ..AskOptions::default()
    };
    for node in [&node_a, &node_b] {
        let outcome = node
            .ask_with(&id, Command::Deposit { cents: 1 }, forever.clone())
            .await
            .expect("answered");
        assert!(!outcome.duplicate);
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_move_keeps_the_state_and_loses_no_command() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = cluster.node(&a, None).await;
    let node_b = cluster.node(&b, None).await;
    let v1 = cluster.place(&[&b, &b, &b, &b]);
    let ids: Vec<ActorId> = (0..8).map(actor).collect();
    for id in &ids {
        node_a
            .ask(id, Command::Deposit { cents: 7 })
            .await
            .expect("before the move");
    }
    // Commands keep coming from node a while every shard moves from b to a.
    let sender = {
        let (node_a, ids) = (node_a.clone(), ids.clone());
        tokio::spawn(async move {
            let mut acked = 0u64;
            for round in 0..20 {
                for id in &ids {
                    node_a
                        .ask(id, Command::Deposit { cents: 1 })
                        .await
                        .unwrap_or_else(|e| panic!("round {round}, {id}: {e}"));
                    acked += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let v2 = cluster.place(&[&a, &a, &a, &a]);
    assert!(v2.version > v1.version);
    assert!(
        v2.shards.iter().all(|s| s.moving_from.as_ref() == Some(&b)),
        "moving from b"
    );
    // The leader settles once b released every shard.
    let all_released = || (0..SHARDS).all(|s| node_b.has_released(ShardId::new(s), v2.version));
    tokio::time::timeout(Duration::from_secs(10), async {
        while !all_released() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("b releases its shards");
    assert_eq!(
        node_b.local().stats().active,
        0,
        "b passivated the moved actors"
    );
    let v3 = v2
        .settle(
            |who, s| who == &b && node_b.has_released(s, v2.version),
            never_gone,
        )
        .expect("settles");
    cluster.placements.send_replace(v3.clone());
    let acked = sender.await.expect("sender");
    assert_eq!(acked, 20 * ids.len() as u64);
    assert_eq!(
        (node_a.stats().fenced, node_b.stats().fenced),
        (0, 0),
        "a planned move never needs the fence"
    );
    let store = cluster.store().await;
    for id in &ids {
        // Every acknowledged command once, the state intact, on the new owner.
        assert_eq!(balance(&node_b, id).await, 7 + 20, "{id}");
        assert!(node_a.local().mailbox_depth(id).is_some(), "{id} now on a");
        let stream = node_a.local().stream_id(id).unwrap();
        assert_eq!(store.latest_version(&stream).await.unwrap(), 21);
        assert_eq!(
            store.latest_epoch(&stream).await.unwrap(),
            OwnerEpoch::new(v3.version.get()),
            "{id}: written under a's epoch"
        );
        // b handed the actor off with a snapshot (the policy is Never): a replayed only the
        // events after it.
        let snapshot = store.latest_snapshot(&stream).await.unwrap();
        assert!(
            snapshot.is_some_and(|s| s.version >= 1),
            "{id}: no snapshot at handoff"
        );
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_still_believes_it_owns_a_shard_cannot_write_after_the_new_owner_activated() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    // b never sees a placement after v1: paused, cut off, or slow.
    let (b_view, b_placements) = watch::channel(Placement::empty(shards()));
    let node_a = cluster.node(&a, None).await;
    let node_b = cluster.node(&b, Some(b_placements)).await;
    let v1 = cluster.place(&[&b, &b, &b, &b]);
    b_view.send_replace(v1.clone());
    let id = actor(3);
    node_b
        .ask(&id, Command::Deposit { cents: 50 })
        .await
        .expect("b owns it");
    // The leader declares b failed: the shard goes to a at once (b is gone, nothing moves).
    let owners = vec![Some(a.clone()); SHARDS as usize];
    let v2 = v1.next(&owners, |who| who == &b);
    assert!(v2.shards.iter().all(|s| s.moving_from.is_none()));
    cluster.placements.send_replace(v2.clone());
    // a activates the actor: it fences it with epoch v2.
    assert_eq!(balance(&node_a, &id).await, 50);
    // b still serves the shard in its view; its write is fenced, nothing lands, and its call
    // keeps being refused until the deadline.
    let options = AskOptions {
        timeout: Duration::from_millis(300),
        ..AskOptions::default()
    };
    let zombie = node_b
        .ask_with(&id, Command::Deposit { cents: 1000 }, options)
        .await;
    assert!(
        matches!(zombie, Err(AskError::Failed(ActorError::Timeout { .. }))),
        "{zombie:?}"
    );
    let store = cluster.store().await;
    let stream = node_a.local().stream_id(&id).unwrap();
    assert_eq!(
        store.latest_version(&stream).await.unwrap(),
        1,
        "nothing written by b"
    );
    assert_eq!(
        store.latest_epoch(&stream).await.unwrap(),
        OwnerEpoch::new(v2.version.get())
    );
    assert_eq!(balance(&node_a, &id).await, 50);
    assert!(node_b.stats().fenced >= 1, "{:?}", node_b.stats());
    // The fenced old owner passivated the actor.
    tokio::time::timeout(Duration::from_secs(5), async {
        while node_b.local().mailbox_depth(&id).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b passivates the fenced actor");
    let outcome = node_a
        .ask(&id, Command::Deposit { cents: 1 })
        .await
        .expect("a writes");
    assert_eq!((outcome.version, outcome.reply), (2, 51));
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_an_owner_fail_with_no_owner_at_their_deadline() {
    let cluster = Cluster::new(start_server());
    let a = incarnate("a");
    let node_a = cluster.node(&a, None).await;
    let options = AskOptions {
        timeout: Duration::from_millis(100),
        ..AskOptions::default()
    };
    let result = node_a
        .ask_with(&actor(1), Command::Deposit { cents: 1 }, options)
        .await;
    assert!(
        matches!(result, Err(AskError::Failed(ActorError::NoOwner { .. }))),
        "{result:?}"
    );
    // An actor id that is valid alone but too long with the type prefix: refused at once,
    // on every entry point.
    let long = ActorId::new("x".repeat(ActorId::MAX_LEN)).unwrap();
    let started = tokio::time::Instant::now();
    let asked = node_a.ask(&long, Command::Deposit { cents: 1 }).await;
    assert!(
        matches!(
            asked,
            Err(AskError::Failed(ActorError::InvalidActorId { .. }))
        ),
        "{asked:?}"
    );
    let told = node_a.tell(&long, Command::Deposit { cents: 1 }).await;
    assert!(
        matches!(told, Err(ActorError::InvalidActorId { .. })),
        "{told:?}"
    );
    let queried = node_a.query(&long, Query::Balance).await;
    assert!(
        matches!(queried, Err(ActorError::InvalidActorId { .. })),
        "{queried:?}"
    );
    assert!(node_a.shard_of(&long).is_err());
    // A command above the size limit: the same typed error as on one node.
    let blob = Command::Blob {
        data: "x".repeat(ActorConfig::default().max_command_bytes + 1),
    };
    let asked = node_a.ask(&actor(2), blob.clone()).await;
    assert!(
        matches!(
            asked,
            Err(AskError::Failed(ActorError::CommandTooLarge { .. }))
        ),
        "{asked:?}"
    );
    let told = node_a.tell(&actor(2), blob).await;
    assert!(
        matches!(told, Err(ActorError::CommandTooLarge { .. })),
        "{told:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused without routing"
    );
    node_a.shutdown().await;
}

/// A request as another NATS client (`nats req`) sends it: `body` with the given headers.
async fn raw_request(
    client: &async_nats::Client,
    subject: &str,
    map_version: Option<&str>,
    call_chain: Option<&str>,
    body: String,
) -> Reply {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(version) = map_version {
        headers.insert(wire::MAP_VERSION_HEADER, version);
    }
    if let Some(chain) = call_chain {
        headers.insert(wire::CALL_CHAIN_HEADER, chain);
    }
    let reply = client
        .request_with_headers(subject.to_owned(), headers, body.into())
        .await
        .expect("an answer");
    Reply::decode(&reply.payload).expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_node_refuses_commands_above_its_own_size_limit() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    // `a` serves every actor and takes commands of at most 200 bytes of JSON; `b` sends with
    // the default limit.
    let small = ActorConfig {
        max_command_bytes: 200,
        ..ActorConfig::default()
    };
    let node_a = cluster
        .host_configured(&a, Bank, None, RoutingConfig::default(), small)
        .await;
    let node_b = cluster.node(&b, None).await;
    let v1 = cluster.place(&[&a, &a, &a, &a]);
    let blob = |len: usize| Command::Blob {
        data: "x".repeat(len),
    };
    // {"Blob":{"data":"…"}}: 20 bytes around the data.
    let fits = blob(200 - 20);
    assert_eq!(serde_json::to_vec(&fits).unwrap().len(), 200);
    node_b
        .ask(&actor(1), fits)
        .await
        .expect("a command of 200 bytes is taken");
    // One byte more: refused by the node that serves it, typed, and nothing written.
    let asked = node_b.ask(&actor(1), blob(200 - 19)).await;
    assert!(
        matches!(
            &asked,
            Err(AskError::Failed(ActorError::Remote { kind, message, .. }))
                if kind == "invalid" && message.contains("above the limit of 200 bytes")
        ),
        "{asked:?}"
    );
    let told = node_b.tell(&actor(1), blob(200 - 19)).await;
    assert!(
        matches!(&told, Err(ActorError::Remote { kind, .. }) if kind == "invalid"),
        "{told:?}"
    );
    // From another client: the command's JSON as received is what counts — whitespace
    // inside it too, not the whitespace around it.
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let subject = wire::request_subject(&cluster.namespace, "account", &a.node);
    let data = "x".repeat(200 - 20);
    let version = v1.version.get().to_string();
    let send = |body: String| raw_request(&client, &subject, Some(&version), None, body);
    let spaced_inside = format!(
        r#"{{"op":"ask","actorId":"acct-1","commandId":"c-8","body":{{"Blob": {{"data":"{data}"}}}}}}"#
    );
    let reply = send(spaced_inside).await;
    assert!(
        matches!(
            &reply,
            Reply::Error { kind: wire::ErrorKind::Invalid, message }
                if message.contains("above the limit of 200 bytes")
        ),
        "{reply:?}"
    );
    let spaced_around = format!(
        r#"{{"op":"ask","actorId":"acct-1","commandId":"c-9","body": {{"Blob":{{"data":"{data}"}}}} }}"#
    );
    let reply = send(spaced_around).await;
    assert!(matches!(reply, Reply::Ok(_)), "{reply:?}");
    node_b.shutdown().await;
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_on_the_wire_get_typed_errors_and_write_nothing() {
    let cluster = Cluster::new(start_server());
    let a = incarnate("a");
    let node_a = cluster.node(&a, None).await;
    let v1 = cluster.place(&[&a, &a, &a, &a]);
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let subject = wire::request_subject(&cluster.namespace, "account", &a.node);
    let version = v1.version.get().to_string();
    let send = |body: &'static str, with_version: bool, chain: Option<String>| {
        let (client, subject, version) = (client.clone(), subject.clone(), version.clone());
        async move {
            let version = with_version.then_some(version.as_str());
            raw_request(
                &client,
                &subject,
                version,
                chain.as_deref(),
                body.to_owned(),
            )
            .await
        }
    };
    let deposit =
        r#"{"op":"ask","actorId":"acct-1","commandId":"c-1","body":{"Deposit":{"cents":1}}}"#;
    let too_long = serde_json::to_string(&vec!["x"; wire::MAX_CALL_CHAIN + 1]).unwrap();
    let cases = [
        ("not json", true, None),
        (
            r#"{"op":"ask","actorId":"acct-1","commandId":"c-1","body":{"Nope":{}}}"#,
            true,
            None,
        ),
        (
            r#"{"op":"ask","actorId":"acct-1","body":{"Deposit":{"cents":1}}}"#,
            true,
            None,
        ),
        (
            r#"{"op":"ask","actorId":"acct 1","commandId":"c-1","body":{"Deposit":{"cents":1}}}"#,
            true,
            None,
        ),
        (
            r#"{"op":"query","actorId":"acct-1","body":"Nope"}"#,
            true,
            None,
        ),
        (deposit, false, None),
        // A call chain that is not a JSON array of strings, or too long.
        (deposit, true, Some("acct-1".to_owned())),
        (deposit, true, Some(too_long)),
        // A reminder: with a command id, a name that is not a reminder name, or no name.
        (
            r#"{"op":"remind","actorId":"acct-1","commandId":"c-1","body":"ping"}"#,
            true,
            None,
        ),
        (
            r#"{"op":"remind","actorId":"acct-1","body":"has space"}"#,
            true,
            None,
        ),
        (
            r#"{"op":"remind","actorId":"acct-1","body":{"name":"ping"}}"#,
            true,
            None,
        ),
    ];
    for (body, with_version, chain) in cases {
        let reply = send(body, with_version, chain.clone()).await;
        assert!(
            matches!(
                reply,
                Reply::Error {
                    kind: wire::ErrorKind::Invalid,
                    ..
                }
            ),
            "{body} {chain:?}: {reply:?}"
        );
    }
    // In the form nodes write, but not JSON after `"body":` (nodes read that form without
    // checking the body first): the request's own error, not the body's.
    for body in [
        r#"{"op":"query","actorId":"acct-1","body":nul}"#,
        r#"{"op":"ask","actorId":"acct-1","commandId":"c-1","body":{"Deposit":{"cents":1}},"x":1}"#,
        r#"{"op":"query","actorId":"acct-1","body":null,"commandId":"c-1"}"#,
    ] {
        let reply = send(body, true, None).await;
        assert!(
            matches!(
                &reply,
                Reply::Error {
                    kind: wire::ErrorKind::Invalid,
                    message,
                } if message.starts_with("request body is not a request")
                    || message.starts_with("invalid command id")
            ),
            "{body}: {reply:?}"
        );
    }
    // An ask to an actor waiting in its own call chain would wait for itself.
    let chain = format!(r#"["{}/account.acct-1"]"#, cluster.namespace);
    let reply = send(deposit, true, Some(chain)).await;
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: wire::ErrorKind::Reentrant,
                ..
            }
        ),
        "{reply:?}"
    );
    let store = cluster.store().await;
    let stream = node_a.local().stream_id(&actor(1)).unwrap();
    assert_eq!(
        store.latest_version(&stream).await.unwrap(),
        0,
        "nothing written"
    );
    // The documented form works, from any NATS client.
    let reply = send(
        r#"{"op":"ask","actorId":"acct-1","commandId":"c-1","body":{"Deposit":{"cents":3}}}"#,
        true,
        None,
    )
    .await;
    let Reply::Ok(outcome) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(outcome["version"], 1);
    assert_eq!(outcome["reply"], 3);
    let reply = send(
        r#"{"op":"query","actorId":"acct-1","body":"Balance"}"#,
        true,
        None,
    )
    .await;
    assert_eq!(reply, Reply::Ok(serde_json::json!({"Balance": 3})));
    // A reminder's wake-up: the actor has no such reminder, so nothing fires.
    let reply = send(
        r#"{"op":"remind","actorId":"acct-1","body":"ping"}"#,
        true,
        None,
    )
    .await;
    assert_eq!(reply, Reply::Ok(serde_json::Value::Null));
    assert_eq!(node_a.local().stats().reminders_fired, 0);
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_on_the_way_is_sent_again_before_the_deadline() {
    let cluster = Cluster::new(start_server());
    let (a, ghost) = (incarnate("a"), incarnate("ghost"));
    let routing = RoutingConfig {
        attempt_timeout: Duration::from_millis(200),
        wait_for_move: Duration::from_millis(100),
        ..RoutingConfig::default()
    };
    let node_a = cluster.node_with(&a, None, routing).await;
    // The owner's subject swallows requests: a node whose connection died with its server,
    // or a request lost in flight.
    let listener = async_nats::connect(cluster.server.url()).await.unwrap();
    let mut swallowed = listener
        .subscribe(wire::request_subject(
            &cluster.namespace,
            "account",
            &ghost.node,
        ))
        .await
        .unwrap();
    listener.flush().await.unwrap();
    cluster.place(&[&ghost, &ghost, &ghost, &ghost]);
    let id = actor(1);
    let deadline = Duration::from_secs(10);
    let options = AskOptions {
        timeout: deadline,
        ..AskOptions::default()
    }
    .command_id(CommandId::new("lost-1").unwrap());
    let started = tokio::time::Instant::now();
    let call = tokio::spawn({
        let node_a = node_a.clone();
        async move {
            node_a
                .ask_with(&id, Command::Deposit { cents: 4 }, options)
                .await
        }
    });
    // The first attempt reaches the ghost and is never answered; then the shard moves to a.
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), swallowed.next())
        .await
        .expect("the first attempt reaches the owner");
    assert!(first.is_some());
    let owners = vec![Some(a.clone()); SHARDS as usize];
    let moved = cluster
        .placements
        .borrow()
        .next(&owners, |who| who == &ghost);
    cluster.placements.send_replace(moved);
    let outcome = call.await.unwrap().expect("answered by the new owner");
    assert_eq!((outcome.version, outcome.reply), (1, 4));
    assert!(
        started.elapsed() < deadline / 2,
        "the lost attempt was sent again after {:?}",
        started.elapsed()
    );
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_swallowed_by_an_owner_that_died_is_sent_to_the_new_owner_at_once() {
    let cluster = Cluster::new(start_server());
    let (a, ghost) = (incarnate("a"), incarnate("ghost"));
    // Default routing: one attempt may wait 5 s; the move must not wait for it.
    let node_a = cluster.node(&a, None).await;
    let listener = async_nats::connect(cluster.server.url()).await.unwrap();
    let mut swallowed = listener
        .subscribe(wire::request_subject(
            &cluster.namespace,
            "account",
            &ghost.node,
        ))
        .await
        .unwrap();
    listener.flush().await.unwrap();
    cluster.place(&[&ghost, &ghost, &ghost, &ghost]);
    let options = AskOptions {
        timeout: Duration::from_secs(10),
        ..AskOptions::default()
    };
    let started = tokio::time::Instant::now();
    let call = tokio::spawn({
        let node_a = node_a.clone();
        async move {
            node_a
                .ask_with(&actor(1), Command::Deposit { cents: 2 }, options)
                .await
        }
    });
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), swallowed.next())
        .await
        .expect("the request reaches the owner")
        .expect("a request");
    // The leader declares the owner failed: every shard goes to a at once.
    let owners = vec![Some(a.clone()); SHARDS as usize];
    let moved = cluster
        .placements
        .borrow()
        .next(&owners, |who| who == &ghost);
    cluster.placements.send_replace(moved);
    let outcome = call.await.unwrap().expect("answered by the new owner");
    assert_eq!((outcome.version, outcome.reply), (1, 2));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sent again only after {:?}",
        started.elapsed()
    );
    node_a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_only_while_its_membership_is_current_and_a_new_incarnation_owns_nothing_old()
 {
    use aether_cluster::NodeMetadata;
    use aether_cluster::membership::{MemberInfo, OwnMembership};

    let cluster = Cluster::new(start_server());
    let info = MemberInfo::new(NodeId::new("a").unwrap(), NodeMetadata::default()).unwrap();
    let first = info.incarnation;
    let (local, local_rx) = watch::channel(info);
    let (renewed, renewed_rx) = watch::channel(Some(tokio::time::Instant::now()));
    let valid_for = Duration::from_secs(1);
    let a = Incarnate {
        node: NodeId::new("a").unwrap(),
        incarnation: first,
    };
    let store = cluster.store().await;
    let node_a = ClusterActors::start_checked(
        store.client().clone(),
        a.clone(),
        cluster.namespace.clone(),
        Bank,
        store,
        shards(),
        ActorConfig::default(),
        cluster.placements.subscribe(),
        RoutingConfig::default(),
        OwnMembership::from_parts(local_rx, renewed_rx, valid_for),
    )
    .await
    .expect("node starts");
    let v1 = cluster.place(&[&a, &a, &a, &a]);
    let id = actor(5);
    node_a
        .ask(&id, Command::Deposit { cents: 9 })
        .await
        .expect("served");
    // A client asks a's subject directly, with a's own placement version.
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let subject = wire::request_subject(&cluster.namespace, "account", &a.node);
    let ask_a = |version: u64| {
        let (client, subject) = (client.clone(), subject.clone());
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(wire::MAP_VERSION_HEADER, version.to_string().as_str());
            let body = r#"{"op":"query","actorId":"acct-5","body":"Balance"}"#;
            let reply = client
                .request_with_headers(subject, headers, body.into())
                .await
                .expect("an answer");
            Reply::decode(&reply.payload).expect("a reply")
        }
    };
    assert_eq!(
        ask_a(v1.version.get()).await,
        Reply::Ok(serde_json::json!({"Balance": 9}))
    );

    // Not renewed for longer than its validity (paused, cut off): it answers nothing.
    let now = tokio::time::Instant::now();
    renewed.send_replace(Some(now - valid_for * 2));
    let lapsed = ask_a(v1.version.get()).await;
    assert!(
        matches!(
            lapsed,
            Reply::Error {
                kind: wire::ErrorKind::Unavailable,
                ..
            }
        ),
        "{lapsed:?}"
    );
    let short = AskOptions {
        timeout: Duration::from_millis(300),
        ..AskOptions::default()
    };
    let refused = node_a
        .ask_with(&id, Command::Deposit { cents: 1 }, short.clone())
        .await;
    assert!(
        matches!(refused, Err(AskError::Failed(ActorError::Timeout { .. }))),
        "{refused:?}"
    );

    // Renewed, same incarnation (the key never expired): it serves again what names it.
    renewed.send_replace(Some(tokio::time::Instant::now()));
    assert_eq!(
        ask_a(v1.version.get()).await,
        Reply::Ok(serde_json::json!({"Balance": 9}))
    );

    // Lapsed long enough for a new incarnation: it owns nothing the earlier one owned.
    renewed.send_replace(Some(tokio::time::Instant::now() - valid_for * 2));
    assert!(matches!(ask_a(v1.version.get()).await, Reply::Error { .. }));
    local.send_modify(|info| info.incarnation = first + 1);
    renewed.send_replace(Some(tokio::time::Instant::now()));
    let moved = ask_a(v1.version.get()).await;
    assert!(matches!(moved, Reply::Moved { .. }), "{moved:?}");
    let refused = node_a
        .ask_with(&id, Command::Deposit { cents: 1 }, short)
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // The leader names the new incarnation (the earlier one is gone): served again, under a
    // new epoch, with the state intact.
    let a2 = Incarnate {
        node: a.node.clone(),
        incarnation: first + 1,
    };
    let owners = vec![Some(a2.clone()); SHARDS as usize];
    let v2 = cluster.placements.borrow().next(&owners, |who| who == &a);
    cluster.placements.send_replace(v2.clone());
    let outcome = node_a
        .ask(&id, Command::Deposit { cents: 1 })
        .await
        .expect("served again");
    assert_eq!((outcome.version, outcome.reply), (2, 10));
    let store = cluster.store().await;
    let stream = node_a.local().stream_id(&id).unwrap();
    assert_eq!(
        store.latest_epoch(&stream).await.unwrap(),
        OwnerEpoch::new(v2.version.get())
    );
    node_a.shutdown().await;
}

/// A node answers its requests concurrently: one that waits for a placement the node has not
/// seen (up to `wait_for_move`) does not hold up a query of another actor sent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_a_newer_placement_does_not_hold_up_the_others() {
    let cluster = Cluster::new(start_server());
    let a = incarnate("a");
    let node_a = cluster.node(&a, None).await;
    let v1 = cluster.place(&[&a, &a, &a, &a]);
    node_a
        .ask(&actor(2), Command::Deposit { cents: 5 })
        .await
        .unwrap();
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let subject = wire::request_subject(&cluster.namespace, "account", &a.node);
    let request = |actor: &str, version: u64| {
        let (client, subject) = (client.clone(), subject.clone());
        let body = format!(r#"{{"op":"query","actorId":"{actor}","body":"Balance"}}"#);
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(wire::MAP_VERSION_HEADER, version.to_string().as_str());
            let started = std::time::Instant::now();
            let reply = client
                .request_with_headers(subject, headers, body.into())
                .await
                .expect("an answer");
            (
                Reply::decode(&reply.payload).expect("a reply"),
                started.elapsed(),
            )
        }
    };
    // A sender that claims a placement 5 versions ahead: node a waits for it (2 s by default).
    let waiting = tokio::spawn(request("acct-1", v1.version.get() + 5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (reply, took) = request("acct-2", v1.version.get()).await;
    assert!(matches!(reply, Reply::Ok(_)), "{reply:?}");
    assert!(
        took < Duration::from_secs(1),
        "a query waited {took:?} behind a request waiting for a placement"
    );
    let (reply, took) = waiting.await.unwrap();
    assert!(matches!(reply, Reply::Moved { .. }), "{reply:?}");
    assert!(took >= Duration::from_secs(1), "it did wait: {took:?}");
    node_a.shutdown().await;
}

/// A graceful shutdown answers the requests the node already took: a request waiting for a
/// shard to move here when the node leaves gets an answer (not silence), and the node then
/// takes no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_answers_the_requests_it_took() {
    let cluster = Cluster::new(start_server());
    let (a, b) = (incarnate("a"), incarnate("b"));
    let node_a = cluster.node(&a, None).await;
    cluster.place(&[&b, &b, &b, &b]);
    // Every shard moves from b (which never releases) to a: a request to a waits for the move.
    let v2 = cluster.place(&[&a, &a, &a, &a]);
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let subject = wire::request_subject(&cluster.namespace, "account", &a.node);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        wire::MAP_VERSION_HEADER,
        v2.version.get().to_string().as_str(),
    );
    let body = r#"{"op":"query","actorId":"acct-1","body":"Balance"}"#;
    // Several, so that an abort would very likely catch one unanswered.
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (client, subject, headers) = (client.clone(), subject.clone(), headers.clone());
            tokio::spawn(async move {
                client
                    .send_request(
                        subject,
                        async_nats::Request::new()
                            .headers(headers)
                            .payload(body.into())
                            .timeout(Some(Duration::from_secs(10))),
                    )
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    node_a.shutdown().await;
    for request in waiting {
        let reply = request.await.unwrap().expect("an answer, not silence");
        let reply = Reply::decode(&reply.payload).expect("a reply");
        assert!(
            matches!(reply, Reply::Error { .. } | Reply::Moved { .. }),
            "{reply:?}"
        );
    }
    // No more requests are taken: the next one finds no responder at once.
    let started = std::time::Instant::now();
    let next = client
        .request_with_headers(subject, headers, body.into())
        .await;
    assert!(next.is_err(), "answered after the shutdown: {next:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
