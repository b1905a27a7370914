//! Windowed aggregations through the public API and the test driver: tumbling, hopping,
//! sliding and session windows, grace and late records, emit-final, window-store queries, and
//! a property test of windowed counts against a plain model.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tidelog::{
    Consumed, EmitStrategy, Grouped, KGroupedStream, LongCodec, Materialized, Produced,
    SessionWindowedCodec, SessionWindows, SlidingWindows, StreamsBuilder, StringCodec,
    TestInputTopic, TestOutputTopic, TimeWindows, TopologyTestDriver, Window, Windowed,
    WindowedCodec,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn grouped(builder: &StreamsBuilder) -> KGroupedStream<String, String> {
    builder
        .stream("in", Consumed::with(StringCodec, StringCodec))
        .group_by_key(Grouped::default())
}

type Out = TestOutputTopic<Windowed<String>, i64>;

fn driver_with(
    builder: StreamsBuilder,
    size: u64,
) -> (TopologyTestDriver, TestInputTopic<String, String>, Out) {
    let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let out = driver.output_topic("out", WindowedCodec::new(StringCodec, ms(size)), LongCodec);
    (driver, input, out)
}

fn pipe(input: &TestInputTopic<String, String>, key: &str, t: i64) {
    input
        .pipe_input_at(key.to_string(), "v".to_string(), t)
        .unwrap();
}

/// (key, start, end, count, timestamp) of every record not read yet.
fn read(out: &Out) -> Vec<(String, i64, i64, i64, i64)> {
    out.read_records()
        .unwrap()
        .into_iter()
        .map(|r| {
            let value = r.value.expect("no tombstones from time windows");
            (
                r.key.key,
                r.key.window.start,
                r.key.window.end,
                value,
                r.timestamp,
            )
        })
        .collect()
}

fn s(key: &str) -> String {
    key.to_string()
}

#[test]
fn tumbling_counts_with_result_timestamps() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(100)).unwrap())
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(10)), LongCodec),
        );
    let (driver, input, out) = driver_with(builder, 10);
    pipe(&input, "a", 3);
    pipe(&input, "a", 9);
    pipe(&input, "b", 10);
    pipe(&input, "a", 4); // out of order, within grace: the result keeps the newest timestamp
    pipe(&input, "a", 25);
    assert_eq!(
        read(&out),
        [
            (s("a"), 0, 10, 1, 3),
            (s("a"), 0, 10, 2, 9),
            (s("b"), 10, 20, 1, 10),
            (s("a"), 0, 10, 3, 9),
            (s("a"), 20, 30, 1, 25),
        ]
    );
    // Interactive query of the window store.
    let store = driver.window_store::<String, i64>("counts").unwrap();
    assert_eq!(store.fetch(&s("a"), 0, 100).unwrap(), [(0, 3), (20, 1)]);
    assert_eq!(store.fetch_window(&s("b"), 10).unwrap(), Some(1));
    assert_eq!(store.fetch_window(&s("b"), 0).unwrap(), None);
    let all: Vec<(String, Window, i64)> = store
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.key, k.window, v))
        .collect();
    assert_eq!(
        all,
        [
            (s("a"), Window::new(0, 10), 3),
            (s("b"), Window::new(10, 20), 1),
            (s("a"), Window::new(20, 30), 1)
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 0);
    // The store is changelogged with Kafka's window key schema: key ++ start ++ seqnum.
    let changelog = driver.output_topic(
        "topology-test-driver-counts-changelog",
        tidelog::BytesCodec,
        tidelog::BytesCodec,
    );
    let first = changelog.read_record().unwrap().unwrap();
    let key: bytes::Bytes = first.key;
    assert_eq!(&key[..], &[b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
    let value: bytes::Bytes = first.value.unwrap();
    assert_eq!(
        &value[..8],
        &3i64.to_be_bytes(),
        "timestamp first (ValueAndTimestamp)"
    );
}

#[test]
fn hopping_counts() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of_size_with_grace(ms(10), ms(50))
        .unwrap()
        .advance_by(ms(5))
        .unwrap();
    grouped(&builder)
        .windowed_by(windows)
        .count()
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(10)), LongCodec),
        );
    let (_driver, input, out) = driver_with(builder, 10);
    pipe(&input, "a", 2); // [0,10)
    pipe(&input, "a", 7); // [0,10) [5,15)
    pipe(&input, "a", 12); // [5,15) [10,20)
    let got: Vec<(i64, i64)> = read(&out).into_iter().map(|r| (r.1, r.3)).collect();
    assert_eq!(got, [(0, 1), (0, 2), (5, 1), (5, 2), (10, 1)]);
}

