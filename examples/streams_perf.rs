//! Streams API performance test: the three speed goals of the Streams API (issue 6), each
//! measured end to end through a running [`Streams`] application, with baselines measured in
//! the same run.
//!
//! ```text
//! cargo run --release --example streams_perf                 # full sizes, 3 runs each
//! cargo run --release --example streams_perf -- --quick      # a few seconds (CI smoke run)
//! cargo run --release --example streams_perf -- --only 2     # one goal
//! cargo run --release --example streams_perf -- --json       # one JSON object on the last line
//! ```
//!
//! Every measurement runs in a fresh directory. Input is appended to its topic before the
//! application starts (straight to the partition logs, not timed); the clock starts at
//! `Streams::start` (so it includes the group join and task creation, reported separately as
//! "start") and stops when the output is complete (the output topics' end offsets reach the
//! expected count). Topics — input, output, the application's repartition and changelog
//! topics and `__consumer_offsets` — have durability `None` (no fsync; the operating system
//! writes back) unless said otherwise: the goals are about processing, not the disk's fsync.
//! Goal 1 is also measured once with every topic at the default durability (`Always`).
//!
//! 1. **Stateless pipeline** (goal: at least 2 million records/s). `--records` records with
//!    8-byte keys and 100-byte values in a 2-partition topic; the application (2 stream
//!    threads) runs `filter` (keeps all) and `map_values` (a new 100-byte value, first byte
//!    upper-cased) and writes a 2-partition output topic. Baselines, same records, same
//!    transformation: a plain `Consumer` → `Producer` copy loop on 2 threads (one partition
//!    each, one shared producer), and the storage floor: appending the output records straight
//!    to the partition logs in batches of 1000 on 2 threads.
//! 2. **Word count** (goal: at least 1 million words/s). `--words` words in lines of 10 (a
//!    10,000-word vocabulary, skewed), 2 partitions; the classic topology: `flat_map_values`
//!    into words, `group_by` word (a repartition topic), `count` into a logged store, the
//!    counts to the output topic (through the record cache, Kafka's default: the latest count
//!    of each word per commit). 2 stream threads. Rate = words / time until every line and
//!    word is processed (the store's counts are checked after). Baselines: one thread reading
//!    the lines
//!    with a `Consumer` and counting in a `HashMap` (no output), and the same plus producing
//!    every count update to a topic.
//! 3. **Restore** (goal: a store of 1 million keys restored in under 1 s). A 1-partition topic
//!    of `--keys` distinct keys (100-byte values) read as a table into a logged store; the
//!    application loads it and closes (writing the store's snapshot); then `--tail` updates
//!    are appended to the changelog (as if the application had crashed after writing them,
//!    before its next snapshot), and the application is started again: time from `start`
//!    until the state is `Running` (tasks restore inside the first poll) and until the store
//!    answers for all keys. Compared with a restore after deleting the snapshot (the whole
//!    changelog replayed), and with starting the same application over an empty topic (the
//!    group join and task creation alone).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tidelog::{
    Broker, BrokerConfig, BytesCodec, Consumed, ConsumerConfig, Durability, Grouped, LogConfig,
    LongCodec, Materialized, OffsetReset, Produced, Producer, ProducerConfig, ProducerRecord,
    Record, Streams, StreamsBuilder, StreamsConfig, StreamsState, StringCodec, TopicPartition,
    Topology,
};

const USAGE: &str = "\
usage: cargo run --release --example streams_perf -- [options]

  --quick              short run (smoke test, a few seconds): small sizes, one run each
  --only N             run only goal N (1: stateless pipeline, 2: word count, 3: restore)
  --records N          goal 1: records (default 5000000; quick 200000)
  --words N            goal 2: words (default 10000000; quick 500000)
  --keys N             goal 3: keys in the store (default 1000000; quick 100000)
  --tail N             goal 3: changelog records past the snapshot (default 50000; quick 5000)
  --reps N             runs of each measurement; median, min and max reported (default 3;
                       quick 1)
  --max-poll-records N the applications' max_poll_records (default: StreamsConfig's, 1000)
  --dir D              parent of the temporary test directories (default: the system temp dir)
  --json               print one JSON object with the results on the last line
  -h, --help           this text";

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const GOAL_PIPELINE_RPS: f64 = 2e6;
const GOAL_WORDCOUNT_RPS: f64 = 1e6;
const GOAL_RESTORE: Duration = Duration::from_secs(1);

