//! Tests of the assignors: Kafka's examples, and property tests against plain models.
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

use super::*;

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn member(id: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_string(),
        group_instance_id: None,
        topics: topics.iter().map(ToString::to_string).collect(),
        owned_partitions: Vec::new(),
    }
}

fn counts(spec: &[(&str, u32)]) -> BTreeMap<String, u32> {
    spec.iter().map(|&(t, n)| (t.to_string(), n)).collect()
}

fn builtins() -> [&'static dyn Assignor; 4] {
    [
        &RangeAssignor,
        &RoundRobinAssignor,
        &StickyAssignor,
        &CooperativeStickyAssignor,
    ]
}

/// The members with `owned_partitions` set from `assignment`.
fn owning(members: &[MemberSubscription], assignment: &Assignment) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| MemberSubscription {
            owned_partitions: assignment.get(&m.member_id).cloned().unwrap_or_default(),
            ..m.clone()
        })
        .collect()
}

/// The module's invariants 1 to 3, checked against a plain model.
fn check_contract(
    partitions: &BTreeMap<String, u32>,
    members: &[MemberSubscription],
    assignment: &Assignment,
) -> Result<(), String> {
    let ids: BTreeSet<&String> = members.iter().map(|m| &m.member_id).collect();
    if assignment.keys().collect::<BTreeSet<_>>() != ids {
        return Err(format!("members {ids:?}, assignment {assignment:?}"));
    }
    let mut expected = Vec::new();
    for (topic, &count) in partitions {
        if members.iter().any(|m| m.topics.contains(topic)) {
            expected.extend((0..count).map(|p| tp(topic, p)));
        }
    }
    let mut given = Vec::new();
    for m in members {
        let held = &assignment[&m.member_id];
        if held.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{} not sorted: {held:?}", m.member_id));
        }
        if let Some(p) = held.iter().find(|p| !m.topics.contains(&p.topic)) {
            return Err(format!("{} got {p} without subscribing", m.member_id));
        }
        given.extend(held.iter().cloned());
    }
    given.sort();
    if given != expected {
        return Err(format!("assigned {given:?}, expected {expected:?}"));
    }
    Ok(())
}

fn sizes(assignment: &Assignment) -> Vec<usize> {
    assignment.values().map(Vec::len).collect()
}

fn spread(sizes: &[usize]) -> usize {
    sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
}

#[test]
fn public_types_are_send_sync_and_the_trait_is_object_safe() {
    fn check<T: Send + Sync>() {}
    check::<RangeAssignor>();
    check::<RoundRobinAssignor>();
    check::<StickyAssignor>();
    check::<CooperativeStickyAssignor>();
    check::<MemberSubscription>();
    check::<Box<dyn Assignor>>();
}

#[test]
fn names_and_protocols() {
    use RebalanceProtocol::{Cooperative, Eager};
    let names: Vec<_> = builtins().iter().map(|a| a.name().to_string()).collect();
    assert_eq!(
        names,
        ["range", "roundrobin", "sticky", "cooperative-sticky"]
    );
    let protocols: Vec<_> = builtins().iter().map(|a| a.protocol()).collect();
    assert_eq!(protocols, [Eager, Eager, Eager, Cooperative]);
}

#[test]
fn kafka_documented_range_and_roundrobin() {
    let partitions = counts(&[("t0", 3), ("t1", 3)]);
    let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    let range = RangeAssignor.assign(&partitions, &members);
    assert_eq!(
        range["C0"],
        [tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]
    );
    assert_eq!(range["C1"], [tp("t0", 2), tp("t1", 2)]);
    let round_robin = RoundRobinAssignor.assign(&partitions, &members);
    assert_eq!(round_robin["C0"], [tp("t0", 0), tp("t0", 2), tp("t1", 1)]);
    assert_eq!(round_robin["C1"], [tp("t0", 1), tp("t1", 0), tp("t1", 2)]);
}

