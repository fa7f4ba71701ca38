//! A model cluster driving the protocol through random interleavings: a leader with a lagging
//! membership view writing placements and settling moves (and replaced by a new leader that
//! starts with an empty view), nodes adopting placements late or skipping some, drains that
//! take their time, nodes paused past their deadline (zombies) then resumed and renewed as
//! new incarnations, nodes crashed and restarted. After every step: **no shard is served by
//! two nodes that can answer**, and each shard's successive servers have growing epochs. At
//! the end, once faults stop: every shard is served by its owner in the last placement.

use std::collections::{BTreeMap, BTreeSet};

use aether_cluster::MapVersion;
use aether_core::{NodeId, ShardCount, ShardId};
use proptest::prelude::*;

use super::{Action, Decision, Incarnate, Ownership, Placement, ShardState};

const NODES: usize = 3;
const SHARDS: u32 = 5;

#[derive(Debug, Clone)]
enum Op {
    /// The leader assigns every shard among the nodes its view has live, rotated by `seed`
    /// (and some shards left unassigned when `seed` says so).
    Assign(u8),
    /// The leader asks every earlier owner of a moving shard and settles what it can.
    Settle,
    /// The leader's view catches up with the membership's facts.
    LeaderView,
    /// A new leader: its view starts empty.
    NewLeader,
    /// A node adopts the next placement it has not seen, or (`latest`) skips to the newest.
    Adopt {
        node: usize,
        latest: bool,
    },
    /// A node finishes draining one of the shards it drains.
    Drain {
        node: usize,
        pick: usize,
    },
    Pause(usize),
    /// A paused node's own membership deadline passes while it is paused.
    DeadlinePassed(usize),
    /// Membership declares a node's incarnation failed: only once it crashed, or once its own
    /// deadline passed (its check lapses before its key expires).
    DeclareFailed(usize),
    Resume(usize),
    /// A resumed node whose deadline passed renews as a new incarnation.
    Renew(usize),
    Crash(usize),
    /// A crashed node starts again, a new incarnation.
    Restart(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Assign),
        4 => Just(Op::Settle),
        3 => Just(Op::LeaderView),
        1 => Just(Op::NewLeader),
        8 => (node.clone(), any::<bool>()).prop_map(|(node, latest)| Op::Adopt { node, latest }),
        6 => (node.clone(), any::<usize>()).prop_map(|(node, pick)| Op::Drain { node, pick }),
        1 => node.clone().prop_map(Op::Pause),
        1 => node.clone().prop_map(Op::DeadlinePassed),
        2 => node.clone().prop_map(Op::DeclareFailed),
        2 => node.clone().prop_map(Op::Resume),
        2 => node.clone().prop_map(Op::Renew),
        1 => node.clone().prop_map(Op::Crash),
        2 => node.prop_map(Op::Restart),
    ]
}

struct Node {
    own: Ownership,
    crashed: bool,
    paused: bool,
    /// Its own deadline passed: its check lapses before it does anything else.
    deadline_passed: bool,
    /// `own.lapse()` ran and it has not renewed since.
    lapsed: bool,
    /// Index (in `World::placements`) of the newest placement adopted.
    adopted: Option<usize>,
    draining: BTreeSet<ShardId>,
}

impl Node {
    fn running(&self) -> bool {
        !self.crashed && !self.paused
    }
}

struct World {
    shards: ShardCount,
    ids: Vec<NodeId>,
    nodes: Vec<Node>,
    next_incarnation: u64,
    placements: Vec<Placement>,
    /// Membership's facts: incarnations that joined, and those declared failed.
    joined: BTreeSet<Incarnate>,
    failed: BTreeSet<Incarnate>,
    /// The leader's view of those facts (lags; a new leader's starts empty).
    leader_joined: BTreeSet<Incarnate>,
    leader_failed: BTreeSet<Incarnate>,
    /// Per shard, the last (node, epoch) that started serving it.
    last_server: BTreeMap<ShardId, (Incarnate, MapVersion)>,
}

impl World {
    fn new() -> Self {
        let shards = ShardCount::new(SHARDS).expect("shard count");
        let ids: Vec<NodeId> = (0..NODES)
            .map(|i| NodeId::new(format!("n{i}")).expect("node id"))
            .collect();
        let mut world = Self {
            shards,
            ids: ids.clone(),
            nodes: Vec::new(),
            next_incarnation: 1,
            placements: vec![Placement::empty(shards)],
            joined: BTreeSet::new(),
            failed: BTreeSet::new(),
            leader_joined: BTreeSet::new(),
            leader_failed: BTreeSet::new(),
            last_server: BTreeMap::new(),
        };
        for id in ids {
            let me = world.incarnate(&id);
            world.nodes.push(Node {
                own: Ownership::new(me, shards),
                crashed: false,
                paused: false,
                deadline_passed: false,
                lapsed: false,
                adopted: None,
                draining: BTreeSet::new(),
            });
        }
        world
    }

