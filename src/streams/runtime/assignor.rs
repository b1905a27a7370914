//! How a Streams application shares its tasks among stream threads: an [`Assignor`] that
//! moves whole tasks (all partitions `p` of a sub-topology's source topics together), keeps
//! each task where it was while that stays balanced, and uses the cooperative protocol so that
//! a rebalance stops only the tasks that move.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::group::assignor::{Assignment, Assignor, MemberSubscription, RebalanceProtocol};
use crate::partition::TopicPartition;
use crate::streams::context::TaskId;

/// Where the tasks of an application are: resolved source topic → sub-topology, and the task
/// count of each sub-topology.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskLayout {
    pub(crate) subtopology_of: HashMap<String, u32>,
    /// Sources of each sub-topology with their partition counts.
    pub(crate) sources: Vec<BTreeMap<String, u32>>,
}

impl TaskLayout {
    pub(crate) fn task_of(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.subtopology_of
            .get(&tp.topic)
            .map(|&subtopology| TaskId {
                subtopology,
                partition: tp.partition,
            })
    }

    /// Every task with its partitions (a topic with fewer partitions than its sub-topology's
    /// task count contributes to the first tasks only).
    pub(crate) fn tasks(
        &self,
        counts: &BTreeMap<String, u32>,
    ) -> BTreeMap<TaskId, Vec<TopicPartition>> {
        let mut tasks = BTreeMap::new();
        for (sub, sources) in self.sources.iter().enumerate() {
            for topic in sources.keys() {
                let count = counts.get(topic).copied().unwrap_or(0);
                for partition in 0..count {
                    tasks
                        .entry(TaskId {
                            subtopology: sub as u32,
                            partition,
                        })
                        .or_insert_with(Vec::new)
                        .push(TopicPartition::new(topic.clone(), partition));
                }
            }
        }
        tasks
    }
}

/// The application's assignor (Kafka's `StreamsPartitionAssignor`, reduced to one process).
#[derive(Debug)]
pub(crate) struct StreamsAssignor {
    pub(crate) layout: TaskLayout,
}

