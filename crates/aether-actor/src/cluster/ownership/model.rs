//! A model cluster driving the protocol through random interleavings: a leader with a lagging
//! membership view writing placements and settling moves (and replaced by a new leader that
//! starts with an empty view), nodes adopting placements late or skipping some, drains that
//! take their time, nodes paused past their deadline (zombies) then resumed and renewed as
//! new incarnations, nodes crashed and restarted. Clients send commands (with ids, retried
//! after `Moved`, conflicts and lost answers) to the owner in whatever placement they know;
//! nodes activate actors with a fence record and write events with their epoch to a model of
//! JetStream's per-subject expected-sequence check and the store's epoch rule (a write on a
//! head of a higher epoch is `Fenced`, never re-sent); commands accepted before a pause are
//! written after it (a zombie). After every step: **no shard is served by two nodes that can
//! answer**, and each shard's successive servers have growing epochs. At the end, once faults
//! stop and every command was answered: every shard is served by its owner in the last
//! placement; every acknowledged command's event is stored exactly once; no command is
//! stored twice; every event carries the epoch of the fence before it (one writer at a time).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    /// A client has a new command (with a new id) to send.
    NewCommand,
    /// A client sends a pending command to the owner in a placement it knows (`via` picks
    /// it: not necessarily the newest).
    Send {
        pick: usize,
        via: usize,
    },
    /// A node runs the next command it accepted; its answer may be lost on the way.
    Execute {
        node: usize,
        lose_answer: bool,
    },
    /// A zombie in the making: the node is paused past its deadline and declared failed; the
    /// leader learns it, gives everything to the others and settles; they adopt it.
    Takeover(usize),
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
        2 => node.clone().prop_map(Op::Restart),
        3 => Just(Op::NewCommand),
        8 => (any::<usize>(), any::<usize>()).prop_map(|(pick, via)| Op::Send { pick, via }),
        8 => (node.clone(), any::<bool>()).prop_map(|(node, lose_answer)| Op::Execute { node, lose_answer }),
        2 => node.prop_map(Op::Takeover),
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
    /// Active actors (one per shard in this model): what their activation read.
    active: BTreeMap<ShardId, Active>,
    /// Commands accepted and not yet run: (shard, command id, epoch it was accepted under).
    accepted: VecDeque<(ShardId, u32, MapVersion)>,
}

/// An active actor: the head it has observed, its version, and the commands its history
/// holds.
struct Active {
    epoch: MapVersion,
    seq: usize,
    version: u64,
    applied: BTreeSet<u32>,
    /// Its fence record is written (activation is load, then fence, in two steps).
    fenced: bool,
}

/// The commands an actor's history holds.
fn applied(log: &[Record]) -> BTreeSet<u32> {
    log.iter()
        .filter_map(|r| match r {
            Record::Event { command, .. } => Some(*command),
            Record::Fence { .. } => None,
        })
        .collect()
}

/// One record of an actor's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Fence {
        epoch: MapVersion,
    },
    Event {
        epoch: MapVersion,
        command: u32,
        version: u64,
    },
}

impl Record {
    fn epoch(self) -> MapVersion {
        match self {
            Self::Fence { epoch } | Self::Event { epoch, .. } => epoch,
        }
    }
}

/// The store's answer to a write expecting `seq`, as the JetStream store does it: refused on
/// a head of a higher epoch (`Fenced`); on an expected-sequence conflict it reads the head
/// and, unless that head is of a higher epoch, re-sends an event whose version is still above
/// the head's (the path a fence must stop); otherwise `Conflict`.
enum Write {
    Done,
    Fenced,
    Conflict,
}

fn head_epoch(log: &[Record]) -> MapVersion {
    log.last().map_or(MapVersion::new(0), |r| r.epoch())
}

fn head_version(log: &[Record]) -> u64 {
    log.iter()
        .rev()
        .find_map(|r| match r {
            Record::Event { version, .. } => Some(*version),
            Record::Fence { .. } => None,
        })
        .unwrap_or(0)
}

