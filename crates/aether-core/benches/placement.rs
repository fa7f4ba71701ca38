//! Placement benchmark (issue 6 item 9): shard movement and balance over 50 random join/leave
//! steps against the lower bound, the cost of `shard_for` + `owner_of` next to baselines, and
//! the cost of one `assign_shards`.
//!
//! Run with `cargo bench -p aether-core --bench placement`. Plain `std::time::Instant` timing
//! (best of several rounds), so the whole report fits in one compact table; the membership
//! sequence comes from a fixed-seed xorshift, so the movement figures are reproducible exactly.

use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use aether_core::{
    ActorId, Member, NodeId, ShardCount, ShardMap, assign_shards, shard_for, shard_moves,
};

/// xorshift64*: a tiny deterministic generator (no `rand` needed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn node(i: u32) -> NodeId {
    NodeId::new(format!("node-{i}")).unwrap()
}

fn members(ids: &[u32]) -> Vec<Member> {
    ids.iter().map(|&i| Member::new(node(i))).collect()
}

/// One membership change.
#[derive(Clone, Copy)]
enum Step {
    Join(u32),
    Leave(u32),
}

/// The fewest shards any perfectly balanced map can move from `previous` to serve `ids`
/// (equal weights): members keep at most `min(held, ⌊S/n⌋)`, plus one each for up to
/// `S mod n` members that hold more than the floor.
fn lower_bound(previous: &ShardMap, ids: &[u32], shards: ShardCount) -> u32 {
    let (s, n) = (shards.get(), ids.len() as u32);
    let (floor, extra) = (s / n, s % n);
    let held: Vec<u32> = ids.iter().map(|&i| previous.count_of(&node(i))).collect();
    let kept: u32 = held.iter().map(|&h| h.min(floor)).sum();
    let over = held.iter().filter(|&&h| h > floor).count() as u32;
    s - kept - if extra > 0 { extra.min(over) } else { 0 }
}

/// Per-step figures for one shard count.
struct Row {
    moved: u32,
    bound: u32,
    spread: u32,
}

fn simulate(steps: &[Step], start: &[u32], shards: ShardCount) -> Vec<Row> {
    let mut ids = start.to_vec();
    let mut map = assign_shards(None, &members(&ids), shards).unwrap();
    let mut rows = Vec::new();
    for step in steps {
        match *step {
            Step::Join(i) => ids.push(i),
            Step::Leave(i) => ids.retain(|&x| x != i),
        }
        let next = assign_shards(Some(&map), &members(&ids), shards).unwrap();
        let counts: Vec<u32> = ids.iter().map(|&i| next.count_of(&node(i))).collect();
        rows.push(Row {
            moved: shard_moves(&map, &next).len() as u32,
            bound: lower_bound(&map, &ids, shards),
            spread: counts.iter().max().unwrap() - counts.iter().min().unwrap(),
        });
        map = next;
    }
    rows
}

fn movement() {
    let mut rng = XorShift(0x5eed_0000_0000_0006);
    let start_n = 3 + rng.below(3) as u32;
    let start: Vec<u32> = (1..=start_n).collect();
    let mut ids = start.clone();
    let mut next_id = start_n + 1;
    let mut steps = Vec::new();
    for _ in 0..50 {
        let join = ids.len() <= 2 || (ids.len() < 12 && rng.below(2) == 0);
        if join {
            steps.push(Step::Join(next_id));
            ids.push(next_id);
            next_id += 1;
        } else {
            let leaver = ids[rng.below(ids.len() as u64) as usize];
            steps.push(Step::Leave(leaver));
            ids.retain(|&x| x != leaver);
        }
    }
    let sizes = [
        ShardCount::new(1024).unwrap(),
        ShardCount::new(100).unwrap(),
    ];
    let runs: Vec<Vec<Row>> = sizes.iter().map(|&s| simulate(&steps, &start, s)).collect();

    println!(
        "## Movement over 50 join/leave steps (seed 0x5eed000000000006, start {start_n} nodes)"
    );
    println!();
    println!("lower bound = fewest moves any perfectly balanced map allows (join: the newcomer's");
    println!(
        "⌊S/(n+1)⌋ or ⌈S/(n+1)⌉; leave: the leaver's shards); spread = max − min shards per node"
    );
    println!();
    println!(
        "| step | change | nodes | S=1024 moved | bound | spread | S=100 moved | bound | spread |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut n = start.len();
    for (k, step) in steps.iter().enumerate() {
        let (label, before) = match step {
            Step::Join(i) => (format!("+node-{i}"), n),
            Step::Leave(i) => (format!("-node-{i}"), n),
        };
        n = if matches!(step, Step::Join(_)) {
            n + 1
        } else {
            n - 1
        };
        let (a, b) = (&runs[0][k], &runs[1][k]);
        println!(
            "| {} | {label} | {before}→{n} | {} | {} | {} | {} | {} | {} |",
            k + 1,
            a.moved,
            a.bound,
            a.spread,
            b.moved,
            b.bound,
            b.spread
        );
    }
    println!();
    println!(
        "| S | total moved | total lower bound | excess | spec bound Σ(⌈S/(n+1)⌉ or leaver) + 1 %/step | max spread |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (shards, rows) in sizes.iter().zip(&runs) {
        let moved: u32 = rows.iter().map(|r| r.moved).sum();
        let bound: u32 = rows.iter().map(|r| r.bound).sum();
        let mut n = start.len() as u32;
        let mut spec = 0;
        for (step, row) in steps.iter().zip(rows) {
            let one_percent = shards.get().div_ceil(100);
            spec += one_percent
                + match step {
                    Step::Join(_) => shards.get().div_ceil(n + 1),
                    Step::Leave(_) => row.bound,
                };
            n = if matches!(step, Step::Join(_)) {
                n + 1
            } else {
                n - 1
            };
        }
        let spread = rows.iter().map(|r| r.spread).max().unwrap();
        println!(
            "| {shards} | {moved} | {bound} | {} | {spec} | {spread} |",
            moved - bound
        );
    }
    println!();
}

/// Best time per item over `rounds` runs of `f` over `items` items.
fn best_ns(rounds: u32, items: usize, mut f: impl FnMut() -> u64) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        black_box(f());
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / items as f64
}

