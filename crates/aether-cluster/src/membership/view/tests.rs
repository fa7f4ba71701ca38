use super::*;
use crate::NodeMetadata;

const TTL: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
const STABLE: Duration = Duration::from_secs(1);

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn info(name: &str, incarnation: u64) -> MemberInfo {
    MemberInfo {
        id: id(name),
        metadata: NodeMetadata::default(),
        incarnation,
    }
}

/// A synced view of `local` with `others` announced.
fn view(others: &[&str]) -> (View, Instant) {
    let now = Instant::now();
    let mut view = View::new(
        info("a", 1),
        Timings {
            member_ttl: TTL,
            retry: RETRY,
            stabilization_delay: STABLE,
        },
    );
    view.entry(id("a"), Op::Put(info("a", 1)), now);
    for name in others {
        view.entry(id(name), Op::Put(info(name, 1)), now);
    }
    view.finish_resync(now);
    view.take_output();
    (view, now)
}

fn ids(view: &View) -> Vec<String> {
    view.members().iter().map(|m| m.id.to_string()).collect()
}

use MembershipEvent::{Failed, Joined, Left, Recovered, Suspected};

#[test]
fn snapshot_then_live_changes() {
    let (mut view, now) = view(&["c", "b"]);
    assert!(view.is_synced());
    assert_eq!(ids(&view), ["a", "b", "c"]);
    view.entry(id("d"), Op::Put(info("d", 1)), now);
    view.entry(id("b"), Op::Delete, now);
    // A renewal is no event; an unknown key's expiry neither.
    view.entry(id("c"), Op::Put(info("c", 1)), now);
    view.entry(id("x"), Op::Purge, now);
    assert_eq!(
        view.take_output(),
        (vec![Joined(info("d", 1)), Left(id("b"))], vec![], false)
    );
    assert_eq!(ids(&view), ["a", "c", "d"]);
}

#[test]
fn initial_snapshot_reports_joins_and_ignores_old_markers() {
    let now = Instant::now();
    let timings = Timings {
        member_ttl: TTL,
        retry: RETRY,
        stabilization_delay: STABLE,
    };
    let mut view = View::new(info("a", 1), timings);
    assert!(!view.is_synced());
    view.entry(id("b"), Op::Put(info("b", 1)), now);
    view.entry(id("old"), Op::Purge, now);
    view.entry(id("gone"), Op::Delete, now);
    view.finish_resync(now);
    // Our own key was not in the snapshot: re-announce.
    assert_eq!(
        view.take_output(),
        (vec![Joined(info("b", 1))], vec![], true)
    );
}

#[test]
fn expiry_suspects_and_a_failed_probe_fails() {
    let (mut view, now) = view(&["b", "c"]);
    view.entry(id("b"), Op::Purge, now);
    assert_eq!(
        view.take_output(),
        (vec![Suspected(id("b"))], vec![id("b")], false)
    );
    assert_eq!(view.health(now).suspected, [id("b")]);
    // Still a member while suspected.
    assert_eq!(ids(&view), ["a", "b", "c"]);
    let g = view.generation();
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, now);
    assert_eq!(view.take_output().0, [Failed(id("b"))]);
    assert_eq!(ids(&view), ["a", "c"]);
    let health = view.health(now);
    assert_eq!(health.failed_recently, [id("b")]);
    assert!(!health.frozen, "1 of 3 is not a mass disappearance");
    assert!(view.health(now + STABLE).failed_recently.is_empty());
}

#[test]
fn an_answered_probe_keeps_the_member_and_reprobes_it() {
    let (mut view, now) = view(&["b"]);
    view.entry(id("b"), Op::Purge, now);
    view.take_output();
    let g = view.generation();
    view.probe_result(&id("b"), g, ProbeOutcome::Alive(Some(info("b", 1))), now);
    assert_eq!(view.take_output().0, [Recovered(id("b"))]);
    assert_eq!(ids(&view), ["a", "b"]);
    // Its key stays absent: probed again after a member TTL, not before.
    view.tick(now + TTL / 2);
    assert!(view.take_output().1.is_empty());
    view.tick(now + TTL);
    assert_eq!(view.take_output().1, [id("b")]);
    // It no longer answers: suspected, probed once more, then failed.
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, now + TTL);
    assert_eq!(
        view.take_output(),
        (vec![Suspected(id("b"))], vec![id("b")], false)
    );
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, now + TTL);
    assert_eq!(view.take_output().0, [Failed(id("b"))]);
}