fn write(log: &mut Vec<Record>, seq: usize, seen_epoch: MapVersion, record: Record) -> Write {
    // The check on the head the writer has seen (read at activation; its own last record
    // after that).
    if seen_epoch > record.epoch() {
        return Write::Fenced;
    }
    if log.len() == seq {
        log.push(record);
        return Write::Done;
    }
    // Lost the race on the expected sequence: the store reads the head again.
    if head_epoch(log) > record.epoch() {
        return Write::Fenced;
    }
    match record {
        Record::Event { version, .. } if version > head_version(log) => {
            log.push(record);
            Write::Done
        }
        _ => Write::Conflict,
    }
}

impl Node {
    fn fresh(me: Incarnate, shards: ShardCount) -> Self {
        Self {
            own: Ownership::new(me, shards),
            crashed: false,
            paused: false,
            deadline_passed: false,
            lapsed: false,
            adopted: None,
            draining: BTreeSet::new(),
            active: BTreeMap::new(),
            accepted: VecDeque::new(),
        }
    }

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
    /// Per shard, the stream of its one actor.
    logs: Vec<Vec<Record>>,
    next_command: u32,
    /// Commands the client still waits on, and those answered.
    pending: BTreeSet<u32>,
    answered: BTreeSet<u32>,
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
            logs: vec![Vec::new(); SHARDS as usize],
            next_command: 0,
            pending: BTreeSet::new(),
            answered: BTreeSet::new(),
        };
        for id in ids {
            let me = world.incarnate(&id);
            world.nodes.push(Node::fresh(me, shards));
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
                // Draining finishes the commands already accepted first.
                let ready: Vec<ShardId> = n
                    .draining
                    .iter()
                    .filter(|s| !n.accepted.iter().any(|(a, _, _)| a == *s))
                    .copied()
                    .collect();
                if !n.running() || ready.is_empty() {
                    return Ok(());
                }
                let shard = ready[pick % ready.len()];
                n.draining.remove(&shard);
                n.active.remove(&shard);
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
                n.accepted.clear();
                n.active.clear();
                n.crashed = true;
                n.paused = false;
                n.deadline_passed = false;
            }
            Op::Takeover(node) => {
                self.step(&Op::Pause(node))?;
                self.step(&Op::DeadlinePassed(node))?;
                self.step(&Op::DeclareFailed(node))?;
                self.step(&Op::LeaderView)?;
                self.step(&Op::Assign(0))?;
                self.step(&Op::Settle)?;
                for other in (0..NODES).filter(|o| *o != node) {
                    self.adopt(other, true)?;
                }
            }
            Op::NewCommand => {
                self.pending.insert(self.next_command);
                self.next_command += 1;
            }
            Op::Send { pick, via } => {
                let Some(&command) = self.pending.iter().nth(pick % self.pending.len().max(1))
                else {
                    return Ok(());
                };
                let placement = &self.placements[via % self.placements.len()];
                let shard = ShardId::new(command % SHARDS);
                let Some(owner) = placement.slot(shard).and_then(|s| s.owner.clone()) else {
                    return Ok(());
                };
                let version = placement.version;
                // The request reaches the owner's node (whatever its incarnation now).
                let Some(n) = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.own.me().node == owner.node)
                else {
                    return Ok(());
                };
                if !n.running() || n.deadline_passed {
                    return Ok(()); // no answer: the client retries later
                }
                if let Decision::Accept { epoch } = n.own.decide(shard, version) {
                    n.accepted.push_back((shard, command, epoch));
                }
            }
            Op::Execute { node, lose_answer } => {
                let n = &mut self.nodes[node];
                if !n.running() {
                    return Ok(());
                }
                let Some((shard, command, epoch)) = n.accepted.pop_front() else {
                    return Ok(());
                };
                let log = &mut self.logs[shard.get() as usize];
                let Some(active) = n.active.get_mut(&shard) else {
                    // Activation, step 1: load.
                    let active = Active {
                        epoch,
                        seq: log.len(),
                        version: head_version(log),
                        applied: applied(log),
                        fenced: false,
                    };
                    n.active.insert(shard, active);
                    n.accepted.push_front((shard, command, epoch));
                    return Ok(());
                };
                if !active.fenced {
                    // Activation, step 2: fence, as the store does it — after the head it
                    // reads now, which another writer may have moved since the load. The
                    // version the fence reports then differs from the loaded one, and the
                    // actor loads again: the state must include what landed in between.
                    let (seq, seen) = (log.len(), head_epoch(log));
                    if let Write::Done = write(log, seq, seen, Record::Fence { epoch }) {
                        if head_version(log) != active.version {
                            active.version = head_version(log);
                            active.applied = applied(log);
                        }
                        active.seq = log.len();
                        active.fenced = true;
                        // The command runs at the node's next step: another writer may come
                        // in between (as a query's activation would let it).
                        n.accepted.push_front((shard, command, epoch));
                    } else {
                        // Fenced by a newer owner: no activation, the client retries.
                        n.active.remove(&shard);
                    }
                    return Ok(());
                }
                if active.epoch != epoch {
                    return Ok(()); // accepted under an earlier run of ownership: retried
                }
                let answered = if active.applied.contains(&command) {
                    true // a retry: answered from the command index, nothing written
                } else {
                    let record = Record::Event {
                        epoch,
                        command,
                        version: active.version + 1,
                    };
                    match write(log, active.seq, active.epoch, record) {
                        Write::Done => {
                            active.seq = log.len();
                            active.version += 1;
                            active.applied.insert(command);
                            true
                        }
                        Write::Fenced | Write::Conflict => {
                            // Never written past: the actor passivates, the client retries.
                            n.active.remove(&shard);
                            false
                        }
                    }
                };
                if answered && !lose_answer {
                    self.pending.remove(&command);
                    self.answered.insert(command);
                }
            }
            Op::Restart(node) => {
                if !self.nodes[node].crashed {
                    return Ok(());
                }
                let id = self.ids[node].clone();
                let me = self.incarnate(&id);
                self.nodes[node] = Node::fresh(me, self.shards);
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
                // In-flight commands first: a drain waits for them.
                while !self.nodes[i].accepted.is_empty() {
                    self.step(&Op::Execute {
                        node: i,
                        lose_answer: false,
                    })?;
                }
                while !self.nodes[i].draining.is_empty() {
                    self.step(&Op::Drain { node: i, pick: 0 })?;
                }
            }
            self.step(&Op::Settle)?;
        }
        for i in 0..NODES {
            self.adopt(i, true)?;
        }
        // Every command is answered: clients send to the newest placement, nodes run them.
        let newest = self.placements.len() - 1;
        for _ in 0..4 {
            for i in 0..NODES {
                while !self.nodes[i].accepted.is_empty() {
                    self.step(&Op::Execute {
                        node: i,
                        lose_answer: false,
                    })?;
                }
            }
            for pick in 0..self.pending.len() {
                self.step(&Op::Send { pick, via: newest })?;
            }
        }
        Ok(())
    }

    /// The stores' histories: every answered command stored exactly once, none twice, each
    /// event under the epoch of the fence before it.
    fn check_histories(&self) -> Result<(), TestCaseError> {
        let mut stored = BTreeMap::new();
        for (shard, log) in self.logs.iter().enumerate() {
            let mut fence = None;
            let mut last_version = 0;
            for record in log {
                match *record {
                    Record::Fence { epoch } => fence = Some(epoch),
                    Record::Event {
                        epoch,
                        command,
                        version,
                    } => {
                        prop_assert_eq!(
                            version,
                            last_version + 1,
                            "shard {}: command {} stored at version {} after version {}",
                            shard,
                            command,
                            version,
                            last_version
                        );
                        last_version = version;
                        prop_assert_eq!(
                            Some(epoch),
                            fence,
                            "shard {}: command {} written at epoch {} after the fence of {:?}",
                            shard,
                            command,
                            epoch,
                            fence
                        );
                        *stored.entry(command).or_insert(0) += 1;
                    }
                }
            }
        }
        for (command, count) in &stored {
            prop_assert_eq!(*count, 1, "command {} stored {} times", command, count);
        }
        for command in &self.answered {
            prop_assert!(
                stored.contains_key(command),
                "answered command {command} is not stored"
            );
        }
        prop_assert!(
            self.pending.is_empty(),
            "never answered: {:?}",
            self.pending
        );
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
        world.check_histories()?;
    }
}