    /// A new incarnation of `node`, announced to the membership.
    fn incarnate(&mut self, node: &NodeId) -> Incarnate {
        let me = Incarnate {
            node: node.clone(),
            incarnation: self.next_incarnation,
        };
        self.next_incarnation += 1;
        self.joined.insert(me.clone());
        me
    }

    /// Gone for good, as the leader knows it: declared failed, or superseded by a newer
    /// incarnation of the same node that the leader has seen.
    fn leader_knows_gone(&self, who: &Incarnate) -> bool {
        self.leader_failed.contains(who)
            || self
                .leader_joined
                .iter()
                .any(|j| j.node == who.node && j.incarnation > who.incarnation)
    }

    fn latest(&self) -> &Placement {
        self.placements.last().expect("version 0 is always there")
    }

    fn apply(&mut self, node: usize, actions: Vec<Action>) -> Result<(), TestCaseError> {
        for action in actions {
            match action {
                Action::Drain { shard } => {
                    self.nodes[node].draining.insert(shard);
                }
                Action::Serve { shard, epoch } => {
                    let me = self.nodes[node].own.me().clone();
                    if let Some((before, earlier)) = self.last_server.get(&shard)
                        && *before != me
                    {
                        prop_assert!(
                            epoch > *earlier,
                            "{me:?} serves shard {shard} at epoch {epoch}, after {before:?} at {earlier}"
                        );
                    }
                    self.last_server.insert(shard, (me, epoch));
                }
            }
        }
        Ok(())
    }