#[test]
fn static_members_come_first() {
    let partitions = counts(&[("t0", 3), ("t1", 3)]);
    let mut members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
    members[1].group_instance_id = Some("z".into());
    let range = RangeAssignor.assign(&partitions, &members);
    assert_eq!(
        range["C1"],
        [tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]
    );
    assert_eq!(range["C0"], [tp("t0", 2), tp("t1", 2)]);
    let round_robin = RoundRobinAssignor.assign(&partitions, &members);
    assert_eq!(round_robin["C1"], [tp("t0", 0), tp("t0", 2), tp("t1", 1)]);

    // Between static members the instance id decides, not the member id.
    members[0].group_instance_id = Some("a".into());
    let range = RangeAssignor.assign(&partitions, &members);
    assert_eq!(
        range["C0"],
        [tp("t0", 0), tp("t0", 1), tp("t1", 0), tp("t1", 1)]
    );
}

#[test]
fn range_with_differing_subscriptions() {
    let partitions = counts(&[("t0", 3), ("t1", 2)]);
    let members = [member("C0", &["t0"]), member("C1", &["t0", "t1"])];
    let range = RangeAssignor.assign(&partitions, &members);
    assert_eq!(range["C0"], [tp("t0", 0), tp("t0", 1)]);
    assert_eq!(range["C1"], [tp("t0", 2), tp("t1", 0), tp("t1", 1)]);
    let round_robin = RoundRobinAssignor.assign(&partitions, &members);
    assert_eq!(round_robin["C0"], [tp("t0", 0), tp("t0", 2)]);
    assert_eq!(round_robin["C1"], [tp("t0", 1), tp("t1", 0), tp("t1", 1)]);
}

#[test]
fn unknown_topics_are_ignored() {
    let partitions = counts(&[("t0", 2)]);
    let members = [member("C0", &["ghost", "t0"]), member("C1", &["ghost"])];
    for assignor in builtins() {
        let assignment = assignor.assign(&partitions, &members);
        assert_eq!(assignment["C0"], [tp("t0", 0), tp("t0", 1)], "{assignor:?}");
        assert_eq!(assignment["C1"], [], "{assignor:?}");
    }
}

#[test]
fn no_members_no_assignment() {
    let partitions = counts(&[("t0", 2)]);
    for assignor in builtins() {
        assert!(assignor.assign(&partitions, &[]).is_empty());
        assert!(assignor.assign(&BTreeMap::new(), &[]).is_empty());
    }
}

#[test]
fn more_members_than_partitions() {
    let partitions = counts(&[("t0", 2)]);
    let members = [
        member("C0", &["t0"]),
        member("C1", &["t0"]),
        member("C2", &["t0"]),
    ];
    for assignor in builtins() {
        let assignment = assignor.assign(&partitions, &members);
        assert_eq!(assignment["C0"], [tp("t0", 0)], "{assignor:?}");
        assert_eq!(assignment["C1"], [tp("t0", 1)], "{assignor:?}");
        assert_eq!(assignment["C2"], [], "{assignor:?}");
    }
}

/// Kafka's `StickyAssignor` documentation, first example: C1 leaves.
#[test]
fn sticky_keeps_partitions_when_a_member_leaves() {
    let partitions = counts(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)]);
    let topics = ["t0", "t1", "t2", "t3"];
    let mut c0 = member("C0", &topics);
    c0.owned_partitions = vec![tp("t0", 0), tp("t1", 1), tp("t3", 0)];
    let mut c2 = member("C2", &topics);
    c2.owned_partitions = vec![tp("t1", 0), tp("t2", 1)];
    let sticky = StickyAssignor.assign(&partitions, &[c0, c2]);
    assert_eq!(
        sticky["C0"],
        [tp("t0", 0), tp("t0", 1), tp("t1", 1), tp("t3", 0)]
    );
    assert_eq!(
        sticky["C2"],
        [tp("t1", 0), tp("t2", 0), tp("t2", 1), tp("t3", 1)]
    );
}