#[test]
fn a_put_while_suspected_recovers_and_a_new_incarnation_rejoins() {
    let (mut view, now) = view(&["b"]);
    view.entry(id("b"), Op::Purge, now);
    view.entry(id("b"), Op::Put(info("b", 1)), now);
    // The probe's late answer changes nothing any more.
    let g = view.generation();
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, now);
    view.entry(id("b"), Op::Put(info("b", 2)), now);
    assert_eq!(
        view.take_output().0,
        [Suspected(id("b")), Recovered(id("b")), Joined(info("b", 2))]
    );
    assert_eq!(view.members()[1].incarnation, 2);
}

#[test]
fn unsynced_nodes_judge_nobody() {
    let (mut view, now) = view(&["b", "c"]);
    view.entry(id("b"), Op::Purge, now);
    view.take_output();
    let before = view.generation();
    // Our connection drops while the probe is out.
    view.begin_resync();
    assert!(!view.is_synced());
    view.probe_result(&id("b"), before, ProbeOutcome::NoAnswer, now);
    view.tick(now + TTL * 10);
    assert_eq!(view.take_output(), (vec![], vec![], false));
    assert_eq!(ids(&view), ["a", "b", "c"]);
    // Reconnected: b re-announced meanwhile, c's key expired during the outage.
    view.entry(id("a"), Op::Put(info("a", 1)), now);
    view.entry(id("b"), Op::Put(info("b", 1)), now);
    view.entry(id("c"), Op::Purge, now);
    let t = now + TTL * 10;
    view.finish_resync(t);
    assert_eq!(
        view.take_output(),
        (
            vec![Recovered(id("b")), Suspected(id("c"))],
            vec![id("c")],
            false
        )
    );
    // Within the grace period a silent member is not failed, only re-probed.
    let g = view.generation();
    view.probe_result(&id("c"), g, ProbeOutcome::NoAnswer, t);
    assert_eq!(view.take_output(), (vec![], vec![], false));
    view.tick(t + RETRY);
    assert_eq!(view.take_output().1, [id("c")]);
    view.probe_result(&id("c"), g, ProbeOutcome::NoAnswer, t + TTL);
    assert_eq!(view.take_output().0, [Failed(id("c"))]);
}

#[test]
fn inconclusive_probes_are_retried() {
    let (mut view, now) = view(&["b"]);
    view.entry(id("b"), Op::Purge, now);
    view.take_output();
    let g = view.generation();
    view.probe_result(&id("b"), g, ProbeOutcome::Inconclusive, now);
    assert_eq!(view.take_output(), (vec![], vec![], false));
    view.tick(now + RETRY);
    assert_eq!(view.take_output().1, [id("b")]);
}

#[test]
fn own_key_gone_means_reannounce() {
    let (mut view, now) = view(&[]);
    view.entry(id("a"), Op::Purge, now);
    assert!(view.take_output().2);
    view.entry(id("a"), Op::Delete, now);
    assert!(view.take_output().2);
    // Another process with our id is logged, never added.
    view.entry(id("a"), Op::Put(info("a", 9)), now);
    assert_eq!(view.take_output(), (vec![], vec![], false));
    assert_eq!(view.members(), [info("a", 1)]);
}

#[test]
fn half_vanishing_freezes_until_stable() {
    let (mut view, now) = view(&["b", "c", "d"]);
    view.entry(id("b"), Op::Purge, now);
    assert!(!view.health(now).frozen, "1 of 4");
    let t = now + Duration::from_millis(300);
    view.entry(id("c"), Op::Purge, t);
    assert!(view.health(t).frozen, "2 of 4");
    let g = view.generation();
    let t2 = t + Duration::from_millis(500);
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, t2);
    view.probe_result(&id("c"), g, ProbeOutcome::NoAnswer, t2);
    view.tick(t2 + STABLE - Duration::from_millis(1));
    assert!(view.health(t2).frozen, "changes keep it frozen");
    view.tick(t2 + STABLE);
    let health = view.health(t2 + STABLE);
    assert!(!health.frozen, "stable for the delay: thawed");
    assert_eq!(ids(&view), ["a", "d"]);
}

#[test]
fn slow_attrition_does_not_freeze() {
    let (mut view, now) = view(&["b", "c", "d"]);
    view.entry(id("b"), Op::Purge, now);
    let g = view.generation();
    view.probe_result(&id("b"), g, ProbeOutcome::NoAnswer, now);
    let later = now + STABLE * 2;
    view.tick(later);
    view.entry(id("c"), Op::Purge, later);
    assert!(!view.health(later).frozen, "one at a time, a delay apart");
}

#[test]
fn leaves_do_not_count_as_vanishing() {
    let (mut view, now) = view(&["b", "c", "d"]);
    view.entry(id("b"), Op::Delete, now);
    view.entry(id("c"), Op::Delete, now);
    view.entry(id("d"), Op::Delete, now);
    assert!(!view.health(now).frozen);
    assert_eq!(ids(&view), ["a"]);
}
