//! Actors across a cluster: three nodes host bank accounts, a client reaches every account
//! through any node, one node crashes, and its accounts answer again from the others with
//! their state intact.
//!
//! Each node is a `ClusterManager` (membership, leader election, the shard map) and a
//! `ClusterActors` host joined to it, on its own NATS connection, as three services on three
//! machines would be. The client is a fourth node of weight 0: it owns no shards and routes
//! every call to the node that serves the account. The example shows, and checks:
//!
//! 1. the three nodes share the shards; deposits to 30 accounts through the client land once
//!    each, and any node answers for any account;
//! 2. a retried command (same command id, sent again through another node) is applied once
//!    and answers its first outcome;
//! 3. node n2 crashes (stops without leaving or handing anything off): once the others have
//!    declared it failed, the leader gives its shards to n1 and n3; every account answers
//!    again with the balance it had, and the client's calls made meanwhile were retried, not
//!    lost. The time it took is printed next to the failure-detection bound.
//!
//! Run it with `cargo run -p aether --features actor,cluster --example cluster_actors`: it
//! starts its own `nats-server` (2.12 or later on `PATH` or in `NATS_SERVER_BIN`;
//! `scripts/install-nats-server.sh` installs one), or use `-- --nats nats://127.0.0.1:4222`
//! for a running `nats-server -js` (every run uses a fresh cluster name and namespace).
//! The cluster runs with short timings (1 s member TTL) so that the crash is detected fast.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aether::actor::cluster::demo::{Account, AccountCommand, AccountQuery};
use aether::actor::cluster::{ClusterActors, RoutingConfig};
use aether::actor::{ActorConfig, AskOptions, CommandId};
use aether::cluster::{ClusterConfig, ClusterManager};
use aether::{ActorId, JetStreamEventStore, Namespace, NodeId, ShardCount};
use aether_testkit::example_args::ExampleArgs;
use aether_testkit::nats_server::NatsServer;

type AppResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Accounts in the example.
const ACCOUNTS: u64 = 30;
/// Longest wait for the cluster to reach a state.
const WAIT: Duration = Duration::from_secs(30);

macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+).into());
        }
    };
}

struct Node {
    manager: ClusterManager,
    host: ClusterActors<Account, JetStreamEventStore>,
}

fn config(cluster: &str, id: &str, weight: u32) -> AppResult<ClusterConfig> {
    let mut config = ClusterConfig::new(NodeId::new(id)?);
    config.cluster_name = cluster.to_owned();
    config.metadata.weight = weight;
    config.shard_count = ShardCount::new(64)?;
    config.heartbeat = Duration::from_millis(250);
    config.member_ttl = Duration::from_secs(1);
    config.probe_timeout = Duration::from_millis(250);
    config.stabilization_delay = Duration::from_millis(500);
    config.lease_ttl = Duration::from_secs(2);
    config.lease_margin = Duration::from_millis(300);
    config.move_interval = Duration::from_millis(100);
    Ok(config)
}

