//! Producer and end-to-end performance test, in the spirit of Kafka's `kafka-producer-perf-test`
//! and `end-to-end-latency` tools, with the baselines it is judged against measured in the same
//! run.
//!
//! ```text
//! cargo run --release --example perf -- [options]
//!
//! cargo run --release --example perf                                   # 1M x 100 B, one producer, one consumer
//! cargo run --release --example perf -- --consumers 0                  # producer throughput only
//! cargo run --release --example perf -- --rate 100000 --batch 1        # end-to-end latency, consumer parks
//! cargo run --release --example perf -- --rate 100000 --batch 1 --spin # ... consumer spins
//! cargo run --release --example perf -- --producers 4 --durability always --consumers 0
//! ```
//!
//! What it does:
//!
//! 1. Baseline 1: `File::write_all` of `records x size` bytes, in chunks the size of one producer
//!    batch (`batch x size` bytes), to a file in the test directory (no fsync).
//! 2. Creates a fresh topic (`--partitions`, `--durability`) in a new temporary directory (under
//!    `--dir` if given), starts `--consumers` consumer threads, each with its own consumer
//!    subscribed to the topic (every consumer receives every record), and `--producers` threads
//!    sharing one `Producer`, each sending its share of the records with `send_async` (up to
//!    `--in-flight` unacknowledged sends per thread), paced to `--rate` records/s in total if
//!    given. Each value is `size` bytes whose first 8 hold the send time, in nanoseconds since an
//!    `Instant` shared by all threads (read for every record with `--rate`, once per 32 records
//!    without, where the clock read would be a tenth of the producer's work); a consumer records
//!    `now - send time` for every record (`now` taken once per `poll`). Prints progress once a
//!    second. Checks that the topic then holds exactly `records` records.
//! 3. Baseline 2: one thread hands the same messages (`size`-byte `Vec<u8>` with the embedded
//!    send time), at the same rate, through a `crossbeam_channel::bounded` channel to one thread
//!    blocked in `recv` (spinning on `try_recv` with `--spin`).
//! 4. Read-back: one new consumer reads the whole topic from the start (consumer records/s).
//!
//! Then a summary: produce side (acknowledged) records/s and MB/s (MB = 2^20 bytes, as Kafka's
//! tool), end-to-end latency p50/p99/p99.9/max in microseconds, the baselines and ratios; with
//! `--json`, one JSON object on the last line.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::TryRecvError;
use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, Durability, LogConfig, OffsetReset, Producer,
    ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "perf";