/// Kafka's `StickyAssignor` documentation, second example: differing subscriptions.
#[test]
fn sticky_balances_differing_subscriptions() {
    let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
    let members = [
        member("C0", &["t0"]),
        member("C1", &["t0", "t1"]),
        member("C2", &["t0", "t1", "t2"]),
    ];
    let first = StickyAssignor.assign(&partitions, &members);
    assert_eq!(first["C0"], [tp("t0", 0)]);
    assert_eq!(first["C1"], [tp("t1", 0), tp("t1", 1)]);
    assert_eq!(first["C2"], [tp("t2", 0), tp("t2", 1), tp("t2", 2)]);

    let rest = owning(&members[1..], &first);
    let second = StickyAssignor.assign(&partitions, &rest);
    assert_eq!(second["C1"], [tp("t0", 0), tp("t1", 0), tp("t1", 1)]);
    assert_eq!(second["C2"], first["C2"]);
}

/// Half the members subscribe to twenty topics, half to ten of them: balancing needs chains
/// of moves, through the heavy members, from the shared topics to the others.
#[test]
fn sticky_balances_through_chains_of_moves() {
    let names: Vec<String> = (0..20).map(|t| format!("topic{t:02}")).collect();
    let partitions: BTreeMap<String, u32> = names.iter().map(|t| (t.clone(), 100)).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let members: Vec<MemberSubscription> = (0..100)
        .map(|i| {
            let topics = if i % 2 == 0 { &all[..] } else { &all[..10] };
            member(&format!("member{i:03}"), topics)
        })
        .collect();
    for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
        let started = std::time::Instant::now();
        let assignment = assignor.assign(&partitions, &members);
        let elapsed = started.elapsed();
        assert_eq!(check_contract(&partitions, &members, &assignment), Ok(()));
        assert!(sizes(&assignment).iter().all(|&n| n == 20), "{assignor:?}");
        assert_eq!(improving_path(&members, &assignment), None);
        eprintln!("{assignor:?}: 100 members, 2000 partitions in {elapsed:?}");
    }
}

/// The same group, stuck where single moves cannot help: 25 members of twenty topics own 21
/// partitions of the ten topics the others lack, 25 own 19 of those and one shared partition,
/// and the members of the ten shared topics own 19 or 20. Reaching 20 each needs chains
/// through the members at 20; the fewest partitions that can move is 50.
#[test]
fn sticky_balances_owned_partitions_through_chains_of_moves() {
    let names: Vec<String> = (0..20).map(|t| format!("topic{t:02}")).collect();
    let partitions: BTreeMap<String, u32> = names.iter().map(|t| (t.clone(), 100)).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut exclusive = names[10..]
        .iter()
        .flat_map(|t| (0..100).map(move |p| tp(t, p)));
    let mut shared = names[..10]
        .iter()
        .flat_map(|t| (0..100).map(move |p| tp(t, p)));
    let members: Vec<MemberSubscription> = (0..100)
        .map(|i| {
            let heavy = i < 50;
            let topics = if heavy { &all[..] } else { &all[..10] };
            let mut m = member(&format!("member{i:03}"), topics);
            m.owned_partitions = match i {
                0..25 => exclusive.by_ref().take(21).collect(),
                25..50 => exclusive.by_ref().take(19).chain(shared.next()).collect(),
                50..75 => shared.by_ref().take(19).collect(),
                _ => shared.by_ref().take(20).collect(),
            };
            m
        })
        .collect();
    assert!(exclusive.next().is_none() && shared.next().is_none());
    let before: Assignment = members
        .iter()
        .map(|m| (m.member_id.clone(), m.owned_partitions.clone()))
        .collect();
    for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
        let assignment = assignor.assign(&partitions, &members);
        assert_eq!(check_contract(&partitions, &members, &assignment), Ok(()));
        assert!(sizes(&assignment).iter().all(|&n| n == 20), "{assignor:?}");
        assert_eq!(improving_path(&members, &assignment), None);
        assert_eq!(2000 - kept(&before, &assignment), 50, "{assignor:?}");
    }
}