const VALUE_LEN: usize = 100;
const PARTITIONS: u32 = 2;
const THREADS: usize = 2;
const GIVE_UP: Duration = Duration::from_secs(600);

struct Opts {
    quick: bool,
    only: Option<u32>,
    records: u64,
    words: u64,
    keys: u64,
    tail: u64,
    reps: usize,
    max_poll_records: Option<usize>,
    dir: Option<PathBuf>,
    json: bool,
}

fn parse_args() -> AnyResult<Option<Opts>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts {
        quick,
        only: None,
        records: if quick { 200_000 } else { 5_000_000 },
        words: if quick { 500_000 } else { 10_000_000 },
        keys: if quick { 100_000 } else { 1_000_000 },
        tail: if quick { 5_000 } else { 50_000 },
        reps: if quick { 1 } else { 3 },
        max_poll_records: None,
        dir: None,
        json: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> AnyResult<String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value").into())
        };
        let number = |s: String| -> AnyResult<u64> {
            s.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("bad number `{s}`: {e}").into())
        };
        match arg.as_str() {
            "--quick" => {}
            "--json" => opts.json = true,
            "--only" => opts.only = Some(number(value(arg)?)? as u32),
            "--records" => opts.records = number(value(arg)?)?,
            "--words" => opts.words = number(value(arg)?)?,
            "--keys" => opts.keys = number(value(arg)?)?,
            "--tail" => opts.tail = number(value(arg)?)?,
            "--reps" => opts.reps = number(value(arg)?)?.max(1) as usize,
            "--max-poll-records" => {
                opts.max_poll_records = Some(number(value(arg)?)?.max(1) as usize)
            }
            "--dir" => opts.dir = Some(PathBuf::from(value(arg)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}").into()),
        }
    }
    if opts.records == 0 || opts.words < 10 || opts.keys == 0 {
        return Err("--records and --keys must be at least 1, --words at least 10".into());
    }
    if opts.only.is_some_and(|n| !(1..=3).contains(&n)) {
        return Err("--only takes 1, 2 or 3".into());
    }
    Ok(Some(opts))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streams_perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> AnyResult<()> {
    let Some(opts) = parse_args()? else {
        return Ok(());
    };
    println!(
        "streams_perf{}: {} runs per measurement, {THREADS} stream threads, {PARTITIONS} \
         partitions, durability None unless said otherwise",
        if opts.quick { " (quick)" } else { "" },
        opts.reps
    );
    let mut json = serde_json::Map::new();
    json.insert("quick".into(), opts.quick.into());
    json.insert("reps".into(), opts.reps.into());
    let mut missed = Vec::new();
    let wanted = |n: u32| opts.only.is_none_or(|only| only == n);
    if wanted(1) {
        goal_pipeline(&opts, &mut json, &mut missed)?;
    }
    if wanted(2) {
        goal_wordcount(&opts, &mut json, &mut missed)?;
    }
    if wanted(3) {
        goal_restore(&opts, &mut json, &mut missed)?;
    }
    println!();
    if missed.is_empty() {
        println!("all goals met");
    } else {
        println!("goals missed: {}", missed.join("; "));
    }
    json.insert("goals_missed".into(), missed.into());
    if opts.json {
        println!("{}", serde_json::Value::Object(json));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A temporary directory with a broker whose topics (and `__consumer_offsets`) have
/// durability `None`, or the defaults when `durable`.
fn open(opts: &Opts, durable: bool) -> AnyResult<(tempfile::TempDir, Broker)> {
    let dir = match &opts.dir {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let config = if durable {
        BrokerConfig::default()
    } else {
        BrokerConfig::default()
            .topic_defaults(LogConfig::default().durability(Durability::None))
            .offsets_topic_config(LogConfig::default().durability(Durability::None))
    };
    let broker = Broker::open_with(dir.path(), config)?;
    Ok((dir, broker))
}

/// Streams creates its internal topics with the default configuration; the throughput runs
/// turn their fsync off like the other topics' (keeping their cleanup policy).
fn relax_internal_topics(broker: &Broker, app: &str) -> AnyResult<()> {
    let prefix = format!("{app}-");
    for name in broker.topics() {
        if name.starts_with(&prefix) {
            let config = broker.topic(&name)?.config().durability(Durability::None);
            broker.set_topic_config(&name, config)?;
        }
    }
    Ok(())
}

fn streams_config(opts: &Opts, app: &str, threads: usize) -> StreamsConfig {
    let config = StreamsConfig::new(app).num_stream_threads(threads);
    match opts.max_poll_records {
        Some(n) => config.max_poll_records(n),
        None => config,
    }
}

/// Appends `records` to `topic`, record `i` to partition `i % partitions`, in batches.
fn fill(
    broker: &Broker,
    topic: &str,
    count: u64,
    mut record: impl FnMut(u64) -> Record,
) -> AnyResult<()> {
    let partitions = broker.topic(topic)?.partitions()?;
    let n = partitions.len() as u64;
    let mut batches: Vec<Vec<Record>> = vec![Vec::with_capacity(1000); partitions.len()];
    for i in 0..count {
        let p = (i % n) as usize;
        batches[p].push(record(i));
        if batches[p].len() == 1000 {
            partitions[p].log()?.append(&batches[p])?;
            batches[p].clear();
        }
    }
    for (p, batch) in batches.iter().enumerate() {
        if !batch.is_empty() {
            partitions[p].log()?.append(batch)?;
        }
    }
    Ok(())
}

fn end_offsets(broker: &Broker, topic: &str) -> AnyResult<u64> {
    Ok(broker
        .topic(topic)?
        .partitions()?
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum())
}

/// Waits until `done`, checking the application for errors.
fn wait_until(
    streams: &Streams,
    what: &str,
    mut done: impl FnMut() -> AnyResult<bool>,
) -> AnyResult<()> {
    let deadline = Instant::now() + GIVE_UP;
    while !done()? {
        if let Some(e) = streams.error() {
            return Err(format!("the application failed while waiting until {what}: {e}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("gave up waiting until {what}").into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

/// Median, min and max.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(samples: &[f64]) -> Spread {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    Spread {
        median,
        min: s[0],
        max: s[s.len() - 1],
    }
}

fn mrps(s: Spread) -> String {
    format!(
        "{:.2} M/s (min {:.2}, max {:.2})",
        s.median / 1e6,
        s.min / 1e6,
        s.max / 1e6
    )
}

fn millis(s: Spread) -> String {
    format!(
        "{:.0} ms (min {:.0}, max {:.0})",
        s.median * 1e3,
        s.min * 1e3,
        s.max * 1e3
    )
}

fn put_spread(json: &mut serde_json::Map<String, serde_json::Value>, name: &str, s: Spread) {
    json.insert(name.into(), s.median.into());
    json.insert(format!("{name}_min"), s.min.into());
    json.insert(format!("{name}_max"), s.max.into());
}

// ---------------------------------------------------------------------------------------------
// Goal 1: stateless pipeline

fn pipeline_key(i: u64) -> Bytes {
    Bytes::from(format!("k{:07}", i % 10_000_000))
}

fn pipeline_value(i: u64) -> Bytes {
    let mut v = format!("record {i:012} ").into_bytes();
    v.resize(VALUE_LEN, b'.');
    Bytes::from(v)
}

fn keep(value: &Bytes) -> bool {
    value.first() != Some(&b'#')
}

fn transform(value: &Bytes) -> Bytes {
    let mut out = value.to_vec();
    out[0] = out[0].to_ascii_uppercase();
    Bytes::from(out)
}

fn pipeline_topology() -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(BytesCodec, BytesCodec))
        .filter(|_: &Bytes, v: &Bytes| keep(v))
        .map_values(|v: Bytes| transform(&v))
        .to("out", Produced::with(BytesCodec, BytesCodec));
    builder.build()
}

struct Timed {
    /// From `start` until the output is complete.
    total: f64,
    /// From `start` until the state is `Running` (every thread has its tasks).
    start: f64,
    /// CPU time of the whole process (every thread) meanwhile.
    cpu: f64,
}

/// CPU seconds this process has used (user + system, all threads). On a busy machine the
/// wall-clock rates depend on what else runs; CPU time per record much less.
fn cpu_time() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn pipeline_input(opts: &Opts, durable: bool) -> AnyResult<(tempfile::TempDir, Broker)> {
    let (dir, broker) = open(opts, durable)?;
    for topic in ["in", "out"] {
        broker.create_topic(topic, PARTITIONS)?;
    }
    fill(&broker, "in", opts.records, |i| {
        Record::new(pipeline_key(i), pipeline_value(i))
    })?;
    Ok((dir, broker))
}

fn run_pipeline(opts: &Opts, durable: bool) -> AnyResult<Timed> {
    let (_dir, broker) = pipeline_input(opts, durable)?;
    let streams = Streams::new(
        &broker,
        pipeline_topology()?,
        streams_config(opts, "pipeline", THREADS),
    )?;
    if !durable {
        relax_internal_topics(&broker, "pipeline")?;
    }
    let (started, cpu) = (Instant::now(), cpu_time());
    streams.start()?;
    let mut running = None;
    wait_until(&streams, "the pipeline's output is complete", || {
        if running.is_none() && streams.state() == StreamsState::Running {
            running = Some(started.elapsed());
        }
        Ok(end_offsets(&broker, "out")? >= opts.records)
    })?;
    let total = started.elapsed();
    let cpu = cpu_time() - cpu;
    streams.close()?;
    let out = end_offsets(&broker, "out")?;
    if out != opts.records {
        return Err(format!("pipeline wrote {out} records, expected {}", opts.records).into());
    }
    Ok(Timed {
        total: total.as_secs_f64(),
        start: running.unwrap_or(total).as_secs_f64(),
        cpu,
    })
}

/// Baseline: the same work by hand, a `Consumer` → `Producer` loop per partition.
fn run_copy_loop(opts: &Opts) -> AnyResult<(f64, f64)> {
    let (_dir, broker) = pipeline_input(opts, false)?;
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(1)),
    )?;
    let (started, cpu) = (Instant::now(), cpu_time());
    let workers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (broker, producer) = (broker.clone(), producer.clone());
            let expected = opts.records / u64::from(PARTITIONS)
                + u64::from(u64::from(p) < opts.records % u64::from(PARTITIONS));
            std::thread::spawn(move || -> AnyResult<()> {
                let mut consumer = broker
                    .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
                consumer.assign(&[TopicPartition::new("in", p)])?;
                let mut seen = 0;
                while seen < expected {
                    for r in consumer.poll(Duration::from_secs(1))? {
                        seen += 1;
                        let Some(value) = r.value.as_ref().filter(|v| keep(v)) else {
                            continue;
                        };
                        let mut record =
                            ProducerRecord::new("out", transform(value)).timestamp(r.timestamp);
                        if let Some(key) = r.key {
                            record = record.key(key);
                        }
                        producer.send_async(record)?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a copy thread panicked")??;
    }
    producer.flush()?;
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_time() - cpu);
    let out = end_offsets(&broker, "out")?;
    if out != opts.records {
        return Err(format!("copy loop wrote {out} records, expected {}", opts.records).into());
    }
    Ok((secs, cpu))
}

/// Floor: the output records appended straight to the logs, one thread per partition.
fn run_log_append(opts: &Opts) -> AnyResult<(f64, f64)> {
    let (_dir, broker) = open(opts, false)?;
    broker.create_topic("out", PARTITIONS)?;
    let (started, cpu) = (Instant::now(), cpu_time());
    let workers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let broker = broker.clone();
            let records = opts.records;
            std::thread::spawn(move || -> AnyResult<()> {
                let partition = broker.partition("out", p)?;
                let log = partition.log()?;
                let mut batch = Vec::with_capacity(1000);
                let mut i = u64::from(p);
                while i < records {
                    batch.push(Record::new(pipeline_key(i), transform(&pipeline_value(i))));
                    if batch.len() == 1000 {
                        log.append(&batch)?;
                        batch.clear();
                    }
                    i += u64::from(PARTITIONS);
                }
                if !batch.is_empty() {
                    log.append(&batch)?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "an append thread panicked")??;
    }
    Ok((started.elapsed().as_secs_f64(), cpu_time() - cpu))
}

fn goal_pipeline(
    opts: &Opts,
    json: &mut serde_json::Map<String, serde_json::Value>,
    missed: &mut Vec<String>,
) -> AnyResult<()> {
    let n = opts.records as f64;
    println!();
    println!(
        "1. stateless pipeline: {} records (8-byte keys, {VALUE_LEN}-byte values), filter + \
         map_values, topic to topic; goal >= {:.0} M records/s",
        opts.records,
        GOAL_PIPELINE_RPS / 1e6
    );
    let (mut rps, mut rps_running, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut copy, mut append) = (Vec::new(), Vec::new());
    let (mut cpu, mut copy_cpu, mut append_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.reps {
        let t = run_pipeline(opts, false)?;
        rps.push(n / t.total);
        rps_running.push(n / (t.total - t.start).max(1e-9));
        starts.push(t.start);
        cpu.push(t.cpu / n * 1e9);
        let (secs, c) = run_copy_loop(opts)?;
        copy.push(n / secs);
        copy_cpu.push(c / n * 1e9);
        let (secs, c) = run_log_append(opts)?;
        append.push(n / secs);
        append_cpu.push(c / n * 1e9);
    }
    let (cpu, copy_cpu, append_cpu) = (spread(&cpu), spread(&copy_cpu), spread(&append_cpu));
    let durable = run_pipeline(opts, true)?;
    let durable_rps = n / durable.total;
    let (rps, rps_running, starts) = (spread(&rps), spread(&rps_running), spread(&starts));
    let (copy, append) = (spread(&copy), spread(&append));
    println!("   Streams app                 {}", mrps(rps));
    println!(
        "     (of which start: {}; rate after start {})",
        millis(starts),
        mrps(rps_running)
    );
    println!(
        "   baseline Consumer->Producer {}   (Streams = {:.0}% of it)",
        mrps(copy),
        100.0 * rps.median / copy.median
    );
    println!(
        "   floor: log append           {}   (Streams = {:.0}% of it)",
        mrps(append),
        100.0 * rps.median / append.median
    );
    println!(
        "   CPU per record (all threads): Streams {:.0} ns, copy loop {:.0} ns, log append {:.0} ns",
        cpu.median, copy_cpu.median, append_cpu.median
    );
    println!(
        "   Streams app, durability Always on every topic (one run): {:.2} M/s",
        durable_rps / 1e6
    );
    let met = rps.median >= GOAL_PIPELINE_RPS;
    println!("   goal {}", if met { "met" } else { "MISSED" });
    if !met {
        missed.push(format!(
            "1 (pipeline {:.2} M/s < {:.0} M/s)",
            rps.median / 1e6,
            GOAL_PIPELINE_RPS / 1e6
        ));
    }
    json.insert("pipeline_records".into(), opts.records.into());
    put_spread(json, "pipeline_rps", rps);
    put_spread(json, "pipeline_rps_after_start", rps_running);
    put_spread(json, "pipeline_start_secs", starts);
    put_spread(json, "pipeline_copy_loop_rps", copy);
    put_spread(json, "pipeline_log_append_rps", append);
    put_spread(json, "pipeline_cpu_ns_per_record", cpu);
    put_spread(json, "pipeline_copy_loop_cpu_ns_per_record", copy_cpu);
    put_spread(json, "pipeline_log_append_cpu_ns_per_record", append_cpu);
    json.insert("pipeline_durable_rps".into(), durable_rps.into());
    json.insert("pipeline_goal_met".into(), met.into());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Goal 2: word count

const WORDS_PER_LINE: u64 = 10;
const VOCABULARY: u64 = 10_000;

/// A deterministic, skewed choice of words: word `i` of the text.
fn word(i: u64) -> String {
    // splitmix64 of the position; squaring a uniform number favours small word numbers.
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    let n = ((u * u) * VOCABULARY as f64) as u64;
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "po", "za", "fe", "gu", "hi", "jo",
        "be",
    ];
    let mut w = String::new();
    let mut rest = n;
    loop {
        w.push_str(SYLLABLES[(rest % 16) as usize]);
        rest /= 16;
        if rest == 0 {
            break;
        }
    }
    w
}

fn lines(words: u64) -> u64 {
    words.div_ceil(WORDS_PER_LINE)
}

fn line(l: u64, words: u64) -> String {
    let first = l * WORDS_PER_LINE;
    let last = (first + WORDS_PER_LINE).min(words);
    (first..last).map(word).collect::<Vec<_>>().join(" ")
}

fn wordcount_topology() -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream("text", Consumed::with(StringCodec, StringCodec))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringCodec, StringCodec).with_name("words"),
        )
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "word-counts",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    builder.build()
}

fn wordcount_input(opts: &Opts) -> AnyResult<(tempfile::TempDir, Broker)> {
    let (dir, broker) = open(opts, false)?;
    for topic in ["text", "word-counts"] {
        broker.create_topic(topic, PARTITIONS)?;
    }
    fill(&broker, "text", lines(opts.words), |l| {
        Record::from_value(line(l, opts.words))
    })?;
    Ok((dir, broker))
}

fn run_wordcount(opts: &Opts) -> AnyResult<Timed> {
    let (_dir, broker) = wordcount_input(opts)?;
    let streams = Streams::new(
        &broker,
        wordcount_topology()?,
        streams_config(opts, "wordcount", THREADS),
    )?;
    relax_internal_topics(&broker, "wordcount")?;
    let (started, cpu) = (Instant::now(), cpu_time());
    streams.start()?;
    let mut running = None;
    // Every line and every word (through the repartition topic) processed; the counts are
    // checked in the store below.
    let records = lines(opts.words) + opts.words;
    wait_until(&streams, "every word is counted", || {
        if running.is_none() && streams.state() == StreamsState::Running {
            running = Some(started.elapsed());
        }
        Ok(streams.metrics().processed >= records)
    })?;
    let total = started.elapsed();
    let cpu = cpu_time() - cpu;
    let counted: i64 = streams
        .store::<String, i64>("counts")?
        .all()?
        .iter()
        .map(|(_, n)| n)
        .sum();
    streams.close()?;
    if counted as u64 != opts.words {
        return Err(format!("the store counted {counted} words, expected {}", opts.words).into());
    }
    Ok(Timed {
        total: total.as_secs_f64(),
        start: running.unwrap_or(total).as_secs_f64(),
        cpu,
    })
}

/// Baselines: one thread reads the lines and counts in a `HashMap`; with `produce`, it also
/// sends every count update to a topic.
fn run_wordcount_baseline(opts: &Opts, produce: bool) -> AnyResult<(f64, f64)> {
    let (_dir, broker) = wordcount_input(opts)?;
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(1)),
    )?;
    let (started, cpu) = (Instant::now(), cpu_time());
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    consumer.assign(
        &(0..PARTITIONS)
            .map(|p| TopicPartition::new("text", p))
            .collect::<Vec<_>>(),
    )?;
    let mut counts: HashMap<String, i64> = HashMap::new();
    let (mut seen, expected) = (0, lines(opts.words));
    while seen < expected {
        for r in consumer.poll(Duration::from_secs(1))? {
            seen += 1;
            let Some(value) = r.value else { continue };
            let text = std::str::from_utf8(&value)?;
            for w in text.split_whitespace() {
                let n = match counts.get_mut(w) {
                    Some(n) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        counts.insert(w.to_owned(), 1);
                        1
                    }
                };
                if produce {
                    producer.send_async(
                        ProducerRecord::new(
                            "word-counts",
                            Bytes::copy_from_slice(&n.to_be_bytes()),
                        )
                        .key(Bytes::copy_from_slice(w.as_bytes())),
                    )?;
                }
            }
        }
    }
    producer.flush()?;
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_time() - cpu);
    let total: i64 = counts.values().sum();
    if total as u64 != opts.words {
        return Err(format!(
            "the baseline counted {total} words, expected {}",
            opts.words
        )
        .into());
    }
    Ok((secs, cpu))
}

