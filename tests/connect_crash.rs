//! A file → topic → file pipeline survives real process kills: a child process appends numbered
//! lines to a file while a `Connect` runtime runs the file source (into topic `lines`) and the
//! file sink (out of it); the parent kills it with `SIGKILL` mid-stream, looks at what is on
//! disk, and starts the next child, which resumes. After the last round the parent finishes the
//! pipeline itself and checks that no line was lost and that the only duplicates are, for each
//! kill, exactly the records sent (source) or written (sink) after the last offset commit:
//!
//! * source: the topic after round k+1 is the topic at kill k followed by the file's lines from
//!   the stored position `P_k` on, and `P_k` never lies beyond what the topic holds;
//! * sink: the output after round k+1 is the output at kill k (whole lines) followed by the
//!   topic's records from the group's committed offset `C_k` on, and `C_k` never lies beyond
//!   what the output holds.
//!
//! The children are this test binary run again with `--exact child_connect_pipeline` and
//! `TIDELOG_CRASH_DIR` set; without it that test does nothing. No assertion is on timing.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{child_dir, spawn_child, Rng};
use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectorConfig, ConsumerConfig, TopicPartition,
};

const ROUNDS: u64 = 3;
const CHILD: &str = "child_connect_pipeline";
const GIVE_UP: Duration = Duration::from_secs(60);
/// Lines the parent appends after the last kill.
const TAIL_LINES: u64 = 3_000;

fn line(n: u64) -> String {
    format!("line-{n:08} {}", "p".repeat((n % 40) as usize))
}

fn line_number(text: &str) -> u64 {
    text[5..13].parse().expect("a numbered line")
}

fn runtime(broker: &Broker) -> Connect {
    Connect::with_config(
        broker,
        ConnectConfig::default().offset_flush_interval(Duration::from_millis(20)),
    )
    .expect("runtime")
}

fn start_pipeline(connect: &Connect, dir: &Path) {
    connect
        .start_connector(
            ConnectorConfig::new("src", "FileStreamSource")
                .set("file", dir.join("in.txt").to_string_lossy())
                .set("topic", "lines")
                .set("batch.size", "500"),
        )
        .expect("source");
    connect
        .start_connector(
            ConnectorConfig::new("sink", "FileStreamSink")
                .set("file", dir.join("out.txt").to_string_lossy())
                .set("topics", "lines"),
        )
        .expect("sink");
}

