//! How long a broker with many partitions takes to open and to close.
//!
//! ```text
//! cargo run --release --example open_perf                          # 100 topics x 10 partitions
//! cargo run --release --example open_perf -- --topics 10 --partitions 4 --rounds 5
//! ```
//!
//! Creates the topics in a temporary folder (one record in each partition), closes the broker,
//! then, `--rounds` times: `Broker::open` and dropping the broker (a clean close of every log).
//! Baseline, same run: the same partition logs opened and closed one after another with
//! `PartitionLog::open`, which is what a broker would do without its parallel opening. Opening a
//! log that was closed cleanly rewrites its checkpoint (an fsync), closing it fsyncs its files,
//! so both are bound by the disk's fsync latency.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tidelog::{Broker, LogConfig, PartitionLog, Record};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let (mut topics, mut partitions, mut rounds) = (100u32, 10u32, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--topics" => topics = value()?.parse()?,
            "--partitions" => partitions = value()?.parse()?,
            "--rounds" => rounds = value()?.parse()?,
            "-h" | "--help" => {
                println!("usage: open_perf [--topics N] [--partitions N] [--rounds N]");
                return Ok(());
            }
            other if other.starts_with("--") => {} // `cargo bench` harness flags
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let rounds = rounds.max(1);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("broker");
    {
        let broker = Broker::open(&dir)?;
        for t in 0..topics {
            let topic = broker.create_topic(&format!("t{t}"), partitions)?;
            for p in 0..partitions {
                topic
                    .partition(p)?
                    .log()?
                    .append(&[Record::new("k", "v")])?;
            }
        }
    }
    let folders: Vec<PathBuf> = (0..topics)
        .flat_map(|t| (0..partitions).map(move |p| format!("t{t}-{p}")))
        .map(|name| dir.join(name))
        .collect();
    let (mut open, mut close, mut one_open, mut one_close) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let broker = Broker::open(&dir)?;
        open.push(t.elapsed());
        let t = Instant::now();
        drop(broker);
        close.push(t.elapsed());

        let t = Instant::now();
        let logs = folders
            .iter()
            .map(|f| PartitionLog::open(f, LogConfig::default()))
            .collect::<Result<Vec<_>, _>>()?;
        one_open.push(t.elapsed());
        let t = Instant::now();
        drop(logs);
        one_close.push(t.elapsed());
    }
    let n = folders.len();
    println!(
        "{topics} topics x {partitions} partitions = {n} partition logs; median of {rounds} rounds"
    );
    for (what, figure, baseline) in [
        ("open ", median(open), median(one_open)),
        ("close", median(close), median(one_close)),
    ] {
        println!(
            "  {what} broker {:>9.1} ms   one log after another {:>9.1} ms   ({:.1}x faster)",
            ms(figure),
            ms(baseline),
            baseline.as_secs_f64() / figure.as_secs_f64()
        );
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