/// A pair of members `(a, b)` with `a` holding at least two more partitions than `b` and a
/// chain of members from `a` to `b`, each holding a partition of a topic the next subscribes
/// to; `None` when there is none, that is when no sequence of moves improves the balance.
fn improving_path(
    members: &[MemberSubscription],
    assignment: &Assignment,
) -> Option<(String, String)> {
    let load = |m: &MemberSubscription| assignment[&m.member_id].len();
    let passes_to = |a: &MemberSubscription, b: &MemberSubscription| {
        assignment[&a.member_id]
            .iter()
            .any(|p| b.topics.contains(&p.topic))
    };
    for (i, a) in members.iter().enumerate() {
        let mut reached = vec![false; members.len()];
        reached[i] = true;
        let mut queue = std::collections::VecDeque::from([i]);
        while let Some(x) = queue.pop_front() {
            for (y, b) in members.iter().enumerate() {
                if !reached[y] && passes_to(&members[x], b) {
                    reached[y] = true;
                    queue.push_back(y);
                }
            }
        }
        for (y, b) in members.iter().enumerate() {
            if reached[y] && load(b) + 2 <= load(a) {
                return Some((a.member_id.clone(), b.member_id.clone()));
            }
        }
    }
    None
}

#[test]
fn sticky_ignores_invalid_and_contested_owned_partitions() {
    let partitions = counts(&[("t0", 2), ("t1", 2)]);
    let mut c0 = member("C0", &["t0", "t1"]);
    c0.owned_partitions = vec![tp("gone", 0), tp("t0", 0), tp("t0", 7)];
    let mut c1 = member("C1", &["t0", "t1"]);
    // t0-0 is C0's (earlier in member order).
    c1.owned_partitions = vec![tp("t0", 0), tp("t1", 0), tp("t1", 1)];
    let sticky = StickyAssignor.assign(&partitions, &[c0, c1]);
    assert_eq!(sticky["C0"], [tp("t0", 0), tp("t0", 1)]);
    assert_eq!(sticky["C1"], [tp("t1", 0), tp("t1", 1)]);
}

#[test]
fn repair_fixes_each_kind_of_damage() {
    let partitions = counts(&[("t0", 3)]);
    let members = [
        member("C0", &["t0"]),
        member("C1", &["t0"]),
        member("C2", &["t1"]),
    ];
    let garbage = Assignment::from([
        (
            "C0".into(),
            vec![tp("t0", 2), tp("t0", 0), tp("t0", 0), tp("t0", 9)],
        ),
        ("C2".into(), vec![tp("t0", 1)]),
        ("stranger".into(), vec![tp("t0", 1)]),
    ]);
    let (repaired, changed) = repair(garbage, &partitions, &members);
    assert!(changed);
    assert_eq!(repaired["C0"], [tp("t0", 0), tp("t0", 2)]);
    assert_eq!(repaired["C1"], [tp("t0", 1)]);
    assert_eq!(repaired["C2"], []);
    assert_eq!(repaired.len(), 3);
    assert_eq!(
        repair(repaired.clone(), &partitions, &members),
        (repaired, false)
    );
}