fn goal_wordcount(
    opts: &Opts,
    json: &mut serde_json::Map<String, serde_json::Value>,
    missed: &mut Vec<String>,
) -> AnyResult<()> {
    let n = opts.words as f64;
    println!();
    println!(
        "2. word count: {} words in {} lines, {VOCABULARY}-word vocabulary, counts out through \
         the record cache; goal >= {:.0} M words/s",
        opts.words,
        lines(opts.words),
        GOAL_WORDCOUNT_RPS / 1e6
    );
    let (mut rps, mut rps_running, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut count_only, mut count_produce) = (Vec::new(), Vec::new());
    let (mut cpu, mut count_cpu, mut produce_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.reps {
        let t = run_wordcount(opts)?;
        rps.push(n / t.total);
        rps_running.push(n / (t.total - t.start).max(1e-9));
        starts.push(t.start);
        cpu.push(t.cpu / n * 1e9);
        let (secs, c) = run_wordcount_baseline(opts, false)?;
        count_only.push(n / secs);
        count_cpu.push(c / n * 1e9);
        let (secs, c) = run_wordcount_baseline(opts, true)?;
        count_produce.push(n / secs);
        produce_cpu.push(c / n * 1e9);
    }
    let (cpu, count_cpu, produce_cpu) = (spread(&cpu), spread(&count_cpu), spread(&produce_cpu));
    let (rps, rps_running, starts) = (spread(&rps), spread(&rps_running), spread(&starts));
    let (count_only, count_produce) = (spread(&count_only), spread(&count_produce));
    println!("   Streams app                         {}", mrps(rps));
    println!(
        "     (of which start: {}; rate after start {})",
        millis(starts),
        mrps(rps_running)
    );
    println!(
        "   baseline 1 thread, HashMap count    {}",
        mrps(count_only)
    );
    println!(
        "   baseline 1 thread, count + produce  {}   (Streams = {:.0}% of it)",
        mrps(count_produce),
        100.0 * rps.median / count_produce.median
    );
    println!(
        "   CPU per word (all threads): Streams {:.0} ns, HashMap count {:.0} ns, count + produce \
         {:.0} ns",
        cpu.median, count_cpu.median, produce_cpu.median
    );
    let met = rps.median >= GOAL_WORDCOUNT_RPS;
    println!("   goal {}", if met { "met" } else { "MISSED" });
    if !met {
        missed.push(format!(
            "2 (word count {:.2} M/s < {:.0} M/s)",
            rps.median / 1e6,
            GOAL_WORDCOUNT_RPS / 1e6
        ));
    }
    json.insert("wordcount_words".into(), opts.words.into());
    put_spread(json, "wordcount_rps", rps);
    put_spread(json, "wordcount_rps_after_start", rps_running);
    put_spread(json, "wordcount_start_secs", starts);
    put_spread(json, "wordcount_hashmap_rps", count_only);
    put_spread(json, "wordcount_hashmap_produce_rps", count_produce);
    put_spread(json, "wordcount_cpu_ns_per_word", cpu);
    put_spread(json, "wordcount_hashmap_cpu_ns_per_word", count_cpu);
    put_spread(
        json,
        "wordcount_hashmap_produce_cpu_ns_per_word",
        produce_cpu,
    );
    json.insert("wordcount_goal_met".into(), met.into());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Goal 3: restore

const RESTORE_APP: &str = "restore";
const STORE: &str = "kv-store";

fn restore_key(i: u64) -> String {
    format!("key-{i:09}")
}

fn restore_value(i: u64, version: u64) -> Bytes {
    let mut v = format!("value {i} v{version} ").into_bytes();
    v.resize(VALUE_LEN, b'.');
    Bytes::from(v)
}

fn restore_topology(topic: &str) -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    let _table = builder.table::<String, Bytes>(
        topic,
        Consumed::with(StringCodec, BytesCodec),
        Materialized::named(STORE),
    );
    builder.build()
}

/// Start of an application whose store should hold `keys` keys: from `start` until the store
/// answers for them all (its task is created and restored), and until the state is `Running`.
struct Restart {
    running: f64,
    complete: f64,
}

fn restart(broker: &Broker, app: &str, topic: &str, keys: u64) -> AnyResult<Restart> {
    let streams = Streams::new(broker, restore_topology(topic)?, StreamsConfig::new(app))?;
    let store = streams.store::<String, Bytes>(STORE)?;
    let started = Instant::now();
    streams.start()?;
    // The task's store is queryable once restored; the state turns `Running` after the
    // thread's first poll (which, with nothing new to read, waits its poll timeout).
    let (mut running, mut complete) = (None, None);
    wait_until(
        &streams,
        "the store holds every key and the state is Running",
        || {
            if complete.is_none()
                && !streams.local_tasks().is_empty()
                && store.approximate_num_entries()? >= keys
            {
                complete = Some(started.elapsed().as_secs_f64());
            }
            if running.is_none() && streams.state() == StreamsState::Running {
                running = Some(started.elapsed().as_secs_f64());
            }
            Ok(complete.is_some() && running.is_some())
        },
    )?;
    let (running, complete) = (running.unwrap_or_default(), complete.unwrap_or_default());
    // The store answers: the first, the last, and a key updated by the changelog's tail.
    for i in [0, keys / 2, keys.saturating_sub(1)]
        .into_iter()
        .filter(|&i| i < keys)
    {
        if store.get(&restore_key(i))?.is_none() {
            return Err(format!("the restored store misses {}", restore_key(i)).into());
        }
    }
    streams.close()?;
    Ok(Restart { running, complete })
}

fn goal_restore(
    opts: &Opts,
    json: &mut serde_json::Map<String, serde_json::Value>,
    missed: &mut Vec<String>,
) -> AnyResult<()> {
    println!();
    println!(
        "3. restore: a store of {} keys ({VALUE_LEN}-byte values) after a restart, 1 partition, \
         1 stream thread; goal < {} ms",
        opts.keys,
        GOAL_RESTORE.as_millis()
    );
    let (_dir, broker) = open(opts, false)?;
    broker.create_topic("kv", 1)?;
    broker.create_topic("kv-empty", 1)?;
    fill(&broker, "kv", opts.keys, |i| {
        Record::new(restore_key(i), restore_value(i, 0))
    })?;

    // Load: the application builds its store and changelog, and snapshots it on close.
    let streams = Streams::new(
        &broker,
        restore_topology("kv")?,
        StreamsConfig::new(RESTORE_APP),
    )?;
    relax_internal_topics(&broker, RESTORE_APP)?;
    let store = streams.store::<String, Bytes>(STORE)?;
    let started = Instant::now();
    streams.start()?;
    wait_until(&streams, "the store is loaded", || {
        Ok(store.approximate_num_entries()? >= opts.keys)
    })?;
    let loaded = started.elapsed().as_secs_f64();
    streams.close()?;
    drop(store);
    println!(
        "   loading {} keys from the input topic: {:.0} ms ({:.2} M/s)",
        opts.keys,
        loaded * 1e3,
        opts.keys as f64 / loaded / 1e6
    );

    let changelog = format!("{RESTORE_APP}-{STORE}-changelog");
    let state_dir = broker.dir().join("streams-state").join(RESTORE_APP);
    let tail = opts.tail.min(opts.keys);
    let (mut snap_running, mut snap_complete) = (Vec::new(), Vec::new());
    let (mut full_running, mut full_complete) = (Vec::new(), Vec::new());
    let mut empty = Vec::new();
    for rep in 0..opts.reps as u64 {
        // Changelog records past the snapshot: updates of `tail` keys.
        let partition = broker.partition(&changelog, 0)?;
        let log = partition.log()?;
        let mut batch = Vec::with_capacity(1000);
        for j in 0..tail {
            let i = (j * 7919 + rep) % opts.keys;
            batch.push(Record::new(restore_key(i), restore_value(i, rep + 1)));
            if batch.len() == 1000 {
                log.append(&batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            log.append(&batch)?;
        }
        let r = restart(&broker, RESTORE_APP, "kv", opts.keys)?;
        snap_running.push(r.running);
        snap_complete.push(r.complete);

        // The same without the snapshot: the whole changelog replayed.
        match std::fs::remove_dir_all(&state_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let r = restart(&broker, RESTORE_APP, "kv", opts.keys)?;
        full_running.push(r.running);
        full_complete.push(r.complete);

        // Baseline: the same application over an empty topic (a fresh group each time).
        let r = restart(&broker, &format!("empty-{rep}"), "kv-empty", 0)?;
        empty.push(r.complete);
    }
    let changelog_len = end_offsets(&broker, &changelog)?;
    let (snap_running, snap_complete) = (spread(&snap_running), spread(&snap_complete));
    let (full_running, full_complete) = (spread(&full_running), spread(&full_complete));
    let empty = spread(&empty);
    println!(
        "   snapshot + {tail}-record changelog tail: all keys after {}; Running after {}",
        millis(snap_complete),
        millis(snap_running)
    );
    println!(
        "   no snapshot (whole changelog, {changelog_len} records at the end): all keys after \
         {}; Running after {}",
        millis(full_complete),
        millis(full_running)
    );
    println!(
        "   baseline: start with an empty store (task created): {}",
        millis(empty)
    );
    let met = snap_complete.median < GOAL_RESTORE.as_secs_f64();
    println!("   goal {}", if met { "met" } else { "MISSED" });
    if !met {
        missed.push(format!(
            "3 (restore {:.0} ms >= {} ms)",
            snap_complete.median * 1e3,
            GOAL_RESTORE.as_millis()
        ));
    }
    json.insert("restore_keys".into(), opts.keys.into());
    json.insert("restore_tail".into(), tail.into());
    json.insert("restore_load_secs".into(), loaded.into());
    put_spread(json, "restore_snapshot_running_secs", snap_running);
    put_spread(json, "restore_snapshot_secs", snap_complete);
    put_spread(json, "restore_full_replay_running_secs", full_running);
    put_spread(json, "restore_full_replay_secs", full_complete);
    put_spread(json, "restore_empty_start_secs", empty);
    json.insert("restore_goal_met".into(), met.into());
    Ok(())
}
