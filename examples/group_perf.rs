//! Consumer-group performance test: the three speed goals of consumer groups, each with the
//! baseline it is judged against measured in the same run.
//!
//! ```text
//! cargo run --release --example group_perf                 # all three goals
//! cargo run --release --example group_perf -- --quick      # short smoke run
//! cargo run --release --example group_perf -- --only 2     # one goal
//! ```
//!
//! 1. **Rebalance latency** (goal: under 10 ms). A 16-partition topic that a producer thread
//!    appends to every millisecond (`--rate` records/s in total), and a group of 7 members, each
//!    polling in a loop on its own thread. An 8th consumer calls `subscribe` (then polls in its
//!    thread); measured from that call until each of the 8 members has returned from a poll
//!    holding its whole target assignment of the new generation (as `describe_group` gives it),
//!    and separately until the last `on_partitions_assigned` call. Then the 8th closes (leave:
//!    measured the same way for the 7 remaining) and the round starts again. For the range
//!    (eager) and cooperative-sticky assignors, with auto-commit (eager members commit on revoke)
//!    and `__consumer_offsets` at its default durability (`Always`: an fsync per commit) and at
//!    `None`. Median, p90 and max over `--rounds` rounds.
//! 2. **Group consumption** (goal: at least 8 million records/s in total). 8 partitions of
//!    `--records` 100-byte records each; 4 threads, each with a consumer of one group, read
//!    everything; time from the first `subscribe` until the last record arrives. Baselines: one
//!    consumer without a group assigned all 8 partitions, and 4 consumers without a group, each
//!    assigned 2. With `max_poll_records` 5000 and 500 (Kafka's default).
//! 3. **Commits** (goal: at least 100,000 commits/s from one member). A member with one
//!    partition commits one offset per call, `--commits` times: `commit_async_offsets` and
//!    `commit_sync_offsets` with `__consumer_offsets` at durability `None`, and
//!    `commit_sync_offsets` at the default `Always` (an fsync per commit; at most
//!    `--always-commits` calls or 5 s).

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, CooperativeStickyAssignor, Durability,
    GroupState, LogConfig, OffsetAndMetadata, OffsetReset, RangeAssignor, RebalanceListener,
    Record, TopicPartition, WakeupHandle,
};

const USAGE: &str = "\
usage: cargo run --release --example group_perf -- [options]

  --quick              short run (smoke test): fewer rounds, records and commits
  --only N             run only goal N (1: rebalance, 2: group consumption, 3: commits)
  --rounds N           goal 1: join/leave rounds per configuration (default 100; quick 10)
  --rate R             goal 1: records/s the producer appends during the rounds, at least
                       16000 (default 160000)
  --records N          goal 2: records per partition (default 2000000; quick 100000)
  --reps N             goal 2: runs of each measurement, the median reported (default 3;
                       quick 1)
  --commits N          goal 3: commits per measurement at durability None (default 200000;
                       quick 20000)
  --always-commits N   goal 3: most commits at durability Always (default 2000; quick 200)
  --dir D              parent of the temporary test directories (default: the system temp dir)
  -h, --help           this text";

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const VALUE_LEN: usize = 100;

/// Goal 1: most time the hand-over may take, per rebalance.
const GOAL_REBALANCE: Duration = Duration::from_millis(10);
/// Goal 2: records/s a group of 4 reads in total.
const GOAL_GROUP_RPS: f64 = 8e6;
/// Goal 3: commits/s from one member.
const GOAL_COMMITS: f64 = 1e5;