/// Each kind of damage alone is repaired back to the valid assignment, and reported.
#[test]
fn repair_reports_each_single_damage() {
    let partitions = counts(&[("t0", 2), ("t1", 1)]);
    let members = [member("C0", &["t0"]), member("C1", &["t0", "t1"])];
    let valid = Assignment::from([
        ("C0".into(), vec![tp("t0", 0)]),
        ("C1".into(), vec![tp("t0", 1), tp("t1", 0)]),
    ]);
    // Unsorted, duplicate, out of range, unknown topic, stranger, missing partition, missing
    // member.
    let damages: [fn(&mut Assignment); 7] = [
        |a| {
            if let Some(v) = a.get_mut("C1") {
                v.reverse();
            }
        },
        |a| {
            if let Some(v) = a.get_mut("C0") {
                v.push(tp("t0", 0));
            }
        },
        |a| {
            if let Some(v) = a.get_mut("C0") {
                v.push(tp("t0", 5));
            }
        },
        |a| {
            if let Some(v) = a.get_mut("C0") {
                v.push(tp("ghost", 0));
            }
        },
        |a| {
            a.insert("stranger".into(), Vec::new());
        },
        |a| {
            // t1-0 has a single subscriber to go back to.
            a.insert("C1".into(), vec![tp("t0", 1)]);
        },
        |a| {
            a.remove("C0");
        },
    ];
    for (i, damage) in damages.iter().enumerate() {
        let mut input = valid.clone();
        damage(&mut input);
        let repaired = repair(input, &partitions, &members);
        assert_eq!(repaired, (valid.clone(), true), "damage {i}");
    }
    assert_eq!(repair(valid.clone(), &partitions, &members), (valid, false));
}

const TOPICS: [&str; 10] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];

/// Raw partition claims: topic index (possibly a topic that does not exist) and partition
/// (possibly out of range).
fn raw_partitions(max: usize) -> impl Strategy<Value = Vec<TopicPartition>> {
    vec((0..TOPICS.len(), 0u32..20), 0..max)
        .prop_map(|raw| raw.into_iter().map(|(t, p)| tp(TOPICS[t], p)).collect())
}

/// 1 to 8 topics of 1 to 16 partitions, and `min_members` to 10 members with distinct ids,
/// some static, owning random (often invalid) partitions. With `same_topics` all members
/// subscribe to every topic (plus one that does not exist); otherwise each subscribes to a
/// random subset of ten topics, some of which do not exist.
fn group_input(
    same_topics: bool,
    min_members: usize,
) -> impl Strategy<Value = (BTreeMap<String, u32>, Vec<MemberSubscription>)> {
    let topic_counts = vec(1u32..=16, 1..=8);
    let ids = btree_set("[a-z]{1,2}", min_members..=10);
    (topic_counts, ids)
        .prop_flat_map(|(topic_counts, ids)| {
            let member = (
                0u16..1 << 10,
                proptest::option::of(0u8..4),
                raw_partitions(12),
            );
            let members = vec(member, ids.len());
            (Just(topic_counts), Just(ids), members)
        })
        .prop_map(move |(topic_counts, ids, raw_members)| {
            let partitions: BTreeMap<String, u32> = topic_counts
                .iter()
                .enumerate()
                .map(|(t, &n)| (TOPICS[t].to_string(), n))
                .collect();
            let members = ids
                .into_iter()
                .zip(raw_members)
                .map(|(id, (mask, instance, mut owned))| {
                    owned.sort();
                    owned.dedup();
                    let topics = if same_topics {
                        let mut all: Vec<String> = partitions.keys().cloned().collect();
                        all.push("t9x".to_string());
                        all
                    } else {
                        (0..TOPICS.len())
                            .filter(|t| mask & (1 << t) != 0)
                            .map(|t| TOPICS[t].to_string())
                            .collect()
                    };
                    MemberSubscription {
                        member_id: id,
                        group_instance_id: instance.map(|i| format!("instance-{i}")),
                        topics,
                        owned_partitions: owned,
                    }
                })
                .collect();
            (partitions, members)
        })
}

/// The members in Kafka's `MemberInfo` order, written out plainly.
fn kafka_order(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut ordered: Vec<_> = members.iter().collect();
    ordered.sort_by(|a, b| {
        let by_instance = match (&a.group_instance_id, &b.group_instance_id) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_instance.then(a.member_id.cmp(&b.member_id))
    });
    ordered
}

