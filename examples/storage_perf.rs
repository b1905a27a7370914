//! Measures the storage engine against its five speed goals and prints one table.
//!
//! ```text
//! cargo run --release --example storage_perf                 # full run (about 1.5 minutes)
//! cargo run --release --example storage_perf -- --quick      # CI-sized run (a few seconds)
//! cargo run --release --example storage_perf -- --json       # also one JSON object on the last line
//! ```
//!
//! Flags: `--quick`, `--json`, `--big-gb <GB>` (log size of goal 4, default 5, quick 0.5),
//! `--dir <path>` (where the temporary logs go, default the system temp dir), `--only <1-5>`
//! (repeatable: run only these goals).
//!
//! Every figure is printed next to a baseline measured in the same run:
//!
//! 1. append, 100-byte values (8-byte keys) in batches of 100, `Durability::None`, records/s;
//!    baseline: `File::write_all` of the same encoded batch bytes to a file in the same folder.
//!    Goal: at least 80% of the baseline. The note also gives `append_batch` of the same batch
//!    already encoded (what a Kafka client sends): the cost of the log without encoding.
//! 2. sequential read from the page cache (`read` of 1 MiB, every batch CRC-checked by
//!    `FetchData::batches`, every record decoded), records/s; baseline: `pread` of the same file
//!    in 1 MiB chunks, no decoding. Goal: at least 10 million records/s.
//! 3. 32 threads appending single records with `Durability::Always`, records/s; baseline: one
//!    thread doing the same. Goal: at least 10 times the baseline (group commit).
//! 4. append rate (as in 1) with a big log (`--big-gb`) against the rate with 100 MB in the log,
//!    each measured over a window of appends after the dirty pages were flushed. Goal: within 10%.
//! 5. opening a cleanly closed log of 1,000 segments (16 KiB each); baseline: listing the folder
//!    and opening every `.log` file with `std::fs`. Goal: under 50 ms.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tidelog::{AppendInfo, Durability, LogConfig, PartitionLog, Record, RecordBatch};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;
/// One goal's measurement.
type Goal = fn(&Opts, &Path) -> AnyResult<Figure>;

struct Opts {
    quick: bool,
    json: bool,
    big_gb: f64,
    dir: PathBuf,
    only: Vec<u32>,
}