/// Cuts a torn last line (a writer killed mid-line) and returns the complete lines.
fn complete_lines(path: &Path, repair: bool) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if repair && keep < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(keep as u64).unwrap();
    }
    String::from_utf8(bytes[..keep].to_vec())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn topic_values(broker: &Broker) -> Vec<String> {
    let Ok(p) = broker.partition("lines", 0) else {
        return Vec::new();
    };
    let log = p.log().unwrap();
    let mut out = Vec::new();
    let mut next = 0;
    while next < log.log_end_offset() {
        let records = log.read_records(next, 1 << 20).unwrap();
        assert!(!records.is_empty(), "no records at {next}");
        for r in records {
            if r.offset >= next {
                next = r.offset + 1;
                out.push(String::from_utf8(r.record.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    out
}

/// The child: repairs the input's torn tail, keeps appending numbered lines, runs the
/// pipeline, and prints the topic's end offset every few milliseconds until killed.
#[test]
fn child_connect_pipeline() {
    let Some(dir) = child_dir() else { return };
    let input = dir.join("in.txt");
    let have = complete_lines(&input, true);
    let mut next = have.last().map_or(0, |l| line_number(l) + 1);
    let broker = Broker::open_with(dir.join("data"), BrokerConfig::default()).expect("broker");
    let connect = runtime(&broker);
    start_pipeline(&connect, &dir);
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&input)
            .expect("input");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let mut chunk = String::new();
            for _ in 0..200 {
                chunk.push_str(&line(next));
                chunk.push('\n');
                next += 1;
            }
            f.write_all(chunk.as_bytes()).expect("appending");
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let end = broker
            .partition("lines", 0)
            .map_or(0, |p| p.log_end_offset());
        for name in ["src", "sink"] {
            let status = connect.status(name).expect("status");
            if let Some(trace) = status.tasks.iter().find_map(|t| t.trace.clone()) {
                writeln!(out, "failed {name}: {trace}").unwrap();
            }
        }
        writeln!(out, "progress {end}").unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = writer.join();
}

/// What is on disk after a kill.
struct AtKill {
    /// Complete lines of the input and the byte after each.
    input: Vec<(String, u64)>,
    /// The stored source position.
    position: u64,
    topic: Vec<String>,
    /// The sink group's committed offset.
    committed: u64,
    output: Vec<String>,
}

fn look(dir: &Path) -> AtKill {
    let input_lines = complete_lines(&dir.join("in.txt"), false);
    let mut end = 0;
    let input = input_lines
        .into_iter()
        .map(|l| {
            end += l.len() as u64 + 1;
            (l, end)
        })
        .collect();
    let broker = Broker::open(dir.join("data")).expect("reopening");
    let connect = Connect::new(&broker).expect("runtime");
    let offsets = connect.source_offsets("src").unwrap();
    let position = offsets
        .first()
        .map_or(0, |(_, o)| o["position"].as_u64().unwrap());
    let consumer = broker
        .consumer(ConsumerConfig::default().group_id("connect-sink"))
        .unwrap();
    let committed = consumer
        .committed(&[TopicPartition::new("lines", 0)])
        .unwrap()[0]
        .as_ref()
        .map_or(0, |c| c.offset);
    AtKill {
        input,
        position,
        topic: topic_values(&broker),
        committed,
        output: complete_lines(&dir.join("out.txt"), false),
    }
}

/// The input's lines from byte `position` on (which must be a line boundary).
fn lines_from(input: &[(String, u64)], position: u64) -> Vec<String> {
    let start = if position == 0 {
        0
    } else {
        input
            .iter()
            .position(|(_, end)| *end == position)
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("stored position {position} is not a line boundary"))
    };
    input[start..].iter().map(|(l, _)| l.clone()).collect()
}

/// Checks what happened after `before` up to `after` (the next kill or the end). `covered` is
/// how many of the topic's records the output at `before` reflects (its lines are the topic's
/// records in order, with each restart going back to the committed offset). Returns the
/// duplicates that restart produced in the topic and in the output, and what the output at
/// `after` covers.
fn check_round(before: &AtKill, after: &AtKill, covered: u64) -> (usize, u64, u64) {
    // Source: the stored position never lies beyond what the topic holds...
    let resumed = lines_from(&after.input, before.position);
    // The input only grows, so `after.input` starts with `before.input`.
    let committed_lines = after.input.len() - resumed.len();
    let unique: std::collections::BTreeSet<&String> = before.topic.iter().collect();
    assert!(
        after.input[..committed_lines]
            .iter()
            .all(|(l, _)| unique.contains(l)),
        "a line before the stored source position is missing from the topic"
    );
    // ...and the next run continues exactly there.
    assert_eq!(&after.topic[..before.topic.len()], &before.topic[..]);
    let continued = &after.topic[before.topic.len()..];
    assert_eq!(
        continued,
        &resumed[..continued.len()],
        "the restarted source did not continue at its stored position"
    );
    let topic_dups = resumed.iter().filter(|l| unique.contains(l)).count();
    // Sink: the committed offset never lies beyond what the output holds...
    assert!(
        before.committed <= covered,
        "committed offset {} past the {covered} records the output holds",
        before.committed
    );
    // ...and the next run writes the topic from there.
    assert_eq!(&after.output[..before.output.len()], &before.output[..]);
    let rewritten = &after.output[before.output.len()..];
    let from = before.committed as usize;
    assert_eq!(
        rewritten,
        &after.topic[from..from + rewritten.len()],
        "the restarted sink did not continue at its committed offset"
    );
    (
        topic_dups,
        covered - before.committed,
        before.committed + rewritten.len() as u64,
    )
}

#[test]
fn killed_pipeline_loses_no_line_and_repeats_only_the_uncommitted_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x00C0_FFEE);
    let mut states = Vec::new();
    for round in 0..ROUNDS {
        let mut child = spawn_child(CHILD, dir.path(), round);
        // Well past where the previous run stopped, so that the kill lands mid-stream.
        let target = states.last().map_or(0, |s: &AtKill| s.topic.len() as u64) + 3_000;
        let reached = child.wait_for(GIVE_UP, |l| {
            assert!(!l.starts_with("failed"), "a task of the child failed: {l}");
            l.strip_prefix("progress ")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= target)
        });
        child.assert_running();
        assert!(reached, "the child made no progress to {target}");
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        child.kill();
        states.push(look(dir.path()));
    }
    // The last restart runs here, to the end of the input.
    let input = dir.path().join("in.txt");
    let have = complete_lines(&input, true);
    let last = line_number(have.last().unwrap());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    let mut tail = String::new();
    for n in last + 1..=last + TAIL_LINES {
        tail.push_str(&line(n));
        tail.push('\n');
    }
    f.write_all(tail.as_bytes()).unwrap();
    let all: Vec<String> = (0..=last + TAIL_LINES).map(line).collect();
    {
        let broker = Broker::open(dir.path().join("data")).unwrap();
        let connect = runtime(&broker);
        start_pipeline(&connect, dir.path());
        let deadline = Instant::now() + GIVE_UP;
        while complete_lines(&dir.path().join("out.txt"), false).last() != all.last() {
            assert!(Instant::now() < deadline, "the pipeline did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        connect.shutdown();
    }
    let end = look(dir.path());
    // No line lost, in order once duplicates are removed, in the topic and in the output.
    for (what, values) in [("topic", &end.topic), ("output", &end.output)] {
        let mut seen = std::collections::BTreeSet::new();
        let firsts: Vec<&String> = values.iter().filter(|v| seen.insert(*v)).collect();
        assert_eq!(firsts.len(), all.len(), "lines lost in the {what}");
        assert!(
            firsts.iter().zip(&all).all(|(a, b)| *a == b),
            "{what} out of order"
        );
    }
    // The first run's output is the topic from offset 0.
    let first = &states[0];
    assert_eq!(&first.output[..], &first.topic[..first.output.len()]);
    let mut covered = first.output.len() as u64;
    states.push(end);
    for (round, pair) in states.windows(2).enumerate() {
        let (topic_dups, output_dups, next) = check_round(&pair[0], &pair[1], covered);
        covered = next;
        println!(
            "kill {round}: {} lines in, {} records in the topic, stored position after line \
             {}; {topic_dups} duplicates in the topic (sent after the last offset commit); {} \
             lines out, committed offset {}, {output_dups} duplicates in the output (written \
             after the last consumer commit)",
            pair[0].input.len(),
            pair[0].topic.len(),
            pair[0].input.len() - lines_from(&pair[0].input, pair[0].position).len(),
            pair[0].output.len(),
            pair[0].committed,
        );
    }
}