/// Each member's valid owned partitions: existing, of a subscribed topic, and not claimed by
/// an earlier member in Kafka's order.
fn valid_owned(partitions: &BTreeMap<String, u32>, members: &[MemberSubscription]) -> Assignment {
    let mut claimed = BTreeSet::new();
    kafka_order(members)
        .into_iter()
        .map(|m| {
            let owned = m
                .owned_partitions
                .iter()
                .filter(|p| m.topics.contains(&p.topic))
                .filter(|p| partitions.get(&p.topic).is_some_and(|&n| p.partition < n))
                .filter(|p| claimed.insert((*p).clone()))
                .cloned()
                .collect();
            (m.member_id.clone(), owned)
        })
        .collect()
}

/// How many of `owned` a balanced assignment of `total` partitions can keep at most, for
/// members that all subscribe to every topic: each keeps up to the floor, plus one for as
/// many members owning more as there are ceiling slots.
fn most_keepable(total: usize, owned: &Assignment) -> usize {
    let floor = total / owned.len();
    let above_floor = owned.values().filter(|o| o.len() > floor).count();
    owned.values().map(|o| o.len().min(floor)).sum::<usize>() + above_floor.min(total % owned.len())
}

fn kept(before: &Assignment, after: &Assignment) -> usize {
    before
        .iter()
        .map(|(id, old)| {
            let new = after.get(id).map_or(&[][..], Vec::as_slice);
            old.iter().filter(|p| new.contains(p)).count()
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_builtin_keeps_the_contract((partitions, members) in group_input(false, 1)) {
        for assignor in builtins() {
            let assignment = assignor.assign(&partitions, &members);
            let checked = check_contract(&partitions, &members, &assignment);
            prop_assert_eq!(checked, Ok(()), "{:?}", assignor);
            prop_assert_eq!(&assignor.assign(&partitions, &members), &assignment);
        }
    }

    #[test]
    fn range_balances_each_topic((partitions, members) in group_input(false, 1)) {
        let assignment = RangeAssignor.assign(&partitions, &members);
        for topic in partitions.keys() {
            let per_member: Vec<usize> = members
                .iter()
                .filter(|m| m.topics.contains(topic))
                .map(|m| assignment[&m.member_id].iter().filter(|p| &p.topic == topic).count())
                .collect();
            prop_assert!(spread(&per_member) <= 1, "{topic}: {per_member:?}");
        }
    }

    #[test]
    fn roundrobin_balances_same_subscriptions((partitions, members) in group_input(true, 1)) {
        let assignment = RoundRobinAssignor.assign(&partitions, &members);
        prop_assert!(spread(&sizes(&assignment)) <= 1, "{:?}", assignment);
    }

    #[test]
    fn sticky_balances_and_keeps_the_most((partitions, members) in group_input(true, 1)) {
        let assignment = StickyAssignor.assign(&partitions, &members);
        prop_assert!(spread(&sizes(&assignment)) <= 1, "{:?}", assignment);
        let owned = valid_owned(&partitions, &members);
        let total: usize = partitions.values().map(|&n| n as usize).sum();
        prop_assert_eq!(kept(&owned, &assignment), most_keepable(total, &owned));
    }

    #[test]
    fn sticky_is_a_fixed_point((partitions, members) in group_input(false, 1)) {
        let first = StickyAssignor.assign(&partitions, &members);
        let again = StickyAssignor.assign(&partitions, &owning(&members, &first));
        prop_assert_eq!(again, first);
    }

    #[test]
    fn sticky_general_leaves_no_easy_move((partitions, members) in group_input(false, 1)) {
        let assignment = StickyAssignor.assign(&partitions, &members);
        for from in &members {
            for p in &assignment[&from.member_id] {
                for to in members.iter().filter(|m| m.topics.contains(&p.topic)) {
                    let (a, b) = (&from.member_id, &to.member_id);
                    let (from_load, to_load) = (assignment[a].len(), assignment[b].len());
                    prop_assert!(to_load + 2 > from_load, "{p} could move from {a} to {b}");
                }
            }
        }
    }

    #[test]
    fn sticky_general_leaves_no_improving_path((partitions, members) in group_input(false, 1)) {
        for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
            let assignment = assignor.assign(&partitions, &members);
            prop_assert_eq!(improving_path(&members, &assignment), None, "{:?}", assignment);
        }
    }

    #[test]
    fn sticky_moves_only_the_leavers_partitions(
        (partitions, members) in group_input(true, 2),
        leaver in any::<prop::sample::Index>(),
    ) {
        let fresh = owning(&members, &Assignment::new());
        let before = StickyAssignor.assign(&partitions, &fresh);
        let mut rest = owning(&fresh, &before);
        rest.remove(leaver.index(rest.len()));
        let after = StickyAssignor.assign(&partitions, &rest);
        prop_assert!(spread(&sizes(&after)) <= 1);
        for m in &rest {
            let (old, new) = (&before[&m.member_id], &after[&m.member_id]);
            let id = &m.member_id;
            let kept_all = old.iter().all(|p| new.contains(p));
            prop_assert!(kept_all, "{id} lost some: {old:?} -> {new:?}");
        }
    }

    #[test]
    fn sticky_join_moves_the_fewest(
        (partitions, members) in group_input(true, 2),
        joiner in any::<prop::sample::Index>(),
    ) {
        let fresh = owning(&members, &Assignment::new());
        let joiner = joiner.index(fresh.len());
        let mut old_members = fresh.clone();
        let joiner_id = old_members.remove(joiner).member_id;
        let before = StickyAssignor.assign(&partitions, &old_members);
        let now = owning(&fresh, &before);
        let after = StickyAssignor.assign(&partitions, &now);

        let total: usize = partitions.values().map(|&n| n as usize).sum();
        let floor = total / now.len();
        prop_assert!(spread(&sizes(&after)) <= 1);
        prop_assert!((floor..=floor + 1).contains(&after[&joiner_id].len()));
        for m in &old_members {
            let (old, new) = (&before[&m.member_id], &after[&m.member_id]);
            let id = &m.member_id;
            let gained_none = new.iter().all(|p| old.contains(p));
            prop_assert!(gained_none, "{id} gained: {old:?} -> {new:?}");
            prop_assert!(new.len() >= floor);
        }
        let fewest_moves = total - most_keepable(total, &valid_owned(&partitions, &now));
        prop_assert_eq!(total - kept(&before, &after), fewest_moves);
    }

    #[test]
    fn sticky_without_change_changes_nothing((partitions, members) in group_input(true, 1)) {
        let first = StickyAssignor.assign(&partitions, &members);
        let again = StickyAssignor.assign(&partitions, &owning(&members, &first));
        prop_assert_eq!(again, first);
    }

    #[test]
    fn repair_restores_the_contract(
        (partitions, members) in group_input(false, 1),
        raw in vec((0usize..12, raw_partitions(10)), 0..12),
    ) {
        let garbage: Assignment = raw
            .into_iter()
            .map(|(i, held)| {
                let id = members
                    .get(i)
                    .map_or_else(|| format!("stranger{i}"), |m| m.member_id.clone());
                (id, held)
            })
            .collect();
        let (repaired, _) = repair(garbage, &partitions, &members);
        prop_assert_eq!(check_contract(&partitions, &members, &repaired), Ok(()));
        prop_assert_eq!(repair(repaired.clone(), &partitions, &members), (repaired, false));
    }

    #[test]
    fn repair_leaves_valid_assignments_alone((partitions, members) in group_input(false, 1)) {
        for assignor in builtins() {
            let assignment = assignor.assign(&partitions, &members);
            let repaired = repair(assignment.clone(), &partitions, &members);
            prop_assert_eq!(repaired, (assignment, false));
        }
    }
}