fn lookups() {
    const N: usize = 1_000_000;
    let shards = ShardCount::DEFAULT;
    let map = assign_shards(None, &members(&(1..=10).collect::<Vec<_>>()), shards).unwrap();
    let ids: Vec<ActorId> = (0..N)
        .map(|i| ActorId::new(format!("account-{i:08}")).unwrap())
        .collect();
    let table: Vec<u32> = (0..shards.get()).collect();
    let fold = foldhash::fast::FixedState::with_seed(0);

    let index = best_ns(5, N, || {
        ids.iter()
            .enumerate()
            .map(|(i, _)| u64::from(table[i & 1023]))
            .sum()
    });
    let fold_ns = best_ns(5, N, || {
        ids.iter()
            .map(|id| fold.hash_one(black_box(id.as_str())))
            .fold(0, u64::wrapping_add)
    });
    let sip = best_ns(5, N, || {
        ids.iter()
            .map(|id| {
                let mut h = DefaultHasher::new();
                black_box(id.as_str()).hash(&mut h);
                h.finish()
            })
            .fold(0, u64::wrapping_add)
    });
    let shard = best_ns(5, N, || {
        ids.iter()
            .map(|id| u64::from(shard_for(black_box(id), shards).get()))
            .sum()
    });
    let owner = best_ns(5, N, || {
        ids.iter()
            .map(|id| {
                map.owner_of(black_box(id))
                    .map_or(0, |n| n.as_str().len() as u64)
            })
            .sum()
    });

    println!(
        "## Lookup cost (1 M ids `account-00000000`…, 16 bytes; S = 1024, 10 nodes; best of 5)"
    );
    println!();
    println!("| operation | ns/op |");
    println!("|---|---:|");
    println!("| baseline: Vec index `table[i & 1023]` | {index:.2} |");
    println!("| baseline: foldhash (fixed seed) of the id | {fold_ns:.2} |");
    println!("| baseline: std `DefaultHasher` (SipHash-1-3) of the id | {sip:.2} |");
    println!("| `shard_for` (FNV-1a + fmix64 + multiply-shift) | {shard:.2} |");
    println!("| `ShardMap::owner_of` (shard_for + lookup) | {owner:.2} |");
    println!();
}

fn assign_cost() {
    let shards = ShardCount::DEFAULT;
    println!("## `assign_shards` cost (S = 1024; best of 5 rounds)");
    println!();
    println!("| nodes | fresh (no previous) | join (n−1 → n) | leave (n+1 → n) | no change |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [10u32, 100] {
        let all = members(&(1..=n + 1).collect::<Vec<_>>());
        let (now, fewer) = (&all[..n as usize], &all[..n as usize - 1]);
        let prev_fewer = assign_shards(None, fewer, shards).unwrap();
        let prev_more = assign_shards(None, &all, shards).unwrap();
        let prev_same = assign_shards(None, now, shards).unwrap();
        let iters = if n == 10 { 2_000 } else { 300 };
        let time = |previous: Option<&ShardMap>| {
            best_ns(5, iters, || {
                (0..iters)
                    .map(|_| {
                        let map = assign_shards(previous, black_box(now), shards).unwrap();
                        u64::from(map.count_of(&now[0].id))
                    })
                    .sum()
            }) / 1000.0
        };
        println!(
            "| {n} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            time(None),
            time(Some(&prev_fewer)),
            time(Some(&prev_more)),
            time(Some(&prev_same))
        );
    }
    println!();
}

fn main() {
    // `cargo test --benches` / `cargo bench -- --test` only check that the bench builds and runs.
    let quick = std::env::args().any(|a| a == "--test");
    movement();
    if quick {
        return;
    }
    lookups();
    assign_cost();
}