#[test]
fn late_records_beyond_grace_are_dropped_and_counted() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(5)).unwrap())
        .count()
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(10)), LongCodec),
        );
    let (driver, input, out) = driver_with(builder, 10);
    pipe(&input, "a", 1);
    pipe(&input, "a", 14); // stream time 14: [0,10) open until 15
    pipe(&input, "a", 2); // accepted within grace
    pipe(&input, "a", 15); // stream time 15: [0,10) closes (10 + 5 <= 15)
    pipe(&input, "a", 3); // late: dropped
    pipe(&input, "b", 9); // late for any key
    let got: Vec<(i64, i64)> = read(&out).into_iter().map(|r| (r.1, r.3)).collect();
    assert_eq!(got, [(0, 1), (10, 1), (0, 2), (10, 2)]);
    assert_eq!(driver.metrics().dropped_late, 2);
}

#[test]
fn emit_final_results_once_when_windows_close() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_with_grace(ms(10), ms(2)).unwrap())
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count()
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(10)), LongCodec),
        );
    let (driver, input, out) = driver_with(builder, 10);
    pipe(&input, "a", 1);
    pipe(&input, "a", 5);
    pipe(&input, "b", 8);
    pipe(&input, "a", 11);
    assert!(out.is_empty(), "nothing before a window closes");
    pipe(&input, "a", 3); // stream time 11: within grace
    pipe(&input, "a", 12); // stream time 12: [0,10) closes
    assert_eq!(read(&out), [(s("a"), 0, 10, 3, 5), (s("b"), 0, 10, 1, 8)]);
    pipe(&input, "a", 4); // late
    pipe(&input, "c", 21); // nothing new closes ([10,20) closes at 22)
    assert!(out.is_empty());
    pipe(&input, "c", 40);
    assert_eq!(
        read(&out),
        [(s("a"), 10, 20, 2, 12), (s("c"), 20, 30, 1, 21)]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn sliding_windows_follow_the_records() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by_sliding(SlidingWindows::of_time_difference_with_grace(ms(10), ms(20)).unwrap())
        .count()
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(10)), LongCodec),
        );
    let (driver, input, out) = driver_with(builder, 10);
    let step = |t: i64| {
        pipe(&input, "a", t);
        read(&out)
            .into_iter()
            .map(|r| (r.1, r.2, r.3))
            .collect::<Vec<_>>()
    };
    // An early record (before the time difference) goes into [0, 10].
    assert_eq!(step(8), [(0, 10, 1)]);
    // Its left window [5, 15] holds 8 and 15; 8's right window [9, 19] holds 15.
    assert_eq!(step(15), [(5, 15, 2), (9, 19, 1)]);
    assert_eq!(step(22), [(12, 22, 2), (16, 26, 1)]);
    // Out of order: a new left window [3, 13], updates of the windows containing 13, and its
    // new right window [14, 24] with 15 and 22.
    assert_eq!(
        step(13),
        [(3, 13, 2), (5, 15, 3), (9, 19, 2), (12, 22, 3), (14, 24, 2)]
    );
    // Stream time 60: every window ending before 40 is closed; a record at 29 would only
    // land in windows ending at or before 39: dropped.
    step(60);
    assert_eq!(step(29), []);
    assert_eq!(driver.metrics().dropped_late, 1);
}

#[test]
fn session_windows_merge_and_forward_tombstones() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_grace(ms(10), ms(30)).unwrap())
        .count_with(Materialized::named("sessions"))
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(SessionWindowedCodec::new(StringCodec), LongCodec),
        );
    let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let out = driver.output_topic("out", SessionWindowedCodec::new(StringCodec), LongCodec);
    let step = |key: &str, t: i64| {
        pipe(&input, key, t);
        out.read_records()
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.key.key,
                    r.key.window.start,
                    r.key.window.end,
                    r.value,
                    r.timestamp,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(step("a", 0), [(s("a"), 0, 0, Some(1), 0)]);
    assert_eq!(
        step("a", 5),
        [(s("a"), 0, 0, None, 0), (s("a"), 0, 5, Some(2), 5)]
    );
    assert_eq!(step("b", 7), [(s("b"), 7, 7, Some(1), 7)]);
    assert_eq!(step("a", 25), [(s("a"), 25, 25, Some(1), 25)]);
    // 15 is within the gap of both sessions of `a`: they merge into one.
    assert_eq!(
        step("a", 15),
        [
            (s("a"), 0, 5, None, 5),
            (s("a"), 25, 25, None, 25),
            (s("a"), 0, 25, Some(4), 25)
        ]
    );
    // A record inside a session updates it without a tombstone.
    assert_eq!(step("a", 20), [(s("a"), 0, 25, Some(5), 25)]);
    let store = driver.session_store::<String, i64>("sessions").unwrap();
    let sessions = |key: &str| -> Vec<(Window, i64)> {
        store
            .fetch(&s(key))
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.window, v))
            .collect()
    };
    assert_eq!(sessions("a"), [(Window::new(0, 25), 5)]);
    assert_eq!(sessions("b"), [(Window::new(7, 7), 1)]);
    // Stream time 70, close time 40: a record whose session would end before 40 is late.
    assert_eq!(step("a", 70), [(s("a"), 70, 70, Some(1), 70)]);
    assert_eq!(step("a", 26), []);
    assert_eq!(driver.metrics().dropped_late, 1);
    // Retention is gap + grace behind the newest session end: [0, 25] is gone.
    assert_eq!(sessions("a"), [(Window::new(70, 70), 1)]);
}