    fn adopt(&mut self, i: usize, latest: bool) -> Result<(), TestCaseError> {
        let node = &self.nodes[i];
        if !node.running() {
            return Ok(());
        }
        let last = self.placements.len() - 1;
        let next = match node.adopted {
            _ if latest => last,
            None => 0,
            Some(done) if done < last => done + 1,
            Some(_) => return Ok(()),
        };
        let placement = self.placements[next].clone();
        let actions = self.nodes[i].own.adopt(&placement);
        let n = &mut self.nodes[i];
        n.adopted = Some(next.max(n.adopted.unwrap_or(0)));
        self.apply(i, actions)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Assign(seed) => {
                // Live in the leader's view: joined, not known gone.
                let live: Vec<Incarnate> = self
                    .leader_joined
                    .iter()
                    .filter(|j| !self.leader_knows_gone(j))
                    .cloned()
                    .collect();
                let owners: Vec<Option<Incarnate>> = (0..SHARDS as usize)
                    .map(|s| {
                        if live.is_empty() || (seed & 0x80 != 0 && s % 3 == 0) {
                            None
                        } else {
                            Some(live[(s + seed as usize) % live.len()].clone())
                        }
                    })
                    .collect();
                let next = self.latest().next(&owners, |p| self.leader_knows_gone(p));
                self.placements.push(next);
            }
            Op::Settle => {
                let latest = self.latest().clone();
                let settled = latest.settle(
                    |who, shard| {
                        // Asked over the network: only a running node of that incarnation
                        // answers.
                        self.nodes.iter().any(|n| {
                            n.running()
                                && n.own.me() == who
                                && n.own.has_released(shard, latest.version)
                        })
                    },
                    |p| self.leader_knows_gone(p),
                );
                if let Some(next) = settled {
                    self.placements.push(next);
                }
            }
            Op::LeaderView => {
                self.leader_joined = self.joined.clone();
                self.leader_failed = self.failed.clone();
            }
            Op::NewLeader => {
                self.leader_joined.clear();
                self.leader_failed.clear();
            }
            Op::Adopt { node, latest } => self.adopt(node, latest)?,
            Op::Drain { node, pick } => {
                let n = &mut self.nodes[node];
                if !n.running() || n.draining.is_empty() {
                    return Ok(());
                }
                let shard = *n
                    .draining
                    .iter()
                    .nth(pick % n.draining.len())
                    .expect("not empty");
                n.draining.remove(&shard);
                let actions = n.own.drained(shard);
                self.apply(node, actions)?;
            }
            Op::Pause(node) => {
                if !self.nodes[node].crashed {
                    self.nodes[node].paused = true;
                }
            }
            Op::DeadlinePassed(node) => {
                if self.nodes[node].paused {
                    self.nodes[node].deadline_passed = true;
                }
            }
            Op::DeclareFailed(node) => {
                let n = &self.nodes[node];
                if n.crashed || n.deadline_passed || n.lapsed {
                    self.failed.insert(n.own.me().clone());
                }
            }
            Op::Resume(node) => {
                let n = &mut self.nodes[node];
                if !n.paused {
                    return Ok(());
                }
                n.paused = false;
                if std::mem::take(&mut n.deadline_passed) {
                    n.lapsed = true;
                    let actions = n.own.lapse();
                    self.apply(node, actions)?;
                }
            }
            Op::Renew(node) => {
                let n = &self.nodes[node];
                if !n.running() || !n.lapsed {
                    return Ok(());
                }
                let id = self.ids[node].clone();
                let me = self.incarnate(&id);
                let latest = self.latest().clone();
                let n = &mut self.nodes[node];
                n.lapsed = false;
                n.adopted = Some(self.placements.len() - 1);
                let actions = n.own.renewed(me, &latest);
                self.apply(node, actions)?;
            }
            Op::Crash(node) => {
                let n = &mut self.nodes[node];
                n.crashed = true;
                n.paused = false;
                n.deadline_passed = false;
            }
            Op::Restart(node) => {
                if !self.nodes[node].crashed {
                    return Ok(());
                }
                let id = self.ids[node].clone();
                let me = self.incarnate(&id);
                self.nodes[node] = Node {
                    own: Ownership::new(me, self.shards),
                    crashed: false,
                    paused: false,
                    deadline_passed: false,
                    lapsed: false,
                    adopted: None,
                    draining: BTreeSet::new(),
                };
            }
        }
        Ok(())
    }

    /// No shard is accepted by two nodes that can answer (running, not past their deadline).
    fn check_one_server(&self) -> Result<(), TestCaseError> {
        for shard in self.shards.shards() {
            let servers: Vec<&Incarnate> = self
                .nodes
                .iter()
                .filter(|n| n.running() && !n.deadline_passed)
                .filter(|n| {
                    matches!(
                        n.own.decide(shard, MapVersion::new(0)),
                        Decision::Accept { .. }
                    )
                })
                .map(|n| n.own.me())
                .collect();
            prop_assert!(servers.len() <= 1, "shard {shard} served by {servers:?}");
        }
        Ok(())
    }

    /// Faults stop: everyone runs and renews, the leader's view catches up, placements are
    /// adopted, drains finish and moves settle until nothing changes.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for i in 0..NODES {
            self.step(&Op::Resume(i))?;
            self.step(&Op::Restart(i))?;
            self.step(&Op::Renew(i))?;
        }
        // Incarnations that no longer run are found failed.
        for n in &self.nodes {
            for j in &self.joined {
                if j.node == n.own.me().node && j.incarnation < n.own.me().incarnation {
                    self.failed.insert(j.clone());
                }
            }
        }
        self.step(&Op::LeaderView)?;
        self.step(&Op::Assign(0))?;
        for _ in 0..4 {
            for i in 0..NODES {
                self.adopt(i, true)?;
                while !self.nodes[i].draining.is_empty() {
                    self.step(&Op::Drain { node: i, pick: 0 })?;
                }
            }
            self.step(&Op::Settle)?;
        }
        for i in 0..NODES {
            self.adopt(i, true)?;
        }
        Ok(())
    }

    fn check_settled(&self) -> Result<(), TestCaseError> {
        let latest = self.latest();
        for shard in self.shards.shards() {
            let slot = latest.slot(shard).expect("in range");
            prop_assert!(
                slot.moving_from.is_none(),
                "shard {shard} still moving: {slot:?}"
            );
            for node in &self.nodes {
                let state = node.own.state(shard);
                if slot.owner.as_ref() == Some(node.own.me()) {
                    prop_assert!(
                        matches!(state, ShardState::Serving { .. }),
                        "{:?} should serve shard {shard}, is {state:?}",
                        node.own.me()
                    );
                } else {
                    prop_assert_eq!(state, ShardState::NotOwned);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn one_server_per_shard_under_any_interleaving(ops in prop::collection::vec(op(), 0..250)) {
        let mut world = World::new();
        world.step(&Op::LeaderView)?;
        for op in &ops {
            world.step(op)?;
            world.check_one_server()?;
        }
        world.settle()?;
        world.check_one_server()?;
        world.check_settled()?;
    }
}
