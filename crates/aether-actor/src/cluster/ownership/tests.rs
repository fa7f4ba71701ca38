use aether_cluster::MapVersion;
use aether_core::{NodeId, ShardCount, ShardId};

use super::{Action, Decision, Incarnate, Ownership, Placement, ShardSlot, ShardState};

fn who(node: &str, incarnation: u64) -> Incarnate {
    Incarnate {
        node: NodeId::new(node).expect("node id"),
        incarnation,
    }
}

fn one_shard() -> (ShardCount, ShardId) {
    (ShardCount::new(1).expect("count"), ShardId::new(0))
}

fn v(n: u64) -> MapVersion {
    MapVersion::new(n)
}

#[test]
fn a_failed_owner_is_not_waited_for() {
    let (shards, shard) = one_shard();
    let (a, b) = (who("a", 1), who("b", 1));
    let v1 = Placement::empty(shards).next(&[Some(a.clone())], |_| false);
    // a failed: the move to b is settled in the same placement, and b serves at once.
    let v2 = v1.next(&[Some(b.clone())], |p| *p == a);
    assert_eq!(v2.slot(shard).and_then(|s| s.moving_from.clone()), None);
    let mut node_b = Ownership::new(b, shards);
    assert_eq!(
        node_b.adopt(&v2),
        vec![Action::Serve { shard, epoch: v(2) }]
    );
}

#[test]
fn a_newer_incarnation_of_the_previous_owner_does_not_release_for_the_old_one() {
    let (shards, shard) = one_shard();
    let (a1, a2, b) = (who("a", 1), who("a", 2), who("b", 1));
    let v1 = Placement::empty(shards).next(&[Some(a1.clone())], |_| false);
    let v2 = v1.next(&[Some(b)], |_| false);
    assert_eq!(
        v2.slot(shard).and_then(|s| s.moving_from.clone()),
        Some(a1.clone())
    );
    // The leader asks by incarnation: only a1 itself can say it released.
    let mut node_a2 = Ownership::new(a2.clone(), shards);
    node_a2.adopt(&v2);
    let released = |p: &Incarnate, s| *p == a2 && node_a2.has_released(s, v2.version);
    assert!(v2.settle(released, |_| false).is_none());
    // Once the leader has seen a2, a1 is gone for good.
    assert!(v2.settle(|_, _| false, |p| *p == a1).is_some());
}

#[test]
fn moving_back_to_the_node_it_was_moving_from_cancels_the_move() {
    let (shards, shard) = one_shard();
    let (a, b) = (who("a", 1), who("b", 1));
    let v1 = Placement::empty(shards).next(&[Some(a.clone())], |_| false);
    let mut node_a = Ownership::new(a.clone(), shards);
    node_a.adopt(&v1);
    let v2 = v1.next(&[Some(b)], |_| false);
    let v3 = v2.next(&[Some(a.clone())], |_| false);
    assert_eq!(
        v3.slot(shard),
        Some(&ShardSlot {
            owner: Some(a),
            moving_from: None
        })
    );
    // a never saw v2: it keeps serving, epoch unchanged.
    assert!(node_a.adopt(&v3).is_empty());
    assert_eq!(node_a.decide(shard, v(3)), Decision::Accept { epoch: v(1) });
}

#[test]
fn a_renewed_node_owns_nothing_of_its_earlier_incarnation() {
    let (shards, shard) = one_shard();
    let (a1, a2) = (who("a", 1), who("a", 2));
    let v1 = Placement::empty(shards).next(&[Some(a1.clone())], |_| false);
    let mut node = Ownership::new(a1, shards);
    node.adopt(&v1);
    assert_eq!(node.lapse(), vec![Action::Drain { shard }]);
    assert_eq!(node.decide(shard, v(1)), Decision::NotCurrent);
    node.drained(shard);
    assert!(node.renewed(a2, &v1).is_empty());
    assert_eq!(node.state(shard), ShardState::NotOwned);
    assert_eq!(node.decide(shard, v(1)), Decision::Moved { version: v(1) });
}

#[test]
fn requests_wait_for_a_moving_shard_and_catch_up_with_newer_senders() {
    let (shards, shard) = one_shard();
    let (a, b) = (who("a", 1), who("b", 1));
    let v2 = Placement::empty(shards)
        .next(&[Some(a)], |_| false)
        .next(&[Some(b.clone())], |_| false);
    let mut node_b = Ownership::new(b, shards);
    node_b.adopt(&v2);
    assert_eq!(node_b.decide(shard, v(2)), Decision::Wait);
    assert_eq!(node_b.decide(shard, v(5)), Decision::CatchUp { to: v(5) });
    // Out of range: never served here.
    assert_eq!(
        node_b.decide(ShardId::new(7), v(2)),
        Decision::Moved { version: v(2) }
    );
}

#[test]
fn an_older_placement_is_ignored() {
    let (shards, shard) = one_shard();
    let a = who("a", 1);
    let v1 = Placement::empty(shards).next(&[Some(a.clone())], |_| false);
    let v2 = v1.next(&[None], |_| false);
    let mut node = Ownership::new(a, shards);
    node.adopt(&v2);
    assert!(node.adopt(&v1).is_empty());
    assert_eq!(node.state(shard), ShardState::NotOwned);
}