#[test]
fn session_emit_final_and_aggregate_with_merger() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(ms(10)).unwrap())
        .emit_strategy(EmitStrategy::OnWindowClose)
        .aggregate(
            String::new,
            |_, v: String, agg: String| agg + &v,
            |_, a: String, b: String| a + "|" + &b,
            Materialized::with(StringCodec, StringCodec),
        )
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(SessionWindowedCodec::new(StringCodec), StringCodec),
        );
    let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let out = driver.output_topic("out", SessionWindowedCodec::new(StringCodec), StringCodec);
    for (value, t) in [("x", 0), ("y", 8), ("z", 30)] {
        input.pipe_input_at(s("k"), s(value), t).unwrap();
    }
    let got: Vec<(Window, Option<String>)> = out
        .read_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window, r.value))
        .collect();
    // Only the final session [0, 8] (8 + gap 10 < 30); extending [0, 0] used the merger.
    assert_eq!(got, [(Window::new(0, 8), Some(s("|xy")))]);
}

#[test]
fn reduce_in_windows_and_bad_specs() {
    let builder = StreamsBuilder::new();
    grouped(&builder)
        .windowed_by(TimeWindows::of_size_no_grace(ms(100)).unwrap())
        .reduce(|a, b| format!("{a},{b}"))
        .to_stream()
        .to(
            "out",
            Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(100)), StringCodec),
        );
    let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    for (v, t) in [("1", 10), ("2", 20), ("3", 150)] {
        input.pipe_input_at(s("k"), s(v), t).unwrap();
    }
    let out = driver.output_topic("out", WindowedCodec::new(StringCodec, ms(100)), StringCodec);
    let got: Vec<String> = out
        .read_key_values()
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, ["1", "1,2", "3"]);

    assert!(TimeWindows::of_size_no_grace(Duration::ZERO).is_err());
    assert!(SlidingWindows::of_time_difference_without_grace(Duration::ZERO).is_err());
    assert!(SessionWindows::of_inactivity_gap_with_no_grace(Duration::ZERO).is_err());
    assert!(TimeWindows::of_size_no_grace(ms(10))
        .unwrap()
        .advance_by(ms(20))
        .is_err());
}

#[test]
fn a_windowed_table_needs_a_value_codec_for_aggregate() {
    let builder = StreamsBuilder::new();
    let _ = grouped(&builder)
        .windowed_by(TimeWindows::of_size_no_grace(ms(10)).unwrap())
        .aggregate(|| 0u32, |_, _, n| n + 1, Materialized::default());
    let err = builder.build().unwrap_err();
    assert!(err.to_string().contains("value codec"), "{err}");
}

// ---- property test: windowed counts against a plain model ----

/// Expected behaviour, computed the simplest way: every window start from 0 to the record's
/// timestamp is tried.
struct Model {
    size: i64,
    hop: i64,
    grace: i64,
    stream_time: i64,
    counts: BTreeMap<(String, i64), i64>,
    updates: Vec<(String, i64, i64)>,
    dropped: u64,
}

impl Model {
    fn record(&mut self, key: &str, t: i64) {
        self.stream_time = self.stream_time.max(t);
        let mut start = 0;
        while start <= t {
            if t < start + self.size {
                if start + self.size + self.grace <= self.stream_time {
                    self.dropped += 1;
                } else {
                    let count = self.counts.entry((key.to_string(), start)).or_insert(0);
                    *count += 1;
                    self.updates.push((key.to_string(), start, *count));
                }
            }
            start += self.hop;
        }
    }