impl Assignor for StreamsAssignor {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let mut assignment: Assignment = members
            .iter()
            .map(|m| (m.member_id.clone(), Vec::new()))
            .collect();
        if members.is_empty() {
            return assignment;
        }
        let tasks = self.layout.tasks(partitions);
        // Who had each task: any partition of it among a member's owned partitions.
        let mut previous: HashMap<TaskId, usize> = HashMap::new();
        for (i, member) in members.iter().enumerate() {
            for tp in &member.owned_partitions {
                if let Some(task) = self.layout.task_of(tp) {
                    previous.entry(task).or_insert(i);
                }
            }
        }
        let n = members.len();
        let total = tasks.len();
        let floor = total / n;
        let extra = total % n; // this many members may hold floor + 1
        let mut load = vec![0usize; n];
        let mut at_ceiling = 0usize;
        let fits =
            |load: usize, at_ceiling: usize| load < floor || (load == floor && at_ceiling < extra);
        let mut owner: BTreeMap<TaskId, usize> = BTreeMap::new();
        // Each member should hold at most its share of every sub-topology's tasks too, or one
        // thread could keep all the cheap tasks and another all the expensive ones.
        let mut sub_total: BTreeMap<u32, usize> = BTreeMap::new();
        for task in tasks.keys() {
            *sub_total.entry(task.subtopology).or_default() += 1;
        }
        let sub_cap = |sub: u32| sub_total[&sub].div_ceil(n);
        let mut per_sub: BTreeMap<(u32, usize), usize> = BTreeMap::new();
        // Sticky pass: a task stays with its previous owner while that owner has room.
        for task in tasks.keys() {
            if let Some(&m) = previous.get(task) {
                let held = per_sub.get(&(task.subtopology, m)).copied().unwrap_or(0);
                if fits(load[m], at_ceiling) && held < sub_cap(task.subtopology) {
                    if load[m] == floor {
                        at_ceiling += 1;
                    }
                    load[m] += 1;
                    *per_sub.entry((task.subtopology, m)).or_default() += 1;
                    owner.insert(*task, m);
                }
            }
        }
        // The rest to the least loaded member, spreading each sub-topology's tasks.
        for task in tasks.keys() {
            if owner.contains_key(task) {
                continue;
            }
            let m = (0..n)
                .filter(|&m| fits(load[m], at_ceiling))
                .min_by_key(|&m| {
                    (
                        load[m],
                        per_sub.get(&(task.subtopology, m)).copied().unwrap_or(0),
                        m,
                    )
                })
                .unwrap_or(0);
            if load[m] == floor {
                at_ceiling += 1;
            }
            load[m] += 1;
            *per_sub.entry((task.subtopology, m)).or_default() += 1;
            owner.insert(*task, m);
        }
        let subscribed: Vec<BTreeSet<&str>> = members
            .iter()
            .map(|m| m.topics.iter().map(String::as_str).collect())
            .collect();
        for (task, m) in owner {
            let Some(list) = assignment.get_mut(&members[m].member_id) else {
                continue;
            };
            list.extend(
                tasks[&task]
                    .iter()
                    .filter(|tp| subscribed[m].contains(tp.topic.as_str()))
                    .cloned(),
            );
        }
        for list in assignment.values_mut() {
            list.sort();
        }
        assignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> TaskLayout {
        // Sub-topology 0 joins a and b; sub-topology 1 reads c.
        TaskLayout {
            subtopology_of: HashMap::from([
                ("a".to_string(), 0),
                ("b".to_string(), 0),
                ("c".to_string(), 1),
            ]),
            sources: vec![
                BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 3)]),
                BTreeMap::from([("c".to_string(), 2)]),
            ],
        }
    }

    fn member(id: &str, owned: Vec<TopicPartition>) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            topics: vec!["a".into(), "b".into(), "c".into()],
            owned_partitions: owned,
        }
    }

    #[test]
    fn whole_tasks_balanced_and_sticky() {
        let assignor = StreamsAssignor { layout: layout() };
        let counts = BTreeMap::from([
            ("a".to_string(), 3),
            ("b".to_string(), 3),
            ("c".to_string(), 2),
        ]);
        let one = assignor.assign(&counts, &[member("m1", vec![])]);
        assert_eq!(one["m1"].len(), 8);

        let two = assignor.assign(
            &counts,
            &[member("m1", one["m1"].clone()), member("m2", vec![])],
        );
        let tasks_of = |parts: &[TopicPartition]| {
            parts
                .iter()
                .filter_map(|tp| assignor.layout.task_of(tp))
                .collect::<BTreeSet<_>>()
        };
        let (t1, t2) = (tasks_of(&two["m1"]), tasks_of(&two["m2"]));
        assert!(t1.is_disjoint(&t2));
        assert_eq!(t1.len() + t2.len(), 5);
        assert!(t1.len().abs_diff(t2.len()) <= 1);
        // A task's partitions stay together.
        for parts in two.values() {
            for tp in parts.iter().filter(|tp| tp.topic == "a") {
                assert!(parts.contains(&TopicPartition::new("b", tp.partition)));
            }
        }
        // Sticky: a third member takes only what it needs, from the others' surplus.
        let three = assignor.assign(
            &counts,
            &[
                member("m1", two["m1"].clone()),
                member("m2", two["m2"].clone()),
                member("m3", vec![]),
            ],
        );
        let t1b = tasks_of(&three["m1"]);
        let t2b = tasks_of(&three["m2"]);
        assert!(t1b.is_subset(&t1) && t2b.is_subset(&t2));
        assert_eq!(tasks_of(&three["m3"]).len(), 5 - t1b.len() - t2b.len());
    }

    #[test]
    fn each_member_gets_its_share_of_every_subtopology() {
        // Two sub-topologies of 2 tasks each; member m1 owned all 4 before m2 joined.
        let layout = TaskLayout {
            subtopology_of: HashMap::from([("a".to_string(), 0), ("c".to_string(), 1)]),
            sources: vec![
                BTreeMap::from([("a".to_string(), 2)]),
                BTreeMap::from([("c".to_string(), 2)]),
            ],
        };
        let assignor = StreamsAssignor { layout };
        let counts = BTreeMap::from([("a".to_string(), 2), ("c".to_string(), 2)]);
        let all = assignor.assign(&counts, &[member("m1", vec![])]);
        let two = assignor.assign(
            &counts,
            &[member("m1", all["m1"].clone()), member("m2", vec![])],
        );
        for parts in two.values() {
            let topics: BTreeSet<&str> = parts.iter().map(|tp| tp.topic.as_str()).collect();
            assert_eq!(topics, BTreeSet::from(["a", "c"]), "{two:?}");
        }
    }
}