struct Opts {
    quick: bool,
    only: Option<u32>,
    rounds: usize,
    rate: u64,
    records: u64,
    reps: usize,
    commits: u64,
    always_commits: u64,
    dir: Option<PathBuf>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag}: cannot parse {value:?}"))
    }
    let args: Vec<String> = args.into_iter().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts {
        quick,
        only: None,
        rounds: if quick { 10 } else { 100 },
        rate: 160_000,
        records: if quick { 100_000 } else { 2_000_000 },
        reps: if quick { 1 } else { 3 },
        commits: if quick { 20_000 } else { 200_000 },
        always_commits: if quick { 200 } else { 2_000 },
        dir: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {}
            "--only" => opts.only = Some(num(&arg, args.next())?),
            "--rounds" => opts.rounds = num(&arg, args.next())?,
            "--rate" => opts.rate = num(&arg, args.next())?,
            "--records" => opts.records = num(&arg, args.next())?,
            "--reps" => opts.reps = num(&arg, args.next())?,
            "--commits" => opts.commits = num(&arg, args.next())?,
            "--always-commits" => opts.always_commits = num(&arg, args.next())?,
            "--dir" => opts.dir = Some(PathBuf::from(args.next().ok_or("--dir needs a value")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.only.is_some_and(|n| !(1..=3).contains(&n)) {
        return Err("--only takes 1, 2 or 3".into());
    }
    if opts.rate < 16_000 {
        return Err(
            "--rate must be at least 16000 (a record per partition per millisecond)".into(),
        );
    }
    if opts.rounds == 0
        || opts.records == 0
        || opts.reps == 0
        || opts.commits == 0
        || opts.always_commits == 0
    {
        return Err("--rounds, --records, --reps and the commit counts must be at least 1".into());
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(args) {
        Ok(opts) => opts,
        Err(why) => {
            eprintln!("group_perf: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("group_perf: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Opts) -> AnyResult<()> {
    println!(
        "tidelog group_perf{}",
        if opts.quick { " (quick)" } else { "" }
    );
    let wanted = |n: u32| opts.only.is_none_or(|o| o == n);
    if wanted(1) {
        goal_rebalance(opts)?;
    }
    if wanted(2) {
        goal_consumption(opts)?;
    }
    if wanted(3) {
        goal_commits(opts)?;
    }
    Ok(())
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// A new temporary directory under `--dir` or the system's.
fn temp_dir(opts: &Opts) -> AnyResult<tempfile::TempDir> {
    let parent = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    Ok(tempfile::Builder::new()
        .prefix("tidelog-group-perf-")
        .tempdir_in(&parent)?)
}

/// A broker with data topics at durability `None` and `__consumer_offsets` at `offsets`
/// (`Always` is its default).
fn open_broker(dir: &std::path::Path, offsets: Durability) -> AnyResult<Broker> {
    let mut config =
        BrokerConfig::default().topic_defaults(LogConfig::default().durability(Durability::None));
    if offsets != Durability::Always {
        config = config.offsets_topic_config(LogConfig::default().durability(offsets));
    }
    Ok(Broker::open_with(dir, config)?)
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::None => "offsets None",
        Durability::Always => "offsets Always (fsync)",
        _ => "offsets Interval",
    }
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile<T: Copy>(v: &[T], q: f64) -> T {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ============================================================================ goal 1: rebalance

const REBALANCE_TOPIC: &str = "rebalance";
const REBALANCE_PARTITIONS: u32 = 16;
/// Members before the 8th joins.
const STEADY_MEMBERS: usize = 7;
const GROUP: &str = "g";
const MEMBER_POLL: Duration = Duration::from_millis(100);
/// How long one hand-over may take before the run fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(20);
/// The producer appends once per tick.
const TICK: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Range,
    CooperativeSticky,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Range => "range (eager)",
            Strategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    fn config(self) -> ConsumerConfig {
        let config = ConsumerConfig::default()
            .group_id(GROUP)
            .auto_offset_reset(OffsetReset::Earliest);
        match self {
            Strategy::Range => config.partition_assignment_strategy(RangeAssignor),
            Strategy::CooperativeSticky => {
                config.partition_assignment_strategy(CooperativeStickyAssignor)
            }
        }
    }
}

/// What a member thread last saw after a poll.
#[derive(Clone)]
struct Published {
    member_id: String,
    generation: i32,
    assignment: Vec<TopicPartition>,
    /// When the first poll that returned with this generation and assignment returned.
    since: Instant,
    /// The last `on_partitions_assigned` call so far.
    assigned_at: Option<Instant>,
}

/// The members' published states; the main thread waits on it.
struct Board {
    slots: Mutex<Vec<Option<Published>>>,
    changed: Condvar,
}

/// When a hand-over was complete.
struct HandOver {
    /// The last member's first poll return holding its target.
    polled: Instant,
    /// The last `on_partitions_assigned` call after the start, if any.
    assigned: Option<Instant>,
}

impl Board {
    fn new(slots: usize) -> Board {
        Board {
            slots: Mutex::new(vec![None; slots]),
            changed: Condvar::new(),
        }
    }

    fn publish(&self, slot: usize, state: Option<Published>) {
        self.slots.lock().expect("board")[slot] = state;
        self.changed.notify_all();
    }

    /// Waits until the member in each of `slots` has returned from a poll, at or after `after`,
    /// holding its target in `targets` for `generation`.
    fn wait_for(
        &self,
        slots: Range<usize>,
        generation: i32,
        targets: &HashMap<String, Vec<TopicPartition>>,
        after: Instant,
    ) -> AnyResult<HandOver> {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let mut guard = self.slots.lock().expect("board");
        loop {
            let mut done = HandOver {
                polled: after,
                assigned: None,
            };
            let complete = guard[slots.clone()].iter().all(|s| {
                let Some(p) = s else { return false };
                let ok = p.generation == generation
                    && p.since >= after
                    && targets.get(&p.member_id) == Some(&p.assignment);
                if ok {
                    done.polled = done.polled.max(p.since);
                    if let Some(at) = p.assigned_at.filter(|at| *at >= after) {
                        done.assigned = Some(done.assigned.map_or(at, |d| d.max(at)));
                    }
                }
                ok
            });
            if complete {
                return Ok(done);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "members {slots:?} did not take their generation-{generation} assignment within {ROUND_TIMEOUT:?}"
                )
                .into());
            }
            guard = self
                .changed
                .wait_timeout(guard, deadline - now)
                .expect("board")
                .0;
        }
    }
}

/// Notes rebalance callbacks for the member thread.
struct Watch {
    changed: Arc<AtomicBool>,
    assigned_at: Arc<Mutex<Option<Instant>>>,
}

impl RebalanceListener for Watch {
    fn on_partitions_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        self.changed.store(true, Ordering::Release);
    }

    fn on_partitions_assigned(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        *self.assigned_at.lock().expect("watch") = Some(Instant::now());
        self.changed.store(true, Ordering::Release);
    }
}

/// A member: a consumer of the group, polling until `stop`, publishing its state in `slot`.
struct Member {
    consumer: Consumer,
    changed: Arc<AtomicBool>,
    assigned_at: Arc<Mutex<Option<Instant>>>,
}

impl Member {
    fn new(broker: &Broker, strategy: Strategy) -> AnyResult<Member> {
        let mut consumer = broker.consumer(strategy.config())?;
        let changed = Arc::new(AtomicBool::new(false));
        let assigned_at = Arc::new(Mutex::new(None));
        consumer.set_rebalance_listener(Watch {
            changed: Arc::clone(&changed),
            assigned_at: Arc::clone(&assigned_at),
        });
        Ok(Member {
            consumer,
            changed,
            assigned_at,
        })
    }

    fn poll_loop(&mut self, slot: usize, board: &Board, stop: &AtomicBool) -> AnyResult<u64> {
        let mut received = 0u64;
        let mut last: Option<(i32, Vec<TopicPartition>)> = None;
        while !stop.load(Ordering::Acquire) {
            let records = self.consumer.poll(MEMBER_POLL)?;
            let now = Instant::now();
            received += records.len() as u64;
            std::hint::black_box(&records);
            let meta = self.consumer.group_metadata().ok_or("no group")?;
            let changed = self.changed.swap(false, Ordering::AcqRel);
            if !changed && last.as_ref().is_some_and(|(g, _)| *g == meta.generation) {
                continue;
            }
            let assignment = self.consumer.assignment();
            if last
                .as_ref()
                .is_some_and(|(g, a)| *g == meta.generation && *a == assignment)
            {
                continue;
            }
            last = Some((meta.generation, assignment.clone()));
            board.publish(
                slot,
                Some(Published {
                    member_id: meta.member_id,
                    generation: meta.generation,
                    assignment,
                    since: now,
                    assigned_at: *self.assigned_at.lock().expect("watch"),
                }),
            );
        }
        Ok(received)
    }
}

/// The group's generation and each member's target, once it has `members` members.
fn group_targets(
    broker: &Broker,
    members: usize,
) -> AnyResult<(i32, HashMap<String, Vec<TopicPartition>>, GroupState)> {
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        let d = broker.describe_group(GROUP)?;
        if d.members.len() == members {
            let targets = d
                .members
                .into_iter()
                .map(|m| (m.member_id, m.assignment))
                .collect();
            return Ok((d.generation, targets, d.state));
        }
        if Instant::now() >= deadline {
            return Err(format!("the group has {} members, not {members}", d.members.len()).into());
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Appends `per_tick` records to every partition each tick until `stop`.
fn produce_loop(broker: &Broker, per_tick: usize, stop: &AtomicBool) -> AnyResult<u64> {
    let partitions = (0..REBALANCE_PARTITIONS)
        .map(|p| broker.partition(REBALANCE_TOPIC, p))
        .collect::<Result<Vec<_>, _>>()?;
    let value = bytes::Bytes::from(vec![b'v'; VALUE_LEN]);
    let mut appended = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        // Stamped now, so retention never applies.
        let batch: Vec<Record> = (0..per_tick)
            .map(|_| Record::from_value(value.clone()))
            .collect();
        for p in &partitions {
            p.log()?.append(&batch)?;
            appended += per_tick as u64;
        }
        next += TICK;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(appended)
}

struct RebalanceStats {
    join_polled: Vec<Duration>,
    join_assigned: Vec<Duration>,
    leave_polled: Vec<Duration>,
    not_stable: usize,
    consumed: u64,
    produced: u64,
}

/// The 8th member's thread for one round: waits for `go`, subscribes, polls until stopped,
/// then closes its consumer.
struct Joiner {
    go: mpsc::Sender<()>,
    started: mpsc::Receiver<Instant>,
    stop: Arc<AtomicBool>,
    wakeup: WakeupHandle,
    handle: thread::JoinHandle<AnyResult<(Instant, u64)>>,
}

fn spawn_joiner(broker: &Broker, strategy: Strategy, board: &Arc<Board>) -> AnyResult<Joiner> {
    let mut member = Member::new(broker, strategy)?;
    let wakeup = member.consumer.wakeup_handle();
    let (go, go_rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<Instant>();
    let stop = Arc::new(AtomicBool::new(false));
    let (board, thread_stop) = (Arc::clone(board), Arc::clone(&stop));
    let handle = thread::Builder::new().name("member-8".into()).spawn(
        move || -> AnyResult<(Instant, u64)> {
            go_rx.recv()?;
            let t0 = Instant::now();
            member.consumer.subscribe(&[REBALANCE_TOPIC])?;
            started_tx.send(t0)?;
            let received = member.poll_loop(STEADY_MEMBERS, &board, &thread_stop)?;
            board.publish(STEADY_MEMBERS, None);
            let left = Instant::now();
            member.consumer.close()?;
            Ok((left, received))
        },
    )?;
    Ok(Joiner {
        go,
        started,
        stop,
        wakeup,
        handle,
    })
}

fn rebalance_config(
    opts: &Opts,
    strategy: Strategy,
    offsets: Durability,
) -> AnyResult<RebalanceStats> {
    let tmp = temp_dir(opts)?;
    let broker = open_broker(tmp.path(), offsets)?;
    broker.create_topic(REBALANCE_TOPIC, REBALANCE_PARTITIONS)?;
    let board = Arc::new(Board::new(STEADY_MEMBERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let setup = Instant::now();

    let per_tick = (opts.rate / 1000)
        .div_ceil(u64::from(REBALANCE_PARTITIONS))
        .max(1) as usize;
    let producer = {
        let (broker, stop) = (broker.clone(), Arc::clone(&stop));
        thread::Builder::new()
            .name("producer".into())
            .spawn(move || produce_loop(&broker, per_tick, &stop))?
    };
    let mut members = Vec::new();
    let mut wakeups = Vec::new();
    for slot in 0..STEADY_MEMBERS {
        let mut member = Member::new(&broker, strategy)?;
        wakeups.push(member.consumer.wakeup_handle());
        member.consumer.subscribe(&[REBALANCE_TOPIC])?;
        let (board, stop) = (Arc::clone(&board), Arc::clone(&stop));
        members.push(
            thread::Builder::new()
                .name(format!("member-{slot}"))
                .spawn(move || member.poll_loop(slot, &board, &stop))?,
        );
    }

    let result = rebalance_rounds(opts, &broker, strategy, &board, setup);

    stop.store(true, Ordering::Release);
    for w in &wakeups {
        w.wakeup();
    }
    let produced = producer.join().map_err(|_| "the producer panicked")??;
    let mut consumed = 0;
    for m in members {
        consumed += m.join().map_err(|_| "a member panicked")??;
    }
    let mut stats = result?;
    stats.consumed += consumed;
    stats.produced = produced;
    Ok(stats)
}

fn rebalance_rounds(
    opts: &Opts,
    broker: &Broker,
    strategy: Strategy,
    board: &Arc<Board>,
    setup: Instant,
) -> AnyResult<RebalanceStats> {
    let mut stats = RebalanceStats {
        join_polled: Vec::with_capacity(opts.rounds),
        join_assigned: Vec::with_capacity(opts.rounds),
        leave_polled: Vec::with_capacity(opts.rounds),
        not_stable: 0,
        consumed: 0,
        produced: 0,
    };
    // The 7 settle first.
    let (generation, targets7, _) = group_targets(broker, STEADY_MEMBERS)?;
    board.wait_for(0..STEADY_MEMBERS, generation, &targets7, setup)?;

    // One round untimed, as a warm-up.
    for round in 0..=opts.rounds {
        let joiner = spawn_joiner(broker, strategy, board)?;
        joiner.go.send(())?;
        let t0 = joiner.started.recv()?;
        let (generation, targets, _) = group_targets(broker, STEADY_MEMBERS + 1)?;
        let done = board.wait_for(0..STEADY_MEMBERS + 1, generation, &targets, t0)?;
        if broker.describe_group(GROUP)?.state != GroupState::Stable {
            stats.not_stable += 1;
        }

        joiner.stop.store(true, Ordering::Release);
        joiner.wakeup.wakeup();
        let (left, received) = joiner.handle.join().map_err(|_| "the 8th panicked")??;
        let (generation, targets, _) = group_targets(broker, STEADY_MEMBERS)?;
        let after_leave = board.wait_for(0..STEADY_MEMBERS, generation, &targets, left)?;
        if round > 0 {
            stats.join_polled.push(done.polled - t0);
            if let Some(at) = done.assigned {
                stats.join_assigned.push(at - t0);
            }
            stats.leave_polled.push(after_leave.polled - left);
            stats.consumed += received;
        }
    }
    Ok(stats)
}

/// "median x ms, p90 y ms, max z ms" of `v` (sorted in place).
fn spread(v: &mut [Duration]) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    (quantile(v, 0.5), quantile(v, 0.9), v[v.len() - 1])
}

fn goal_rebalance(opts: &Opts) -> AnyResult<()> {
    println!(
        "\ngoal 1: an 8th member's subscribe -> all 8 members polled with their whole new assignment: < {} ms (judged on p90)",
        GOAL_REBALANCE.as_millis()
    );
    println!(
        "  16 partitions, producer {} records/s, 7 members polling (max_poll_records 500, auto-commit on), {} rounds per line",
        opts.rate, opts.rounds
    );
    for strategy in [Strategy::Range, Strategy::CooperativeSticky] {
        for offsets in [Durability::Always, Durability::None] {
            let mut stats = rebalance_config(opts, strategy, offsets)?;
            let (m, p90, max) = spread(&mut stats.join_polled);
            let assigned = if stats.join_assigned.is_empty() {
                "none".to_string()
            } else {
                let (am, ap, amax) = spread(&mut stats.join_assigned);
                format!(
                    "median {:.2} / p90 {:.2} / max {:.2} ms",
                    ms(am),
                    ms(ap),
                    ms(amax)
                )
            };
            let (lm, lp, lmax) = spread(&mut stats.leave_polled);
            println!(
                "  {:<19} {:<23} join: median {:6.2} ms, p90 {:6.2} ms, max {:6.2} ms  [{}]",
                strategy.name(),
                durability_name(offsets),
                ms(m),
                ms(p90),
                ms(max),
                verdict(p90 < GOAL_REBALANCE)
            );
            println!(
                "      last on_partitions_assigned: {assigned}; leave of the 8th (close -> 7 polled): median {:.2} / p90 {:.2} / max {:.2} ms; not Stable at the end: {}; consumed {} of {} produced",
                ms(lm),
                ms(lp),
                ms(lmax),
                stats.not_stable,
                stats.consumed,
                stats.produced
            );
        }
    }
    Ok(())
}

// ============================================================================ goal 2: consumption

const READ_TOPIC: &str = "read";
const READ_PARTITIONS: u32 = 8;
const READ_BATCH: usize = 1000;
/// A reader that receives nothing for this long gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
enum Readers {
    /// One consumer, no group, assigned every partition.
    Single,
    /// This many consumers, no group, each assigned its share of the partitions.
    Assigned(usize),
    /// This many consumers of one group, subscribed.
    Group(usize),
}

impl Readers {
    fn threads(self) -> usize {
        match self {
            Readers::Single => 1,
            Readers::Assigned(n) | Readers::Group(n) => n,
        }
    }
}

/// What the reader threads share.
struct ReadShared {
    /// Per partition: one past the highest offset received.
    next: Vec<AtomicU64>,
    /// Partitions not yet read to their end.
    left: AtomicUsize,
    received: AtomicU64,
    done: AtomicBool,
    end: Mutex<Option<Instant>>,
    wakeups: Mutex<Vec<WakeupHandle>>,
}

struct ReadOutcome {
    secs: f64,
    received: u64,
}

/// Reads the whole topic with `readers`; returns the time from the first subscribe or assign
/// until the last record arrived.
fn read_all(
    broker: &Broker,
    ends: &[u64],
    readers: Readers,
    max_poll_records: usize,
    group_id: &str,
) -> AnyResult<ReadOutcome> {
    let n = readers.threads();
    let shared = Arc::new(ReadShared {
        next: ends.iter().map(|_| AtomicU64::new(0)).collect(),
        left: AtomicUsize::new(ends.len()),
        received: AtomicU64::new(0),
        done: AtomicBool::new(false),
        end: Mutex::new(None),
        wakeups: Mutex::new(Vec::new()),
    });
    let barrier = Arc::new(Barrier::new(n));
    let mut handles = Vec::new();
    for i in 0..n {
        let mut config = ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(max_poll_records);
        if matches!(readers, Readers::Group(_)) {
            config = config.group_id(group_id);
        }
        let mut consumer = broker.consumer(config)?;
        shared
            .wakeups
            .lock()
            .expect("wakeups")
            .push(consumer.wakeup_handle());
        let share: Vec<TopicPartition> = (0..READ_PARTITIONS)
            .filter(|p| *p as usize % n == i)
            .map(|p| TopicPartition::new(READ_TOPIC, p))
            .collect();
        let (shared, barrier, ends) = (Arc::clone(&shared), Arc::clone(&barrier), ends.to_vec());
        handles.push(thread::Builder::new().name(format!("reader-{i}")).spawn(
            move || -> AnyResult<Instant> {
                barrier.wait();
                let start = Instant::now();
                let result = read_loop(&mut consumer, readers, &share, &ends, &shared);
                if result.is_err() {
                    shared.done.store(true, Ordering::Release);
                }
                result.map(|()| start)
            },
        )?);
    }
    let mut start: Option<Instant> = None;
    for h in handles {
        let s = h.join().map_err(|_| "a reader panicked")??;
        start = Some(start.map_or(s, |t| t.min(s)));
    }
    let end = shared.end.lock().expect("end").ok_or("no end time")?;
    let start = start.ok_or("no reader")?;
    Ok(ReadOutcome {
        secs: end.duration_since(start).as_secs_f64(),
        received: shared.received.load(Ordering::Acquire),
    })
}

fn read_loop(
    consumer: &mut Consumer,
    readers: Readers,
    share: &[TopicPartition],
    ends: &[u64],
    shared: &ReadShared,
) -> AnyResult<()> {
    match readers {
        Readers::Group(_) => consumer.subscribe(&[READ_TOPIC])?,
        Readers::Single => {
            let all: Vec<TopicPartition> = (0..READ_PARTITIONS)
                .map(|p| TopicPartition::new(READ_TOPIC, p))
                .collect();
            consumer.assign(&all)?;
        }
        Readers::Assigned(_) => consumer.assign(share)?,
    }
    let mut high = vec![0u64; ends.len()];
    let mut last = Instant::now();
    let mut bytes = 0usize;
    while !shared.done.load(Ordering::Acquire) {
        let records = consumer.poll(Duration::from_millis(100))?;
        if records.is_empty() {
            if last.elapsed() > IDLE_TIMEOUT {
                return Err(format!("a reader received nothing for {IDLE_TIMEOUT:?}").into());
            }
            continue;
        }
        last = Instant::now();
        for r in &records {
            let p = r.partition as usize;
            high[p] = high[p].max(r.offset + 1);
            bytes += r.value.as_ref().map_or(0, |v| v.len());
        }
        shared
            .received
            .fetch_add(records.len() as u64, Ordering::AcqRel);
        for (p, h) in high.iter_mut().enumerate() {
            if *h == 0 {
                continue;
            }
            let prev = shared.next[p].fetch_max(*h, Ordering::AcqRel);
            if prev < ends[p] && *h >= ends[p] && shared.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                *shared.end.lock().expect("end") = Some(Instant::now());
                shared.done.store(true, Ordering::Release);
                for w in shared.wakeups.lock().expect("wakeups").iter() {
                    w.wakeup();
                }
            }
            *h = 0;
        }
    }
    std::hint::black_box(bytes);
    Ok(())
}

fn goal_consumption(opts: &Opts) -> AnyResult<()> {
    let total = opts.records * u64::from(READ_PARTITIONS);
    println!(
        "\ngoal 2: a group of 4 reading 8 partitions: >= {:.0} M records/s in total",
        GOAL_GROUP_RPS / 1e6
    );
    let tmp = temp_dir(opts)?;
    let broker = open_broker(tmp.path(), Durability::Always)?;
    broker.create_topic(READ_TOPIC, READ_PARTITIONS)?;
    let fill = Instant::now();
    let batch: Vec<Record> = (0..READ_BATCH)
        .map(|_| Record::from_value(vec![b'v'; VALUE_LEN]))
        .collect();
    let mut ends = Vec::new();
    for p in 0..READ_PARTITIONS {
        let partition = broker.partition(READ_TOPIC, p)?;
        let log = partition.log()?;
        let mut left = opts.records;
        while left > 0 {
            let n = left.min(READ_BATCH as u64) as usize;
            log.append(&batch[..n])?;
            left -= n as u64;
        }
        ends.push(log.log_end_offset());
    }
    let written = fill.elapsed();
    // Written back before the runs, so that no run competes with the writeback of the fill.
    for p in 0..READ_PARTITIONS {
        broker.partition(READ_TOPIC, p)?.log()?.flush()?;
    }
    println!(
        "  {} partitions x {} records x {VALUE_LEN} B ({total} records) written in {:.1} s, flushed in {:.1} s; {} run(s) each (modes in turn), median shown; offsets Always (fsync), auto-commit on",
        READ_PARTITIONS,
        opts.records,
        written.as_secs_f64(),
        (fill.elapsed() - written).as_secs_f64(),
        opts.reps
    );
    // An untimed read first: every later run finds the same warm page cache.
    read_all(&broker, &ends, Readers::Assigned(4), 5_000, "")?;
    let modes = [
        ("group of 4 (subscribe)", Readers::Group(4)),
        ("4 consumers, assign 2 each", Readers::Assigned(4)),
        ("1 consumer, assign all 8", Readers::Single),
    ];
    let polls = [5_000usize, 500];
    let mut rps: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    let mut group_seq = 0;
    for rep in 0..opts.reps {
        for &max_poll in &polls {
            // Each rep starts with another mode, so that none is always first.
            for k in 0..modes.len() {
                let i = (rep + k) % modes.len();
                let readers = modes[i].1;
                group_seq += 1;
                let out = read_all(
                    &broker,
                    &ends,
                    readers,
                    max_poll,
                    &format!("read-{group_seq}"),
                )?;
                if out.received != total {
                    println!(
                        "  note: {:?} run received {} records for {total} (duplicates after a rebalance)",
                        modes[i].0, out.received
                    );
                }
                rps.entry((max_poll, i))
                    .or_default()
                    .push(total as f64 / out.secs);
            }
        }
    }
    for &max_poll in &polls {
        println!("  max_poll_records {max_poll}:");
        let group = median(rps[&(max_poll, 0)].clone());
        for (i, (name, _)) in modes.iter().enumerate() {
            let v = median(rps[&(max_poll, i)].clone());
            let tail = if i == 0 && max_poll == 5_000 {
                format!("  [{}]", verdict(v >= GOAL_GROUP_RPS))
            } else if i == 0 {
                "  [info: the goal is set at max_poll_records 5000]".to_string()
            } else {
                format!("  (group / this = {:.2})", group / v)
            };
            println!("    {name:<27} {:6.2} M records/s{tail}", v / 1e6);
        }
    }
    Ok(())
}

// ============================================================================ goal 3: commits

const COMMIT_TOPIC: &str = "commits";
/// Most time the fsync-per-commit measurement runs.
const ALWAYS_MAX_TIME: Duration = Duration::from_secs(5);

/// A member of a new group with the one partition of `COMMIT_TOPIC`.
fn commit_member(broker: &Broker) -> AnyResult<(Consumer, TopicPartition)> {
    broker.create_topic(COMMIT_TOPIC, 1)?;
    let mut consumer = broker.consumer(ConsumerConfig::default().group_id("committer"))?;
    consumer.subscribe(&[COMMIT_TOPIC])?;
    let tp = TopicPartition::new(COMMIT_TOPIC, 0);
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while consumer.assignment() != [tp.clone()] {
        if Instant::now() >= deadline {
            return Err("the committing member got no partition".into());
        }
        consumer.poll(Duration::from_millis(10))?;
    }
    Ok((consumer, tp))
}

/// Commits offsets 1, 2, ... with `sync` or async, `n` times or until `max_time`; returns
/// commits/s.
fn commit_rate(
    consumer: &mut Consumer,
    tp: &TopicPartition,
    sync: bool,
    n: u64,
    max_time: Duration,
) -> AnyResult<f64> {
    let mut offsets = [(tp.clone(), OffsetAndMetadata::new(0))];
    let start = Instant::now();
    let mut done = 0u64;
    while done < n {
        done += 1;
        offsets[0].1 = OffsetAndMetadata::new(done);
        if sync {
            consumer.commit_sync_offsets(&offsets)?;
        } else {
            consumer.commit_async_offsets(&offsets)?;
        }
        if done.is_multiple_of(64) && start.elapsed() >= max_time {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let committed = consumer.committed(std::slice::from_ref(tp))?;
    if committed[0].as_ref().map(|c| c.offset) != Some(done) {
        return Err(format!("committed {committed:?} after {done} commits").into());
    }
    Ok(done as f64 / secs)
}

fn goal_commits(opts: &Opts) -> AnyResult<()> {
    println!(
        "\ngoal 3: one member committing one offset per call: >= {:.0} commits/s",
        GOAL_COMMITS
    );
    let mut rows = Vec::new();
    {
        let tmp = temp_dir(opts)?;
        let broker = open_broker(tmp.path(), Durability::None)?;
        let (mut consumer, tp) = commit_member(&broker)?;
        // Warm-up.
        commit_rate(&mut consumer, &tp, false, 1_000, Duration::MAX)?;
        let n = opts.commits;
        rows.push((
            "commit_async_offsets, offsets None",
            commit_rate(&mut consumer, &tp, false, n, Duration::MAX)?,
        ));
        rows.push((
            "commit_sync_offsets,  offsets None",
            commit_rate(&mut consumer, &tp, true, n, Duration::MAX)?,
        ));
        consumer.close()?;
    }
    {
        let tmp = temp_dir(opts)?;
        let broker = open_broker(tmp.path(), Durability::Always)?;
        let (mut consumer, tp) = commit_member(&broker)?;
        commit_rate(&mut consumer, &tp, true, 10, Duration::MAX)?;
        // The default configuration: asynchronous commits are fsynced in the background.
        rows.push((
            "commit_async_offsets, offsets Always (default)",
            commit_rate(&mut consumer, &tp, false, opts.commits, Duration::MAX)?,
        ));
        rows.push((
            "commit_sync_offsets,  offsets Always (fsync each)",
            commit_rate(
                &mut consumer,
                &tp,
                true,
                opts.always_commits,
                ALWAYS_MAX_TIME,
            )?,
        ));
        consumer.close()?;
    }
    for (name, rate) in rows {
        println!(
            "  {name:<49} {:>10.0} commits/s ({:7.2} us each)  [{}]",
            rate,
            1e6 / rate,
            verdict(rate >= GOAL_COMMITS)
        );
    }
    Ok(())
}