const USAGE: &str = "\
usage: cargo run --release --example perf -- [options]

  --records N          records to produce in total (default 1000000)
  --size B             value size in bytes, at least 8 (default 100)
  --partitions P       partitions of the topic (default 1)
  --producers K        producer threads, sharing one Producer (default 1)
  --consumers C        consumer threads, each reading every record; 0 measures the producer
                       alone (default 1)
  --durability D       none | interval | interval=MS | always (default none;
                       interval = fsync at most 100 ms after an append)
  --batch N            producer batch size in records: batch_size = N x (size + 10) + 61 bytes
                       (default 1000; 1 with --rate: every record is appended at once)
  --linger-ms MS       producer linger time, may be fractional (default 5)
  --rate R             pace the producers to R records/s in total (spin-until-deadline)
  --spin               consumers spin (10 ms) before parking in poll; the channel baseline
                       spins on try_recv
  --background-append  the producer's background thread appends full batches
                       (ProducerConfig::append_in_background; default: the sending thread)
  --send-all N         each producer thread sends N records per Producer::send_all call
                       instead of one send_async per record (not with --rate)
  --in-flight N        most unacknowledged sends per producer thread (default 1000000)
  --max-poll-records N consumer max_poll_records (default 500, Kafka's)
  --dir D              parent of the temporary test directory (default: the system temp dir)
  --json               print one JSON object with the results on the last line
  -h, --help           this text";

/// Bytes of one record's framing in a batch, besides its value (length, attributes, deltas,
/// null key, value length, header count), rounded up: used to size a batch in records.
const RECORD_OVERHEAD: usize = 10;
/// Bytes of a `RecordBatch` v2 header.
const BATCH_HEADER: usize = 61;
/// How long a consumer spins before parking with `--spin`.
const SPIN: Duration = Duration::from_millis(10);
/// A consumer that has received nothing for this long gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Capacity of the baseline channel.
const CHANNEL_CAPACITY: usize = 1 << 16;
/// Without `--rate`, a producer reads the clock for the embedded send time once per this many
/// records (a clock read costs about as much as a tenth of a send); the stamp is taken before the
/// first of them, so latencies can only be overstated, by the time of this many sends.
const UNPACED_STAMP_EVERY: u64 = 32;
/// A producer looks at the outcome of one acknowledged send in this many.
const RESULT_CHECK_EVERY: u64 = 64;
/// Values are cut from shared buffers of this size (one allocation per buffer, not per record).
const VALUE_CHUNK: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
enum DurabilityArg {
    None,
    Interval(Duration),
    Always,
}

impl DurabilityArg {
    fn policy(self) -> Durability {
        match self {
            DurabilityArg::None => Durability::None,
            DurabilityArg::Interval(d) => Durability::Interval(d),
            DurabilityArg::Always => Durability::Always,
        }
    }

    fn name(self) -> String {
        match self {
            DurabilityArg::None => "none".into(),
            DurabilityArg::Interval(d) => format!("interval={}", d.as_millis()),
            DurabilityArg::Always => "always".into(),
        }
    }
}

struct Opts {
    records: u64,
    size: usize,
    partitions: u32,
    producers: usize,
    consumers: usize,
    durability: DurabilityArg,
    batch: usize,
    linger: Duration,
    rate: Option<f64>,
    spin: bool,
    background_append: bool,
    /// Records per `send_all` call; 0: `send_async` per record.
    send_all: usize,
    in_flight: usize,
    max_poll_records: usize,
    dir: Option<PathBuf>,
    json: bool,
}

impl Opts {
    /// The producer's `batch_size` in bytes for `batch` records.
    fn batch_bytes(&self) -> usize {
        BATCH_HEADER + self.batch * (self.size + RECORD_OVERHEAD)
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag}: cannot parse {value:?}"))
    }
    let mut opts = Opts {
        records: 1_000_000,
        size: 100,
        partitions: 1,
        producers: 1,
        consumers: 1,
        durability: DurabilityArg::None,
        batch: 0,
        linger: Duration::from_millis(5),
        rate: None,
        spin: false,
        background_append: false,
        send_all: 0,
        in_flight: 1_000_000,
        max_poll_records: 500,
        dir: None,
        json: false,
    };
    let mut batch = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => opts.records = num(&arg, args.next())?,
            "--size" => opts.size = num(&arg, args.next())?,
            "--partitions" => opts.partitions = num(&arg, args.next())?,
            "--producers" => opts.producers = num(&arg, args.next())?,
            "--consumers" => opts.consumers = num(&arg, args.next())?,
            "--batch" => batch = Some(num(&arg, args.next())?),
            "--linger-ms" => {
                let ms: f64 = num(&arg, args.next())?;
                if !(ms.is_finite() && ms >= 0.0) {
                    return Err(format!("--linger-ms: {ms} is not a duration"));
                }
                opts.linger = Duration::from_secs_f64(ms / 1e3);
            }
            "--rate" => {
                let rate: f64 = num(&arg, args.next())?;
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(format!("--rate: {rate} is not a positive rate"));
                }
                opts.rate = Some(rate);
            }
            "--in-flight" => opts.in_flight = num(&arg, args.next())?,
            "--send-all" => opts.send_all = num(&arg, args.next())?,
            "--max-poll-records" => opts.max_poll_records = num(&arg, args.next())?,
            "--durability" => {
                let value = args.next().ok_or("--durability needs a value")?;
                opts.durability = match value.as_str() {
                    "none" => DurabilityArg::None,
                    "always" => DurabilityArg::Always,
                    "interval" => DurabilityArg::Interval(Duration::from_millis(100)),
                    other => match other.strip_prefix("interval=") {
                        Some(ms) => DurabilityArg::Interval(Duration::from_millis(
                            ms.parse()
                                .map_err(|_| format!("--durability: bad interval {ms:?}"))?,
                        )),
                        None => return Err(format!("--durability: unknown policy {other:?}")),
                    },
                };
            }
            "--spin" => opts.spin = true,
            "--background-append" => opts.background_append = true,
            "--json" => opts.json = true,
            "--dir" => opts.dir = Some(PathBuf::from(args.next().ok_or("--dir needs a value")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    opts.batch = batch.unwrap_or(if opts.rate.is_some() { 1 } else { 1000 });
    if opts.records == 0 {
        return Err("--records must be at least 1".into());
    }
    if opts.send_all > 0 && opts.rate.is_some() {
        return Err("--send-all and --rate do not go together".into());
    }
    if opts.size < 8 {
        return Err("--size must be at least 8 (the send time is embedded)".into());
    }
    if opts.partitions == 0 || opts.producers == 0 {
        return Err("--partitions and --producers must be at least 1".into());
    }
    if opts.batch == 0 || opts.in_flight == 0 || opts.max_poll_records == 0 {
        return Err("--batch, --in-flight and --max-poll-records must be at least 1".into());
    }
    if opts.producers as u64 > opts.records {
        return Err("--producers cannot exceed --records".into());
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
            eprintln!("perf: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("perf: {why}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Nanoseconds since `epoch`.
fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Spins until `deadline` (sleeping would add the scheduler's wake-up latency to every record).
fn spin_until(deadline: Instant) {
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// When the `i`-th record of a thread paced at `rate` records/s is due.
fn due(start: Instant, i: u64, rate: f64) -> Instant {
    start + Duration::from_nanos((i as f64 * 1e9 / rate) as u64)
}

/// The send time embedded in the first 8 bytes of a value.
fn sent_at(value: &[u8]) -> u64 {
    let mut t = [0u8; 8];
    t.copy_from_slice(&value[..8]);
    u64::from_le_bytes(t)
}

/// Latency percentiles, in microseconds, of `ns` (sorted in place).
struct Percentiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: usize,
}

impl Percentiles {
    fn of(ns: &mut [u64]) -> Option<Percentiles> {
        if ns.is_empty() {
            return None;
        }
        ns.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
            ns[rank - 1] as f64 / 1e3
        };
        Some(Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: ns[ns.len() - 1] as f64 / 1e3,
            count: ns.len(),
        })
    }
}

/// What the progress line and the threads share.
struct Progress {
    acked: Vec<AtomicU64>,
    consumed: Vec<AtomicU64>,
    finished: AtomicUsize,
    /// The thread printing the progress, unparked by each thread that finishes.
    main: thread::Thread,
    abort: AtomicBool,
}

/// One consumer thread's outcome.
struct ConsumerOutcome {
    latencies: Vec<u64>,
    last: Instant,
}

/// The end-to-end run's outcome.
struct RunOutcome {
    produce_secs: f64,
    latencies: Vec<u64>,
    consumer_secs: Vec<f64>,
}

fn run(opts: &Opts) -> AnyResult<()> {
    let parent = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("tidelog-perf-")
        .tempdir_in(&parent)?;
    let mb = (opts.records * opts.size as u64) as f64 / f64::from(1 << 20);
    println!(
        "tidelog perf: {} records x {} B ({mb:.1} MB), {} partition(s), {} producer thread(s), {} consumer(s), durability {}",
        opts.records,
        opts.size,
        opts.partitions,
        opts.producers,
        opts.consumers,
        opts.durability.name()
    );
    println!(
        "  batch {} records (batch_size {} B), linger {:?}, appended by the {} thread, rate {}, consumers {}, max {} in flight per producer, dir {}",
        opts.batch,
        opts.batch_bytes(),
        opts.linger,
        if opts.background_append { "background" } else { "sending" },
        opts.rate
            .map_or_else(|| "unlimited".to_string(), |r| format!("{r:.0}/s")),
        if opts.spin { "spin" } else { "park" },
        opts.in_flight,
        tmp.path().display()
    );

    // Baseline 1: raw write() of the same bytes, in batch-sized chunks.
    let write_secs = baseline_write(opts, &tmp.path().join("baseline-write.bin"))?;
    let baseline_write_rps = opts.records as f64 / write_secs;
    println!(
        "baseline write(): {:.0} records/s, {:.1} MB/s",
        baseline_write_rps,
        mb / write_secs
    );

    // The measurement proper.
    let broker = Broker::open_with(tmp.path().join("broker"), BrokerConfig::default())?;
    broker.create_topic_with(
        TOPIC,
        opts.partitions,
        LogConfig::default().durability(opts.durability.policy()),
    )?;
    let outcome = end_to_end(opts, &broker)?;
    let partitions = broker.topic(TOPIC)?.partitions()?;
    let appended: u64 = partitions
        .iter()
        .map(|p| p.log_end_offset() - p.log_start_offset())
        .sum();
    if matches!(opts.durability, DurabilityArg::Always)
        && partitions
            .iter()
            .any(|p| p.flushed_offset() < p.log_end_offset())
    {
        return Err("durability always: acknowledged records are not all flushed".into());
    }
    if appended != opts.records {
        return Err(format!(
            "the topic holds {appended} records after {} acknowledged sends",
            opts.records
        )
        .into());
    }
    let rps = opts.records as f64 / outcome.produce_secs;
    let mut latencies = outcome.latencies;
    let e2e = Percentiles::of(&mut latencies);
    drop(latencies);

    // Baseline 2: the same messages through a channel.
    let (mut channel_ns, channel_secs) = baseline_channel(opts)?;
    let channel = Percentiles::of(&mut channel_ns);
    drop(channel_ns);

    // Read-back: one consumer reading the full topic.
    let read_secs = read_back(opts, &broker)?;
    let read_rps = opts.records as f64 / read_secs;
    drop(broker);

    // Summary.
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!();
    println!("== summary ==");
    println!(
        "produce (acknowledged): {:.0} records/s, {:.2} MB/s, {:.3} s  ({:.0}% of the write() baseline, {:.0} records/s)",
        rps,
        mb / outcome.produce_secs,
        outcome.produce_secs,
        100.0 * ratio(rps, baseline_write_rps),
        baseline_write_rps
    );
    for (i, secs) in outcome.consumer_secs.iter().enumerate() {
        println!(
            "consumer {i}: received all {} records {:.3} s after the start ({:.0} records/s)",
            opts.records,
            secs,
            opts.records as f64 / secs
        );
    }
    match &e2e {
        Some(p) => println!(
            "end-to-end latency ({} samples): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            p.count, p.p50, p.p99, p.p999, p.max
        ),
        None => println!("end-to-end latency: no consumer (--consumers 0)"),
    }
    if let Some(c) = &channel {
        println!(
            "baseline crossbeam channel ({}): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us, {:.0} records/s{}",
            if opts.spin { "try_recv spin" } else { "blocking recv" },
            c.p50,
            c.p99,
            c.p999,
            c.max,
            opts.records as f64 / channel_secs,
            e2e.as_ref().map_or_else(String::new, |p| format!(
                "; tidelog p99 = {:.1}x channel p99",
                ratio(p.p99, c.p99)
            ))
        );
    }
    println!(
        "read-back: one consumer read the full topic at {:.0} records/s ({:.1} MB/s, {:.3} s)",
        read_rps,
        mb / read_secs,
        read_secs
    );

    if opts.json {
        let opt = |v: Option<f64>| v.map_or(f64::NAN, |v| v);
        let fields: Vec<(&str, String)> = vec![
            ("records", opts.records.to_string()),
            ("size", opts.size.to_string()),
            ("partitions", opts.partitions.to_string()),
            ("producers", opts.producers.to_string()),
            ("consumers", opts.consumers.to_string()),
            ("durability", format!("\"{}\"", opts.durability.name())),
            ("batch", opts.batch.to_string()),
            ("rate", json_num(opt(opts.rate))),
            ("spin", opts.spin.to_string()),
            ("records_per_sec", json_num(rps)),
            ("mb_per_sec", json_num(mb / outcome.produce_secs)),
            ("p50_us", json_num(opt(e2e.as_ref().map(|p| p.p50)))),
            ("p99_us", json_num(opt(e2e.as_ref().map(|p| p.p99)))),
            ("p999_us", json_num(opt(e2e.as_ref().map(|p| p.p999)))),
            ("max_us", json_num(opt(e2e.as_ref().map(|p| p.max)))),
            (
                "baseline_write_records_per_sec",
                json_num(baseline_write_rps),
            ),
            (
                "write_baseline_ratio",
                json_num(ratio(rps, baseline_write_rps)),
            ),
            (
                "baseline_channel_p50_us",
                json_num(opt(channel.as_ref().map(|c| c.p50))),
            ),
            (
                "baseline_channel_p99_us",
                json_num(opt(channel.as_ref().map(|c| c.p99))),
            ),
            (
                "channel_p99_ratio",
                json_num(ratio(
                    opt(e2e.as_ref().map(|p| p.p99)),
                    opt(channel.as_ref().map(|c| c.p99)),
                )),
            ),
            (
                "baseline_channel_records_per_sec",
                json_num(opts.records as f64 / channel_secs),
            ),
            (
                "e2e_consumer_records_per_sec",
                json_num(
                    outcome
                        .consumer_secs
                        .iter()
                        .copied()
                        .reduce(f64::max)
                        .map_or(f64::NAN, |s| opts.records as f64 / s),
                ),
            ),
            ("consumer_records_per_sec", json_num(read_rps)),
        ];
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    }
    Ok(())
}

/// A JSON number (three decimals), or `null` for NaN and infinities.
fn json_num(v: f64) -> String {
    if v.is_finite() {
        let rounded = (v * 1e3).round() / 1e3;
        format!("{rounded}")
    } else {
        "null".into()
    }
}

/// Writes `records x size` bytes to `path` with `write_all`, one producer batch per call;
/// returns the seconds taken.
fn baseline_write(opts: &Opts, path: &std::path::Path) -> AnyResult<f64> {
    let total = opts.records * opts.size as u64;
    let chunk = vec![0x5au8; (opts.batch * opts.size).min(total as usize)];
    let mut file = File::create(path)?;
    let start = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(secs)
}

/// Produces and consumes the records; returns the produce time and every latency.
fn end_to_end(opts: &Opts, broker: &Broker) -> AnyResult<RunOutcome> {
    let producer = Producer::new(
        broker,
        ProducerConfig::default()
            .batch_size(opts.batch_bytes())
            .linger(opts.linger)
            .append_in_background(opts.background_append)
            .buffer_memory((64usize << 20).max(opts.batch_bytes() * 4)),
    )?;
    let progress = Arc::new(Progress {
        acked: (0..opts.producers).map(|_| AtomicU64::new(0)).collect(),
        consumed: (0..opts.consumers).map(|_| AtomicU64::new(0)).collect(),
        finished: AtomicUsize::new(0),
        main: thread::current(),
        abort: AtomicBool::new(false),
    });
    let threads = opts.producers + opts.consumers;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let epoch = Instant::now();

    let mut consumers = Vec::new();
    for id in 0..opts.consumers {
        let mut config = ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(opts.max_poll_records);
        if opts.spin {
            config = config.spin(SPIN);
        }
        let mut consumer = Consumer::new(broker, config)?;
        consumer.subscribe(&[TOPIC])?;
        let (barrier, progress) = (Arc::clone(&barrier), Arc::clone(&progress));
        let expected = opts.records;
        let handle = thread::Builder::new()
            .name(format!("consumer-{id}"))
            .spawn(move || {
                barrier.wait();
                let result = consume(&mut consumer, expected, epoch, &progress, id);
                if result.is_err() {
                    progress.abort.store(true, Ordering::Release);
                }
                progress.finished.fetch_add(1, Ordering::AcqRel);
                progress.main.unpark();
                result
            })?;
        consumers.push(handle);
    }

    let mut producers = Vec::new();
    for id in 0..opts.producers {
        let share = opts.records / opts.producers as u64
            + u64::from((id as u64) < opts.records % opts.producers as u64);
        let (barrier, progress) = (Arc::clone(&barrier), Arc::clone(&progress));
        let producer = producer.clone();
        let size = opts.size;
        let rate = opts.rate.map(|r| r / opts.producers as f64);
        let in_flight = opts.in_flight;
        let send_all = opts.send_all;
        let handle = thread::Builder::new()
            .name(format!("producer-{id}"))
            .spawn(move || {
                barrier.wait();
                let result = if send_all > 0 {
                    produce_all(
                        &producer, share, size, send_all, in_flight, epoch, &progress, id,
                    )
                } else {
                    produce(
                        &producer, share, size, rate, in_flight, epoch, &progress, id,
                    )
                };
                if result.is_err() {
                    progress.abort.store(true, Ordering::Release);
                }
                progress.finished.fetch_add(1, Ordering::AcqRel);
                progress.main.unpark();
                result
            })?;
        producers.push(handle);
    }
    drop(producer);

    barrier.wait();
    let start = Instant::now();
    report_progress(opts, &progress, start, threads);

    let mut produce_end = start;
    let mut failure: Option<String> = None;
    for handle in producers {
        match handle.join() {
            Ok(Ok(end)) => produce_end = produce_end.max(end),
            Ok(Err(e)) => {
                failure.get_or_insert(format!("producer: {e}"));
            }
            Err(_) => {
                failure.get_or_insert("a producer thread panicked".into());
            }
        }
    }
    let mut latencies = Vec::new();
    let mut consumer_secs = Vec::new();
    for handle in consumers {
        match handle.join() {
            Ok(Ok(outcome)) => {
                consumer_secs.push(outcome.last.duration_since(start).as_secs_f64());
                if latencies.is_empty() {
                    latencies = outcome.latencies;
                } else {
                    latencies.extend_from_slice(&outcome.latencies);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(format!("consumer: {e}"));
            }
            Err(_) => {
                failure.get_or_insert("a consumer thread panicked".into());
            }
        }
    }
    if let Some(why) = failure {
        return Err(why.into());
    }
    Ok(RunOutcome {
        produce_secs: produce_end.duration_since(start).as_secs_f64(),
        latencies,
        consumer_secs,
    })
}

/// Prints a progress line once a second until every thread has finished.
fn report_progress(opts: &Opts, progress: &Progress, start: Instant, threads: usize) {
    let sum = |v: &[AtomicU64]| v.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>();
    let mut tick = start + Duration::from_secs(1);
    let (mut last_acked, mut last_secs) = (0, 0.0);
    while progress.finished.load(Ordering::Acquire) < threads {
        let now = Instant::now();
        if now < tick {
            // Parked, not polling: the printing thread must not take CPU from the measured ones.
            thread::park_timeout(tick - now);
            continue;
        }
        let secs = now.duration_since(start).as_secs_f64();
        let acked = sum(&progress.acked);
        let consumed = progress
            .consumed
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min();
        println!(
            "[{secs:6.1} s] acked {acked:>10} ({:>10.0} records/s since the last line, {:>10.0} records/s so far){}",
            (acked - last_acked) as f64 / (secs - last_secs),
            acked as f64 / secs,
            consumed.map_or_else(String::new, |c| format!(
                ", consumed {c}/{} (slowest consumer)",
                opts.records
            ))
        );
        (last_acked, last_secs) = (acked, secs);
        tick += Duration::from_secs(1);
    }
}

/// A value of `filler.len()` bytes whose first 8 hold `stamp`, cut from `chunk` (a new chunk
/// is taken when it runs out: one allocation per chunk, not per record).
fn stamped_value(chunk: &mut BytesMut, stamp: u64, filler: &[u8]) -> bytes::Bytes {
    if chunk.capacity() < filler.len() {
        *chunk = BytesMut::with_capacity(VALUE_CHUNK.max(filler.len()));
    }
    chunk.extend_from_slice(&stamp.to_le_bytes());
    chunk.extend_from_slice(&filler[8..]);
    chunk.split().freeze()
}

/// One producer thread: sends `share` records with `send_async`, keeping up to `in_flight`
/// unacknowledged; returns when the last is acknowledged.
#[allow(clippy::too_many_arguments)]
fn produce(
    producer: &Producer,
    share: u64,
    size: usize,
    rate: Option<f64>,
    in_flight: usize,
    epoch: Instant,
    progress: &Progress,
    id: usize,
) -> AnyResult<Instant> {
    let filler = vec![0x5au8; size];
    let mut chunk = BytesMut::with_capacity(VALUE_CHUNK.max(size));
    let mut pending = VecDeque::with_capacity(in_flight.min(1 << 20));
    let mut acked = 0u64;
    let stamp_every = if rate.is_some() {
        1
    } else {
        UNPACED_STAMP_EVERY
    };
    let mut stamp = 0u64;
    let start = Instant::now();
    for i in 0..share {
        if let Some(rate) = rate {
            spin_until(due(start, i, rate));
        }
        if i.is_multiple_of(stamp_every) {
            stamp = nanos_since(epoch);
        }
        let value = stamped_value(&mut chunk, stamp, &filler);
        pending.push_back(producer.send_async(ProducerRecord::new(TOPIC, value))?);
        // Count what is acknowledged; wait only when too many are in flight.
        while let Some(front) = pending.front() {
            if !front.is_done() {
                if pending.len() < in_flight {
                    break;
                }
                front.wait()?;
            } else if acked.is_multiple_of(RESULT_CHECK_EVERY) {
                // Looking at every outcome costs a lock per record; a failed batch is also
                // caught by the count of appended records checked after the run.
                if let Some(Err(e)) = front.try_result() {
                    return Err(e.into());
                }
            }
            pending.pop_front();
            acked += 1;
            if acked.is_multiple_of(1024) {
                progress.acked[id].store(acked, Ordering::Relaxed);
                if progress.abort.load(Ordering::Acquire) {
                    return Err("stopped: another thread failed".into());
                }
            }
        }
    }
    producer.flush()?;
    for future in pending.drain(..) {
        if let Err(e) = future.wait() {
            return Err(e.into());
        }
        acked += 1;
    }
    let end = Instant::now();
    progress.acked[id].store(acked, Ordering::Relaxed);
    Ok(end)
}

/// One producer thread with `--send-all`: sends `share` records in calls of `per_call`
/// records, keeping up to `in_flight` unacknowledged; returns when the last is acknowledged.
#[allow(clippy::too_many_arguments)]
fn produce_all(
    producer: &Producer,
    share: u64,
    size: usize,
    per_call: usize,
    in_flight: usize,
    epoch: Instant,
    progress: &Progress,
    id: usize,
) -> AnyResult<Instant> {
    let filler = vec![0x5au8; size];
    let mut chunk = BytesMut::with_capacity(VALUE_CHUNK.max(size));
    let mut pending = VecDeque::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    while sent < share {
        let n = (per_call as u64).min(share - sent);
        // One stamp per call: latencies can only be overstated, by the time of the call.
        let stamp = nanos_since(epoch);
        let records =
            (0..n).map(|_| ProducerRecord::new(TOPIC, stamped_value(&mut chunk, stamp, &filler)));
        pending.push_back(producer.send_all(records)?);
        sent += n;
        while let Some(front) = pending.front() {
            if !front.is_done() {
                if sent - acked < in_flight as u64 {
                    break;
                }
                front.wait()?;
            } else if let Some(Err(e)) = front.try_result() {
                return Err(e.into());
            }
            acked += front.len() as u64;
            pending.pop_front();
            progress.acked[id].store(acked, Ordering::Relaxed);
            if progress.abort.load(Ordering::Acquire) {
                return Err("stopped: another thread failed".into());
            }
        }
    }
    producer.flush()?;
    for future in pending.drain(..) {
        future.wait()?;
        acked += future.len() as u64;
    }
    let end = Instant::now();
    progress.acked[id].store(acked, Ordering::Relaxed);
    Ok(end)
}

/// One consumer thread: polls until it has received `expected` records, recording each one's
/// latency.
fn consume(
    consumer: &mut Consumer,
    expected: u64,
    epoch: Instant,
    progress: &Progress,
    id: usize,
) -> AnyResult<ConsumerOutcome> {
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut seen = 0u64;
    let mut last = Instant::now();
    while seen < expected {
        let records = consumer.poll(Duration::from_millis(100))?;
        // One clock read per poll: at a steady rate a poll returns one record, and a full poll
        // of a few hundred records is decoded in microseconds.
        let now = nanos_since(epoch);
        if records.is_empty() {
            if progress.abort.load(Ordering::Acquire) {
                return Err("stopped: another thread failed".into());
            }
            if last.elapsed() > IDLE_TIMEOUT {
                return Err(format!(
                    "received {seen} of {expected} records, then nothing for {IDLE_TIMEOUT:?}"
                )
                .into());
            }
            continue;
        }
        for record in &records {
            let value = record.value.as_deref().ok_or("a record without a value")?;
            latencies.push(now.saturating_sub(sent_at(value)));
        }
        seen += records.len() as u64;
        last = Instant::now();
        progress.consumed[id].store(seen, Ordering::Relaxed);
    }
    if seen > expected {
        return Err(format!("received {seen} records, {expected} were sent").into());
    }
    Ok(ConsumerOutcome { latencies, last })
}

/// Baseline 2: one thread hands `records` messages to another through a bounded crossbeam
/// channel, at the same rate; returns the latencies and the time taken.
fn baseline_channel(opts: &Opts) -> AnyResult<(Vec<u64>, f64)> {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(CHANNEL_CAPACITY);
    let epoch = Instant::now();
    let records = opts.records;
    let spin = opts.spin;
    let receiver = thread::Builder::new()
        .name("channel-rx".into())
        .spawn(move || {
            let mut latencies = Vec::with_capacity(records as usize);
            loop {
                let message = if spin {
                    match rx.try_recv() {
                        Ok(m) => m,
                        Err(TryRecvError::Empty) => {
                            std::hint::spin_loop();
                            continue;
                        }
                        Err(TryRecvError::Disconnected) => break,
                    }
                } else {
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                };
                let now = nanos_since(epoch);
                latencies.push(now.saturating_sub(sent_at(&message)));
            }
            (latencies, Instant::now())
        })?;
    let filler = vec![0x5au8; opts.size];
    let start = Instant::now();
    for i in 0..records {
        if let Some(rate) = opts.rate {
            spin_until(due(start, i, rate));
        }
        let mut message = Vec::with_capacity(opts.size);
        message.extend_from_slice(&nanos_since(epoch).to_le_bytes());
        message.extend_from_slice(&filler[8..]);
        tx.send(message)?;
    }
    drop(tx);
    let (latencies, end) = receiver
        .join()
        .map_err(|_| "the channel receiver panicked")?;
    Ok((latencies, end.duration_since(start).as_secs_f64()))
}

/// One new consumer reads the whole topic from the start; returns the seconds taken.
fn read_back(opts: &Opts, broker: &Broker) -> AnyResult<f64> {
    let mut consumer = Consumer::new(
        broker,
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(opts.max_poll_records),
    )?;
    consumer.subscribe(&[TOPIC])?;
    let start = Instant::now();
    let mut seen = 0u64;
    let mut checksum = 0u64;
    while seen < opts.records {
        let records = consumer.poll(Duration::from_secs(1))?;
        if records.is_empty() {
            return Err(format!("read-back found {seen} of {} records", opts.records).into());
        }
        for record in &records {
            checksum = checksum.wrapping_add(record.value.as_deref().map_or(0, sent_at));
        }
        seen += records.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Ok(secs)
}
