//! Placement: pinned hash vectors, the original 3-node example, and property tests of
//! [`assign_shards`] on random membership histories.
//!
//! Properties (each would fail for a placement that lacks it):
//! - `equal_weights_are_balanced_within_one`: max − min ≤ 1 shard;
//! - `weighted_counts_are_within_one_of_the_fair_share`: `|count − S·w/W| < 1`;
//! - `a_join_moves_at_most_the_lower_bound_plus_one_percent`: ≤ ⌈S/(n+1)⌉ + ⌈S/100⌉ (and in fact
//!   exactly the newcomer's shards);
//! - `a_leave_moves_at_most_the_leavers_shards_plus_one_percent` (in fact exactly those);
//! - `any_change_moves_the_fewest_shards_a_balanced_map_can`: the exact lower bound, computed
//!   here independently, for arbitrary weighted membership changes;
//! - `member_order_does_not_matter`, `no_change_means_no_moves`,
//!   `every_shard_belongs_to_a_live_member`, `shard_for_is_in_range`,
//!   `moves_replay_and_json_round_trip`.

use std::collections::BTreeMap;

use aether_core::{
    ActorId, Member, NodeId, PlacementError, ShardCount, ShardId, ShardMap, ShardMove,
    assign_shards, shard_for, shard_moves,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Node ids are drawn from `node-0 ..= node-{POOL-1}`.
const POOL: u32 = 40;

fn node(i: u32) -> NodeId {
    NodeId::new(format!("node-{i}")).unwrap()
}

fn count(n: u32) -> ShardCount {
    ShardCount::new(n).unwrap()
}

/// Membership as node index → weight.
type Members = BTreeMap<u32, u32>;

fn to_members(members: &Members) -> Vec<Member> {
    members
        .iter()
        .map(|(&i, &w)| Member::new(node(i)).with_weight(w))
        .collect()
}

fn assign(previous: Option<&ShardMap>, members: &Members, shards: ShardCount) -> ShardMap {
    assign_shards(previous, &to_members(members), shards).unwrap()
}

/// The map after a history of memberships, each step computed from the one before: a
/// "lived-in" map rather than a fresh one.
fn lived_in(history: &[Members], shards: ShardCount) -> Option<ShardMap> {
    history.iter().fold(None, |prev, members| {
        Some(assign(prev.as_ref(), members, shards))
    })
}

fn shard_counts() -> impl Strategy<Value = ShardCount> {
    prop_oneof![
        1 => Just(count(100)),
        1 => Just(count(1024)),
        3 => (1u32..=2048).prop_map(count),
    ]
}

fn equal_members(max: usize) -> impl Strategy<Value = Members> {
    prop::collection::btree_map(0..POOL, Just(1u32), 1..=max)
}

fn weighted_members(max: usize) -> impl Strategy<Value = Members> {
    prop::collection::btree_map(0..POOL, 0u32..=6, 1..=max)
}

fn ceil_div(a: u32, b: u32) -> u32 {
    a.div_ceil(b)
}

fn moved(from: &ShardMap, to: &ShardMap) -> u32 {
    shard_moves(from, to).len() as u32
}

/// Per member (weight > 0 or not), its shard count in `map`.
fn counts(map: &ShardMap, members: &Members) -> Vec<u32> {
    members.keys().map(|&i| map.count_of(&node(i))).collect()
}

/// The fewest shards any perfectly balanced map for `members` can move from `previous`,
/// computed from first principles: a balanced count is `⌊S·w/W⌋`, or one more for exactly `L`
/// members with a non-zero remainder; a member keeps at most `min(held, count)` shards.
fn balanced_lower_bound(previous: &ShardMap, members: &Members, shards: ShardCount) -> u32 {
    let s = u64::from(shards.get());
    let total: u64 = members.values().map(|&w| u64::from(w)).sum();
    let (mut kept, mut floors, mut would_gain) = (0u64, 0u64, 0u64);
    for (&i, &w) in members {
        if w == 0 {
            continue;
        }
        let held = u64::from(previous.count_of(&node(i)));
        let (floor, rem) = (s * u64::from(w) / total, s * u64::from(w) % total);
        floors += floor;
        kept += held.min(floor);
        if rem > 0 && held > floor {
            would_gain += 1;
        }
    }
    let leftover = s - floors;
    (s - kept - leftover.min(would_gain)) as u32
}

#[test]
fn three_nodes_and_one_hundred_shards_give_33_33_34() {
    let members = Members::from([(1, 1), (2, 1), (3, 1)]);
    let map = assign(None, &members, count(100));
    let mut c = counts(&map, &members);
    c.sort_unstable();
    assert_eq!(c, [33, 33, 34]);
    assert!(map.is_complete());
}

#[test]
fn shard_for_is_pinned() {
    // Computed independently from the documented algorithm (FNV-1a 64, fmix64,
    // multiply-shift). If this test fails, actors would move on upgrade: do not update the
    // numbers, restore the algorithm.
    let cases = [
        ("account-42", 128, 12, 8236),
        ("a", 522, 51, 33442),
        ("order.2024.17", 421, 41, 26958),
        ("user@example.com", 611, 59, 39137),
        ("ünïcödé", 28, 2, 1835),
    ];
    for (id, s1024, s100, s65536) in cases {
        let actor = ActorId::new(id).unwrap();
        assert_eq!(shard_for(&actor, count(1024)).get(), s1024, "{id}");
        assert_eq!(shard_for(&actor, count(100)).get(), s100, "{id}");
        assert_eq!(shard_for(&actor, count(65_536)).get(), s65536, "{id}");
        assert_eq!(shard_for(&actor, count(1)).get(), 0, "{id}");
    }
    let long = ActorId::new("x".repeat(255)).unwrap();
    assert_eq!(shard_for(&long, count(1024)).get(), 100);
}

#[test]
fn shard_for_spreads_sequential_ids_evenly() {
    let shards = count(1024);
    let mut per_shard = vec![0u32; 1024];
    for i in 0..102_400 {
        let actor = ActorId::new(format!("user-{i}")).unwrap();
        per_shard[shard_for(&actor, shards).get() as usize] += 1;
    }
    // 100 per shard on average; a binomial spread stays far inside 40..160.
    let (min, max) = (per_shard.iter().min(), per_shard.iter().max());
    assert!(
        *min.unwrap() > 40 && *max.unwrap() < 160,
        "{min:?}..{max:?}"
    );
}

#[test]
fn no_live_member_gives_an_unassigned_map() {
    let shards = count(16);
    let map = assign_shards(None, &[], shards).unwrap();
    assert_eq!(map, ShardMap::unassigned(shards));
    assert_eq!(map.owner(ShardId::new(0)), None);

    let previous = assign(None, &Members::from([(1, 1), (2, 1)]), shards);
    let drained = assign(Some(&previous), &Members::from([(1, 0), (2, 0)]), shards);
    assert_eq!(drained.unassigned_shards().count(), 16);
    let moves = shard_moves(&previous, &drained);
    assert_eq!(moves.len(), 16);
    assert!(moves.iter().all(|m| m.to.is_none()));
}

#[test]
fn weight_zero_drains_a_node_and_moves_only_its_shards() {
    let shards = count(1024);
    let before = assign(None, &Members::from([(1, 1), (2, 1), (3, 1)]), shards);
    let after = assign(
        Some(&before),
        &Members::from([(1, 1), (2, 1), (3, 0)]),
        shards,
    );
    assert_eq!(after.count_of(&node(3)), 0);
    assert_eq!(moved(&before, &after), before.count_of(&node(3)));
}

#[test]
fn invalid_requests_are_typed_errors() {
    let dup = [
        Member::new(node(1)),
        Member::new(node(2)),
        Member::new(node(1)),
    ];
    assert_eq!(
        assign_shards(None, &dup, count(8)),
        Err(PlacementError::DuplicateMember { node: node(1) })
    );
    let previous = assign(None, &Members::from([(1, 1)]), count(8));
    assert_eq!(
        assign_shards(Some(&previous), &[Member::new(node(1))], count(9)),
        Err(PlacementError::ShardCountMismatch {
            previous: count(8),
            requested: count(9)
        })
    );
    assert!(matches!(
        ShardCount::new(0),
        Err(PlacementError::ShardCountOutOfRange { requested: 0, .. })
    ));
}

#[test]
fn stale_and_out_of_range_moves_are_refused() {
    let map = assign(None, &Members::from([(1, 1), (2, 1)]), count(4));
    let owner = map.owner(ShardId::new(0)).unwrap().clone();
    let other = if owner == node(1) { node(2) } else { node(1) };
    let stale = ShardMove {
        shard: ShardId::new(0),
        from: Some(other.clone()),
        to: Some(owner.clone()),
    };
    let err = map.apply_moves([&stale]).unwrap_err();
    assert_eq!(
        err,
        PlacementError::StaleMove {
            shard: ShardId::new(0),
            expected: Some(other),
            actual: Some(owner.clone()),
        }
    );
    assert!(err.to_string().contains("recompute"), "{err}");
    let beyond = ShardMove {
        shard: ShardId::new(4),
        from: None,
        to: Some(owner),
    };
    assert!(matches!(
        map.apply_moves([&beyond]),
        Err(PlacementError::ShardOutOfRange { .. })
    ));
}

#[test]
fn the_map_serializes_compactly() {
    let shards = count(1024);
    let members: Members = (0..10).map(|i| (i, 1)).collect();
    let map = assign(None, &members, shards);
    let json = serde_json::to_string(&map).unwrap();
    assert!(json.len() < 4 * 1024 + 200, "{} bytes", json.len());
    assert_eq!(serde_json::from_str::<ShardMap>(&json).unwrap(), map);
}

proptest! {
    #[test]
    fn equal_weights_are_balanced_within_one(
        shards in shard_counts(),
        history in prop::collection::vec(equal_members(30), 0..4),
        members in equal_members(30),
    ) {
        let previous = lived_in(&history, shards);
        let map = assign(previous.as_ref(), &members, shards);
        let c = counts(&map, &members);
        let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        prop_assert!(max - min <= 1, "counts {c:?}");
        prop_assert_eq!(c.iter().sum::<u32>(), shards.get());
    }

    #[test]
    fn weighted_counts_are_within_one_of_the_fair_share(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 0..4),
        members in weighted_members(20),
    ) {
        let previous = lived_in(&history, shards);
        let map = assign(previous.as_ref(), &members, shards);
        let total: u64 = members.values().map(|&w| u64::from(w)).sum();
        if total == 0 {
            prop_assert_eq!(map, ShardMap::unassigned(shards));
            return Ok(());
        }
        for (&i, &w) in &members {
            let got = u64::from(map.count_of(&node(i)));
            let fair = u64::from(shards.get()) * u64::from(w);
            // |got − fair/total| < 1  ⇔  |got·total − fair| < total
            prop_assert!(got * total < fair + total && fair < (got + 1) * total,
                "node-{} weight {} got {} of {} (total weight {})", i, w, got, shards, total);
        }
    }

    #[test]
    fn a_join_moves_at_most_the_lower_bound_plus_one_percent(
        shards in shard_counts(),
        history in prop::collection::vec(equal_members(30), 1..4),
        newcomer in any::<Index>(),
    ) {
        let members = history.last().unwrap().clone();
        let outside: Vec<u32> = (0..POOL).filter(|i| !members.contains_key(i)).collect();
        let newcomer = *newcomer.get(&outside);
        let before = lived_in(&history, shards).unwrap();
        let mut joined = members.clone();
        joined.insert(newcomer, 1);
        let after = assign(Some(&before), &joined, shards);
        let n = members.len() as u32;
        let moves = moved(&before, &after);
        prop_assert!(moves <= ceil_div(shards.get(), n + 1) + ceil_div(shards.get(), 100),
            "{} moves for {} → {} nodes, {} shards", moves, n, n + 1, shards);
        prop_assert_eq!(moves, after.count_of(&node(newcomer)), "only the newcomer's shards move");
    }

    #[test]
    fn a_leave_moves_at_most_the_leavers_shards_plus_one_percent(
        shards in shard_counts(),
        history in prop::collection::vec(equal_members(30), 1..4),
        leaver in any::<Index>(),
    ) {
        let members = history.last().unwrap().clone();
        let before = lived_in(&history, shards).unwrap();
        let leaver = *leaver.get(&members.keys().copied().collect::<Vec<_>>());
        let mut left = members;
        left.remove(&leaver);
        let after = assign(Some(&before), &left, shards);
        let moves = moved(&before, &after);
        let held = before.count_of(&node(leaver));
        prop_assert!(moves <= held + ceil_div(shards.get(), 100),
            "{} moves, the leaver held {}", moves, held);
        prop_assert_eq!(moves, held, "only the leaver's shards move");
    }

    #[test]
    fn any_change_moves_the_fewest_shards_a_balanced_map_can(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 1..4),
        members in weighted_members(20),
    ) {
        let before = lived_in(&history, shards).unwrap();
        prop_assume!(members.values().any(|&w| w > 0));
        let after = assign(Some(&before), &members, shards);
        prop_assert_eq!(moved(&before, &after), balanced_lower_bound(&before, &members, shards));
    }

    #[test]
    fn member_order_does_not_matter(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 0..3),
        members in weighted_members(20),
        seed in any::<u64>(),
    ) {
        let previous = lived_in(&history, shards);
        let sorted = to_members(&members);
        let mut shuffled = sorted.clone();
        // A seeded Fisher–Yates shuffle.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = assign_shards(previous.as_ref(), &sorted, shards).unwrap();
        let b = assign_shards(previous.as_ref(), &shuffled, shards).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }

    #[test]
    fn no_change_means_no_moves(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 1..4),
    ) {
        let map = lived_in(&history, shards).unwrap();
        let again = assign(Some(&map), history.last().unwrap(), shards);
        prop_assert_eq!(moved(&map, &again), 0);
        prop_assert_eq!(again, map);
    }

    #[test]
    fn every_shard_belongs_to_a_live_member(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 0..4),
        members in weighted_members(20),
    ) {
        let previous = lived_in(&history, shards);
        let map = assign(previous.as_ref(), &members, shards);
        let live: Vec<NodeId> =
            members.iter().filter(|(_, w)| **w > 0).map(|(&i, _)| node(i)).collect();
        prop_assert_eq!(map.is_complete(), !live.is_empty());
        for (shard, owner) in map.iter() {
            if let Some(owner) = owner {
                prop_assert!(live.contains(owner), "shard {} owned by {}", shard, owner);
            }
        }
        prop_assert_eq!(map.iter().len() as u32, shards.get());
    }

    #[test]
    fn shard_for_is_in_range(id in "[a-zA-Z0-9_.@ü-]{1,40}", shards in 1u32..=65_536) {
        if let Ok(actor) = ActorId::new(&id) {
            let shards = count(shards);
            let shard = shard_for(&actor, shards);
            prop_assert!(shards.contains(shard));
            prop_assert_eq!(shard_for(&actor, shards), shard);
        }
    }

    #[test]
    fn moves_replay_and_json_round_trip(
        shards in shard_counts(),
        history in prop::collection::vec(weighted_members(20), 0..3),
        members in weighted_members(20),
        actor in "[a-z]{1,12}",
    ) {
        let before = lived_in(&history, shards).unwrap_or_else(|| ShardMap::unassigned(shards));
        let after = assign(Some(&before), &members, shards);
        let moves = shard_moves(&before, &after);
        prop_assert_eq!(&before.apply_moves(&moves).unwrap(), &after);
        let json = serde_json::to_string(&after).unwrap();
        let back: ShardMap = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &after);
        let actor = ActorId::new(actor).unwrap();
        prop_assert_eq!(after.owner_of(&actor), after.owner(shard_for(&actor, shards)));
        let per_node: u32 = after.nodes().map(|(n, c)| {
            assert_eq!(after.shards_of(n).count() as u32, c);
            c
        }).sum();
        prop_assert_eq!(per_node as usize, shards.get() as usize - after.unassigned_shards().count());
    }

    #[test]
    fn node_ids_follow_the_documented_rules(id in "[a-zA-Z0-9_.* é/-]{0,70}") {
        let ok = !id.is_empty()
            && id.len() <= NodeId::MAX_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        prop_assert_eq!(NodeId::new(&id).is_ok(), ok, "{:?}", id);
    }
}