fn parse_args() -> AnyResult<Opts> {
    let mut opts = Opts {
        quick: false,
        json: false,
        big_gb: f64::NAN,
        dir: std::env::temp_dir(),
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--json" => opts.json = true,
            "--big-gb" => opts.big_gb = args.next().ok_or("--big-gb needs a value")?.parse()?,
            "--dir" => opts.dir = PathBuf::from(args.next().ok_or("--dir needs a value")?),
            "--only" => opts
                .only
                .push(args.next().ok_or("--only needs a value")?.parse()?),
            "-h" | "--help" => {
                println!("usage: storage_perf [--quick] [--json] [--big-gb GB] [--dir PATH] [--only N]...");
                std::process::exit(0);
            }
            // `cargo bench` style harness flags are ignored.
            other if other.starts_with("--") => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if opts.big_gb.is_nan() {
        opts.big_gb = if opts.quick { 0.5 } else { 5.0 };
    }
    Ok(opts)
}

/// One line of the table.
struct Figure {
    goal: u32,
    name: &'static str,
    figure: f64,
    baseline: f64,
    unit: &'static str,
    baseline_name: String,
    ratio: f64,
    target: String,
    pass: bool,
    note: String,
}

const VALUE_LEN: usize = 100;

fn records(n: usize, value_len: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut value = vec![b'v'; value_len];
            value[..8.min(value_len)]
                .copy_from_slice(&format!("{i:08}").as_bytes()[..8.min(value_len)]);
            Record::new(format!("k{i:07}"), value).with_timestamp(1_700_000_000_000 + i as i64)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn no_sync(segment_bytes: u64) -> LogConfig {
    LogConfig::default()
        .segment_bytes(segment_bytes)
        .durability(Durability::None)
}

/// Drops a log without the close-time fsync, then deletes its folder: the page cache throws the
/// dirty pages of deleted files away, so one round does not slow the next down with writeback.
fn discard(log: PartitionLog, dir: &Path) -> AnyResult<()> {
    log.simulate_crash();
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

// ---------------------------------------------------------------------------------- goal 1

fn goal1(opts: &Opts, root: &Path) -> AnyResult<Figure> {
    let batches = if opts.quick { 2_000 } else { 10_000 };
    let rounds = if opts.quick { 3 } else { 7 };
    let batch = records(100, VALUE_LEN);
    let encoded = RecordBatch::encode(0, &batch)?.as_bytes().clone();
    let n = (batches * batch.len()) as f64;
    let (mut raw_rates, mut log_rates, mut encoded_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let raw = || -> AnyResult<f64> {
            let path = root.join("raw-append.bin");
            let mut file = File::create(&path)?;
            let t = Instant::now();
            for _ in 0..batches {
                file.write_all(&encoded)?;
            }
            let secs = t.elapsed().as_secs_f64();
            drop(file);
            std::fs::remove_file(&path)?;
            Ok(n / secs)
        };
        let log = || {
            append_rate(&root.join("append-log"), batches, n, |log| {
                log.append(&batch)
            })
        };
        // The same batch already encoded (as a Kafka client sends it): no encoding.
        let pre_encoded = RecordBatch::from_bytes(encoded.clone())?;
        let log_encoded = || {
            append_rate(&root.join("append-log-encoded"), batches, n, |log| {
                log.append_batch(&pre_encoded)
            })
        };
        // Alternate the order so that neither side always runs on a warmer machine.
        if round % 2 == 0 {
            raw_rates.push(raw()?);
            log_rates.push(log()?);
            encoded_rates.push(log_encoded()?);
        } else {
            encoded_rates.push(log_encoded()?);
            log_rates.push(log()?);
            raw_rates.push(raw()?);
        }
    }
    let (figure, baseline) = (median(log_rates), median(raw_rates));
    let ratio = figure / baseline;
    let encoded_rate = median(encoded_rates);
    Ok(Figure {
        goal: 1,
        name: "append 100 B x100/batch, no fsync",
        figure,
        baseline,
        unit: "rec/s",
        baseline_name: "File::write_all, same bytes".into(),
        ratio,
        target: ">= 0.80 x baseline".into(),
        pass: ratio >= 0.80,
        note: format!(
            "{batches} batches ({:.0} MB), median of {rounds} rounds; the same batch pre-encoded \
             (append_batch, no encoding): {:.2} Mrec/s = {:.3} x baseline",
            batches as f64 * encoded.len() as f64 / 1e6,
            encoded_rate / 1e6,
            encoded_rate / baseline
        ),
    })
}

/// Records/s of `batches` calls of `append` (each appending `n / batches` records) on a new log
/// in `dir`, which is deleted afterwards.
fn append_rate(
    dir: &Path,
    batches: usize,
    n: f64,
    append: impl Fn(&PartitionLog) -> tidelog::Result<AppendInfo>,
) -> AnyResult<f64> {
    let log = PartitionLog::open(dir, no_sync(1 << 30))?;
    let t = Instant::now();
    for _ in 0..batches {
        append(&log)?;
    }
    let secs = t.elapsed().as_secs_f64();
    discard(log, dir)?;
    Ok(n / secs)
}

// ---------------------------------------------------------------------------------- goal 2

fn goal2(opts: &Opts, root: &Path) -> AnyResult<Figure> {
    let batches = if opts.quick { 2_000 } else { 20_000 };
    let passes = if opts.quick { 3 } else { 7 };
    let dir = root.join("read-log");
    let log = PartitionLog::open(&dir, no_sync(1 << 30))?;
    let batch = records(100, VALUE_LEN);
    for _ in 0..batches {
        log.append(&batch)?;
    }
    let end = log.log_end_offset();
    let segment_files: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        v.sort();
        v
    };
    let (mut log_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for _ in 0..passes {
        // Baseline: the same bytes read with pread in 1 MiB chunks, nothing decoded.
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        for path in &segment_files {
            let file = File::open(path)?;
            let mut pos = 0u64;
            loop {
                let got = std::os::unix::fs::FileExt::read_at(&file, &mut buf, pos)?;
                if got == 0 {
                    break;
                }
                total += got as u64;
                pos += got as u64;
            }
        }
        std::hint::black_box(total);
        raw_rates.push(end as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut offset = 0u64;
        let mut count = 0u64;
        while offset < end {
            let data = log.read(offset, 1 << 20)?;
            for b in data.batches() {
                let b = b?;
                for r in b.records() {
                    let r = r?;
                    if r.offset >= offset {
                        count += 1;
                    }
                    offset = r.offset + 1;
                    std::hint::black_box(&r);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        if count != end {
            return Err(format!("read {count} records, expected {end}").into());
        }
        log_rates.push(count as f64 / secs);
    }
    discard(log, &dir)?;
    let (figure, baseline) = (median(log_rates), median(raw_rates));
    Ok(Figure {
        goal: 2,
        name: "sequential read, CRC + decode",
        figure,
        baseline,
        unit: "rec/s",
        baseline_name: "pread 1 MiB chunks, no decode".into(),
        ratio: figure / baseline,
        target: ">= 10,000,000 rec/s".into(),
        pass: figure >= 10e6,
        note: format!("{end} records, read(offset, 1 MiB), median of {passes} passes"),
    })
}

// ---------------------------------------------------------------------------------- goal 3

fn appenders(root: &Path, name: &str, threads: usize, duration: Duration) -> AnyResult<(f64, f64)> {
    let dir = root.join(name);
    let log = Arc::new(PartitionLog::open(
        &dir,
        LogConfig::default().durability(Durability::Always),
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (log, stop, count, barrier) = (
                Arc::clone(&log),
                Arc::clone(&stop),
                Arc::clone(&count),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || -> tidelog::Result<()> {
                let record = Record::new(format!("thread-{i:02}"), vec![b'v'; VALUE_LEN])
                    .with_timestamp(1_700_000_000_000);
                let mut n = 0u64;
                barrier.wait();
                while !stop.load(Ordering::Relaxed) {
                    let info = log.append(std::slice::from_ref(&record))?;
                    debug_assert!(info.durable);
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "appender thread panicked")??;
    }
    let secs = t.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    let log = Arc::try_unwrap(log).map_err(|_| "log still shared")?;
    log.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok((n as f64 / secs, n as f64))
}

fn goal3(opts: &Opts, root: &Path) -> AnyResult<Figure> {
    let duration = Duration::from_millis(if opts.quick { 1_000 } else { 3_000 });
    let (baseline, _) = appenders(root, "always-1", 1, duration)?;
    let (figure, _) = appenders(root, "always-32", 32, duration)?;
    let ratio = figure / baseline;
    Ok(Figure {
        goal: 3,
        name: "32 threads, 1 rec/append, fsync",
        figure,
        baseline,
        unit: "rec/s",
        baseline_name: "1 thread, 1 rec/append, fsync".into(),
        ratio,
        target: ">= 10 x baseline".into(),
        pass: ratio >= 10.0,
        note: format!("Durability::Always, {:.0} s each", duration.as_secs_f64()),
    })
}

// ---------------------------------------------------------------------------------- goal 4

fn goal4(opts: &Opts, root: &Path) -> AnyResult<Figure> {
    let small_bytes: u64 = 100_000_000;
    let big_bytes = (opts.big_gb * 1e9) as u64;
    let window_bytes: u64 = if opts.quick { 50_000_000 } else { 200_000_000 };
    let windows = if opts.quick { 3 } else { 5 };
    let dir = root.join("growth-log");
    let log = PartitionLog::open(&dir, no_sync(1 << 30))?;
    let batch = records(100, VALUE_LEN);
    let batch_len = RecordBatch::encode(0, &batch)?.as_bytes().len() as u64;
    let window_batches = window_bytes / batch_len;
    // Fill to `to` bytes, fsyncing every 512 MB so that writeback never throttles the writer.
    let fill = |to: u64| -> AnyResult<()> {
        let mut since_flush = 0u64;
        while log.size_bytes() < to {
            log.append(&batch)?;
            since_flush += batch_len;
            if since_flush >= 512 << 20 {
                log.flush()?;
                since_flush = 0;
            }
        }
        log.flush()?;
        Ok(())
    };
    // Median rate of `windows` windows, each started with no dirty pages; and, as a control for
    // the machine (page cache, writeback, the VM's memory), the median rate of writing the same
    // bytes with `File::write_all` to a new file in the same folder right after each window.
    let encoded = RecordBatch::encode(0, &batch)?.as_bytes().clone();
    let measure = || -> AnyResult<(f64, f64)> {
        let (mut rates, mut raw_rates) = (Vec::new(), Vec::new());
        for _ in 0..windows {
            log.flush()?;
            let t = Instant::now();
            for _ in 0..window_batches {
                log.append(&batch)?;
            }
            rates.push((window_batches * batch.len() as u64) as f64 / t.elapsed().as_secs_f64());
            log.flush()?;
            let path = root.join("growth-raw.bin");
            let mut file = File::create(&path)?;
            let t = Instant::now();
            for _ in 0..window_batches {
                file.write_all(&encoded)?;
            }
            raw_rates
                .push((window_batches * batch.len() as u64) as f64 / t.elapsed().as_secs_f64());
            std::fs::remove_file(&path)?;
            // Closing a file that was created with O_TRUNC starts its writeback on ext4: after
            // the unlink there is nothing left to write.
            drop(file);
        }
        Ok((median(rates), median(raw_rates)))
    };
    let fill_start = Instant::now();
    fill(small_bytes)?;
    let (at_small, raw_small) = measure()?;
    let small_end = log.size_bytes();
    fill(big_bytes)?;
    let (at_big, raw_big) = measure()?;
    let big_end = log.size_bytes();
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let segments = log.segment_count();
    discard(log, &dir)?;
    let ratio = at_big / at_small;
    Ok(Figure {
        goal: 4,
        name: "append rate with a big log",
        figure: at_big,
        baseline: at_small,
        unit: "rec/s",
        baseline_name: "same, 100 MB in the log".into(),
        ratio,
        target: ">= 0.90 x baseline".into(),
        pass: ratio >= 0.90,
        note: format!(
            "windows of {} MB after fsync, median of {windows}; small {:.2} GB, big {:.2} GB at the end ({segments} segments of 1 GiB); {fill_secs:.0} s in all; control (write_all of the same bytes to a new file at each point): {} small, {} big, ratio {:.3}; log ratio relative to the control {:.3}",
            window_bytes / 1_000_000,
            small_end as f64 / 1e9,
            big_end as f64 / 1e9,
            human(raw_small, "rec/s"),
            human(raw_big, "rec/s"),
            raw_big / raw_small,
            ratio / (raw_big / raw_small),
        ),
    })
}

// ---------------------------------------------------------------------------------- goal 5

fn goal5(opts: &Opts, root: &Path) -> AnyResult<Figure> {
    let segments = 1_000;
    let reps = if opts.quick { 3 } else { 7 };
    let dir = root.join("many-segments");
    let config = no_sync(16 << 10).max_message_bytes(16 << 10);
    let log = PartitionLog::open(&dir, config.clone())?;
    let batch = records(10, VALUE_LEN);
    while log.segment_count() < segments {
        log.append(&batch)?;
    }
    let count = log.segment_count();
    log.close()?;

    let (mut opens, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "log") {
                files.push(File::open(&path)?);
            }
        }
        std::hint::black_box(&files);
        raws.push(t.elapsed().as_secs_f64() * 1e3);
        drop(files);

        let t = Instant::now();
        let log = PartitionLog::open(&dir, config.clone())?;
        opens.push(t.elapsed().as_secs_f64() * 1e3);
        if log.segment_count() != count {
            return Err(format!(
                "reopened with {} segments, expected {count}",
                log.segment_count()
            )
            .into());
        }
        log.close()?;
    }
    std::fs::remove_dir_all(&dir)?;
    let (figure, baseline) = (median(opens), median(raws));
    Ok(Figure {
        goal: 5,
        name: "open a clean log of 1000 segments",
        figure,
        baseline,
        unit: "ms",
        baseline_name: "read_dir + File::open each .log".into(),
        ratio: figure / baseline,
        target: "< 50 ms".into(),
        pass: figure < 50.0,
        note: format!("{count} segments of 16 KiB, median of {reps} opens"),
    })
}

// ---------------------------------------------------------------------------------- output

fn human(v: f64, unit: &str) -> String {
    if unit == "ms" {
        return format!("{v:.2} ms");
    }
    if v >= 1e6 {
        format!("{:.2} M{unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k{unit}", v / 1e3)
    } else {
        format!("{v:.0} {unit}")
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn main() -> AnyResult<()> {
    let opts = parse_args()?;
    std::fs::create_dir_all(&opts.dir)?;
    let root = tempfile::Builder::new()
        .prefix("tidelog-perf-")
        .tempdir_in(&opts.dir)?;
    let goals: [(u32, Goal); 5] = [(1, goal1), (2, goal2), (3, goal3), (4, goal4), (5, goal5)];
    let started = Instant::now();
    let mut figures = Vec::new();
    for (n, run) in goals {
        if !opts.only.is_empty() && !opts.only.contains(&n) {
            continue;
        }
        eprintln!("goal {n}: running...");
        let t = Instant::now();
        let f = run(&opts, root.path())?;
        eprintln!(
            "goal {n}: {} (baseline {}) in {:.1} s",
            human(f.figure, f.unit),
            human(f.baseline, f.unit),
            t.elapsed().as_secs_f64()
        );
        figures.push(f);
    }
    let total = started.elapsed().as_secs_f64();

    println!();
    println!("#  figure                                        value       baseline baseline is                        ratio goal                 result");
    for f in &figures {
        println!(
            "{:<2} {:<36} {:>14} {:>14} {:<32} {:>7.3} {:<20} {}",
            f.goal,
            f.name,
            human(f.figure, f.unit),
            human(f.baseline, f.unit),
            f.baseline_name,
            f.ratio,
            f.target,
            if f.pass { "PASS" } else { "FAIL" }
        );
    }
    println!();
    for f in &figures {
        println!("{}: {}", f.goal, f.note);
    }
    println!(
        "mode: {}, total {total:.1} s, folder {}",
        if opts.quick { "quick" } else { "full" },
        opts.dir.display()
    );
    if opts.json {
        let items: Vec<String> = figures
            .iter()
            .map(|f| {
                format!(
                    "{{\"goal\":{},\"name\":{},\"figure\":{},\"baseline\":{},\"unit\":{},\"baseline_is\":{},\"ratio\":{},\"target\":{},\"pass\":{},\"note\":{}}}",
                    f.goal,
                    json_string(f.name),
                    json_number(f.figure),
                    json_number(f.baseline),
                    json_string(f.unit),
                    json_string(&f.baseline_name),
                    json_number(f.ratio),
                    json_string(&f.target),
                    f.pass,
                    json_string(&f.note)
                )
            })
            .collect();
        println!(
            "{{\"mode\":{},\"seconds\":{},\"all_pass\":{},\"figures\":[{}]}}",
            json_string(if opts.quick { "quick" } else { "full" }),
            json_number(total),
            figures.iter().all(|f| f.pass),
            items.join(",")
        );
    }
    Ok(())
}