async fn start_node(url: &str, config: ClusterConfig, namespace: &Namespace) -> AppResult<Node> {
    let client = async_nats::connect(url).await?;
    let manager = Box::pin(ClusterManager::start(client.clone(), config)).await?;
    let store = JetStreamEventStore::with_client(
        client.clone(),
        namespace.clone(),
        aether::JetStreamConfig::default(),
    )
    .await?;
    let host = ClusterActors::join(
        &manager,
        client,
        namespace.clone(),
        Account,
        store,
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await?;
    Ok(Node { manager, host })
}

fn account(i: u64) -> AppResult<ActorId> {
    Ok(ActorId::new(format!("acct-{i}"))?)
}

/// Shards per node once the placement names only `nodes` and nothing is moving.
async fn settled(client: &Node, nodes: &[&str]) -> AppResult<Vec<(String, usize)>> {
    let started = Instant::now();
    loop {
        let placement = client.manager.watch_placement().borrow().clone();
        let mut counts: Vec<(String, usize)> = Vec::new();
        for slot in &placement.shards {
            let Some(owner) = &slot.owner else { continue };
            match counts.iter_mut().find(|(n, _)| n == owner.node.as_str()) {
                Some((_, c)) => *c += 1,
                None => counts.push((owner.node.to_string(), 1)),
            }
        }
        counts.sort();
        let names: Vec<&str> = counts.iter().map(|(n, _)| n.as_str()).collect();
        if !placement.is_moving()
            && placement.shards.iter().all(|s| s.owner.is_some())
            && names == nodes
        {
            return Ok(counts);
        }
        ensure!(
            started.elapsed() < WAIT,
            "the cluster did not settle on {nodes:?} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn balance(node: &Node, id: &ActorId) -> AppResult<(u64, u64)> {
    let b = node.host.query(id, AccountQuery::Balance).await?;
    Ok((b.balance, b.version))
}

async fn run(url: &str) -> AppResult<()> {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let cluster = format!("example-{millis}");
    let namespace = Namespace::new(format!("cluster-actors-{millis}"))?;

    println!("1. three nodes and a client (weight 0) join cluster {cluster}");
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(start_node(url, config(&cluster, id, 1)?, &namespace).await?);
    }
    let client = start_node(url, config(&cluster, "client", 0)?, &namespace).await?;
    let shares = settled(&client, &["n1", "n2", "n3"]).await?;
    println!("   shards per node: {shares:?}");
    for i in 0..ACCOUNTS {
        let outcome = client
            .host
            .ask(&account(i)?, AccountCommand::Deposit { amount: 10 + i })
            .await?;
        ensure!(
            outcome.version == 1,
            "account {i}: version {}",
            outcome.version
        );
    }
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..ACCOUNTS {
            let (balance, version) = balance(node, &account(i)?).await?;
            ensure!(
                (balance, version) == (10 + i, 1),
                "account {i} through n{}: balance {balance}, version {version}",
                n + 1
            );
        }
    }
    println!("   {ACCOUNTS} deposits through the client; every node answers for every account");

    println!("2. a command retried through another node is applied once");
    let id = account(0)?;
    let options = AskOptions::default().command_id(CommandId::new("bonus-1")?);
    let first = client
        .host
        .ask_with(&id, AccountCommand::Deposit { amount: 5 }, options.clone())
        .await?;
    let retry = nodes[2]
        .host
        .ask_with(&id, AccountCommand::Deposit { amount: 5 }, options)
        .await?;
    ensure!(
        retry.duplicate && retry.version == first.version && retry.reply == first.reply,
        "the retry was applied again: {retry:?} after {first:?}"
    );
    println!(
        "   first: version {}, balance {}; retry: duplicate, same outcome",
        first.version, first.reply
    );

    println!("3. n2 crashes: no handoff, no leave");
    let crashed = nodes.remove(1);
    let owned_by_n2: Vec<u64> = (0..ACCOUNTS)
        .filter(|&i| {
            account(i)
                .ok()
                .and_then(|id| client.host.shard_of(&id).ok())
                .is_some_and(|shard| {
                    let placement = client.manager.watch_placement().borrow().clone();
                    placement
                        .slot(shard)
                        .and_then(|s| s.owner.as_ref())
                        .is_some_and(|o| o.node.as_str() == "n2")
                })
        })
        .collect();
    let crash_at = Instant::now();
    crashed.host.abort().await;
    crashed.manager.abort().await;
    // The client keeps calling an account n2 served; calls made meanwhile are retried.
    let watched = account(*owned_by_n2.first().ok_or("n2 served no account")?)?;
    let before = balance(&client, &watched).await.ok();
    let (balance_after, _) = balance(&client, &watched).await?;
    let back_after = crash_at.elapsed();
    if let Some((b, _)) = before {
        ensure!(b == balance_after, "balance changed across the crash");
    }
    let shares = settled(&client, &["n1", "n3"]).await?;
    println!("   shards per node: {shares:?}");
    let bound = {
        let c = config(&cluster, "n1", 1)?;
        c.member_ttl + c.probe_timeout + c.stabilization_delay
    };
    println!(
        "   n2's accounts answered again after {back_after:.2?} (failure-detection bound \
         {bound:?}, + the lease TTL if n2 led)"
    );
    for i in 0..ACCOUNTS {
        let expected = 10 + i + if i == 0 { 5 } else { 0 };
        let (balance, _) = balance(&client, &account(i)?).await?;
        ensure!(
            balance == expected,
            "account {i}: balance {balance}, expected {expected}"
        );
    }
    println!(
        "   all {ACCOUNTS} accounts intact ({} of them were on n2)",
        owned_by_n2.len()
    );

    for node in nodes.into_iter().chain([client]) {
        node.host.shutdown().await;
        node.manager.shutdown().await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = ExampleArgs::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.nats {
            Some(url) => run(&url).await,
            None => {
                let server = NatsServer::start()?;
                let result = run(&server.url()).await;
                drop(server);
                result
            }
        }
    });
    match result {
        Ok(()) => {
            println!("done: every check passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cluster_actors example failed: {e}");
            ExitCode::FAILURE
        }
    }
}