    /// Final counts of the windows closed at the end.
    fn closed(&self) -> BTreeMap<(String, i64), i64> {
        self.counts
            .iter()
            .filter(|((_, start), _)| start + self.size + self.grace <= self.stream_time)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn windowed_counts_match_the_model(
        size in 1i64..40,
        hop_divisor in 1i64..4,
        grace in 0i64..30,
        records in prop::collection::vec((0usize..3, 0i64..200), 1..60),
    ) {
        let hop = (size / hop_divisor).max(1);
        let mut windows = TimeWindows::of_size_with_grace(ms(size as u64), ms(grace as u64)).unwrap();
        if hop != size {
            windows = windows.advance_by(ms(hop as u64)).unwrap();
        }
        let builder = StreamsBuilder::new();
        let g = grouped(&builder);
        let codec = || WindowedCodec::new(StringCodec, ms(size as u64));
        g.windowed_by(windows)
            .count()
            .to_stream()
            .to("out", Produced::with_tombstones(codec(), LongCodec));
        g.windowed_by(windows)
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count()
            .to_stream()
            .to("final", Produced::with_tombstones(codec(), LongCodec));
        let driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
        let input = driver.input_topic("in", StringCodec, StringCodec);
        let mut model = Model {
            size, hop, grace,
            stream_time: i64::MIN,
            counts: BTreeMap::new(),
            updates: Vec::new(),
            dropped: 0,
        };
        for (key, t) in &records {
            let key = ["a", "b", "c"][*key];
            pipe(&input, key, *t);
            model.record(key, *t);
        }
        let updates: Vec<(String, i64, i64)> = driver
            .output_topic("out", codec(), LongCodec)
            .read_key_values()
            .unwrap()
            .into_iter()
            .map(|(k, c)| {
                assert_eq!(k.window.end, k.window.start + size);
                (k.key, k.window.start, c)
            })
            .collect();
        prop_assert_eq!(&updates, &model.updates);
        let mut finals = BTreeMap::new();
        for (k, c) in driver.output_topic("final", codec(), LongCodec).read_key_values().unwrap() {
            prop_assert!(finals.insert((k.key, k.window.start), c).is_none(), "a window emitted twice");
        }
        prop_assert_eq!(finals, model.closed());
        // Both aggregations drop the same late records.
        prop_assert_eq!(driver.metrics().dropped_late, 2 * model.dropped);
    }
}

/// The sliding windows of one key that Kafka's definition gives for `records`, with counts:
/// each record's left window `[t - diff, t]` (`[0, diff]` for records before `diff`) and each
/// record's right window `[t + 1, t + 1 + diff]` when it holds a record.
fn sliding_model(records: &[i64], diff: i64) -> BTreeMap<i64, i64> {
    let count = |start: i64| {
        records
            .iter()
            .filter(|&&r| start <= r && r <= start + diff)
            .count() as i64
    };
    let mut windows = BTreeMap::new();
    for &r in records {
        let left = if r < diff { 0 } else { r - diff };
        windows.insert(left, count(left));
        if count(r + 1) > 0 {
            windows.insert(r + 1, count(r + 1));
        }
    }
    windows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sliding_counts_match_the_model(
        diff in 1i64..20,
        records in prop::collection::vec((0usize..2, 0i64..120), 1..40),
    ) {
        let builder = StreamsBuilder::new();
        grouped(&builder)
            .windowed_by_sliding(
                SlidingWindows::of_time_difference_with_grace(ms(diff as u64), ms(1_000)).unwrap(),
            )
            .count_with(Materialized::named("sliding"))
            .to_stream()
            .to("out", Produced::with_tombstones(WindowedCodec::new(StringCodec, ms(diff as u64)), LongCodec));
        let (driver, input, out) = driver_with(builder, diff as u64);
        for (key, t) in &records {
            pipe(&input, ["a", "b"][*key], *t);
        }
        // The latest update of each window is its count.
        let mut latest = BTreeMap::new();
        for (key, start, end, count, _) in read(&out) {
            prop_assert_eq!(end, start + diff);
            latest.insert((key, start), count);
        }
        let store = driver.window_store::<String, i64>("sliding").unwrap();
        for (i, key) in ["a", "b"].into_iter().enumerate() {
            let times: Vec<i64> = records.iter().filter(|(k, _)| *k == i).map(|(_, t)| *t).collect();
            let expected = sliding_model(&times, diff);
            let stored: BTreeMap<i64, i64> = store.fetch(&s(key), 0, i64::MAX).unwrap().into_iter().collect();
            prop_assert_eq!(&stored, &expected, "key {}", key);
            let forwarded: BTreeMap<i64, i64> = latest
                .iter()
                .filter(|((k, _), _)| k == key)
                .map(|((_, start), c)| (*start, *c))
                .collect();
            prop_assert_eq!(&forwarded, &expected, "key {}", key);
        }
        prop_assert_eq!(driver.metrics().dropped_late, 0);
    }
}
