//! Every DSL operator, the Processor API and the topology checks, through the
//! `TopologyTestDriver`, against results computed by hand. One test per capability; each
//! states its input and the exact records (keys, values, timestamps, tombstones) expected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tidelog::{
    Cancellable, Consumed, Error, Grouped, Header, KStream, KTable, KeyValueStore, LongCodec,
    Materialized, Processor, ProcessorContext, Produced, PunctuationType, Repartitioned,
    StoreBuilder, StreamRecord, StreamsBuilder, StreamsConfig, StringCodec, TestRecord, Topology,
    TopologyTestDriver,
};

/// The application id `TopologyTestDriver::new` uses; internal topics start with it.
const APP: &str = "topology-test-driver";

fn s(text: &str) -> String {
    text.to_owned()
}

fn driver(builder: StreamsBuilder) -> TopologyTestDriver {
    TopologyTestDriver::new(builder.build().unwrap()).unwrap()
}

/// An expected output record without headers.
fn rec<K, V>(key: K, value: Option<V>, timestamp: i64) -> TestRecord<K, V> {
    TestRecord {
        key,
        value,
        timestamp,
        headers: Vec::new(),
    }
}

/// A string-keyed, string-valued stream of `topic`.
fn strings(builder: &StreamsBuilder, topic: &str) -> KStream<String, String> {
    builder.stream(topic, Consumed::with(StringCodec, StringCodec))
}

/// A string-keyed, `i64`-valued stream of `topic`.
fn longs(builder: &StreamsBuilder, topic: &str) -> KStream<String, i64> {
    builder.stream(topic, Consumed::with(StringCodec, LongCodec))
}

fn string_table(builder: &StreamsBuilder, topic: &str, store: &str) -> KTable<String, String> {
    builder.table(
        topic,
        Consumed::with(StringCodec, StringCodec),
        Materialized::named(store),
    )
}

fn store_contents<V: tidelog::Data>(driver: &TopologyTestDriver, store: &str) -> Vec<(String, V)> {
    driver
        .key_value_store::<String, V>(store)
        .unwrap()
        .all()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Stateless stream operators
// ---------------------------------------------------------------------------------------------

#[test]
fn filter_keeps_matching_records_with_their_timestamps() {
    let builder = StreamsBuilder::new();
    longs(&builder, "in")
        .filter(|_, v| v % 2 == 0)
        .to("out", Produced::with(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, LongCodec);
    for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let i = i as i64;
        input.pipe_input_at(s(key), i + 1, 100 * i).unwrap();
    }
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("b"), Some(2), 100), rec(s("d"), Some(4), 300)]
    );
}

#[test]
fn filter_not_drops_matching_records() {
    let builder = StreamsBuilder::new();
    longs(&builder, "in")
        .filter_not(|k, v| v % 2 == 0 || k == "c")
        .to("out", Produced::with(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, LongCodec);
    for (key, value) in [("a", 1), ("b", 2), ("c", 3), ("d", 5)] {
        input.pipe_input_at(s(key), value, value * 10).unwrap();
    }
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("a"), Some(1), 10), rec(s("d"), Some(5), 50)]
    );
}

#[test]
fn map_replaces_key_and_value() {
    let builder = StreamsBuilder::new();
    longs(&builder, "in")
        .map(|k, v| (format!("n{v}"), k.to_uppercase()))
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, LongCodec);
    input.pipe_input_at(s("tea"), 7, 5).unwrap();
    input.pipe_input_at(s("cake"), 8, 6).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("n7"), Some(s("TEA")), 5),
            rec(s("n8"), Some(s("CAKE")), 6)
        ]
    );
}

#[test]
fn map_values_changes_the_value_type() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values(|v| v.len() as i64)
        .to("out", Produced::with(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("k1"), s("hello"), 1).unwrap();
    input.pipe_input_at(s("k2"), s(""), 2).unwrap();
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("k1"), Some(5), 1), rec(s("k2"), Some(0), 2)]
    );
}

#[test]
fn map_values_with_key_sees_the_key() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values_with_key(|k, v| format!("{k}:{v}"))
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("x"), 3).unwrap();
    input.pipe_input_at(s("b"), s("y"), 4).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(s("a:x")), 3),
            rec(s("b"), Some(s("b:y")), 4)
        ]
    );
}

#[test]
fn flat_map_emits_zero_or_more_records_each_with_the_input_timestamp_and_headers() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .flat_map(|k, line| {
            line.split_whitespace()
                .map(|word| (s(word), k.clone()))
                .collect::<Vec<_>>()
        })
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let headers = vec![Header::new("trace", "t-1")];
    input
        .pipe_raw(
            Some(Bytes::from_static(b"doc1")),
            Some(Bytes::from_static(b"green tea")),
            10,
            headers.clone(),
        )
        .unwrap();
    input.pipe_input_at(s("doc2"), s("   "), 20).unwrap();
    input.pipe_input_at(s("doc3"), s("cake"), 30).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            TestRecord {
                key: s("green"),
                value: Some(s("doc1")),
                timestamp: 10,
                headers: headers.clone(),
            },
            TestRecord {
                key: s("tea"),
                value: Some(s("doc1")),
                timestamp: 10,
                headers,
            },
            rec(s("cake"), Some(s("doc3")), 30),
        ]
    );
}

#[test]
fn flat_map_values_keeps_the_key() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .flat_map_values(|line| line.split(',').map(s).collect::<Vec<_>>())
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("k"), s("a,b,c"), 1).unwrap();
    input.pipe_input_at(s("j"), s("d"), 2).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("k"), Some(s("a")), 1),
            rec(s("k"), Some(s("b")), 1),
            rec(s("k"), Some(s("c")), 1),
            rec(s("j"), Some(s("d")), 2),
        ]
    );
}

#[test]
fn select_key_rekeys_and_keeps_the_value() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .select_key(|k, v| format!("{}-{k}", &v[..1]))
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("1"), s("tea"), 1).unwrap();
    input.pipe_input_at(s("2"), s("cake"), 2).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("t-1"), Some(s("tea")), 1),
            rec(s("c-2"), Some(s("cake")), 2)
        ]
    );
}

#[test]
fn peek_sees_every_record_and_passes_it_on_unchanged() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let log = Arc::clone(&seen);
    strings(&builder, "in")
        .peek(move |k, v| log.lock().unwrap().push((k.clone(), v.clone())))
        .filter(|_, v| v != "skip")
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("one"), 1).unwrap();
    input.pipe_input_at(s("b"), s("skip"), 2).unwrap();
    input.pipe_input_at(s("c"), s("three"), 3).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (s("a"), s("one")),
            (s("b"), s("skip")),
            (s("c"), s("three"))
        ]
    );
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(s("one")), 1),
            rec(s("c"), Some(s("three")), 3)
        ]
    );
}

#[test]
fn foreach_calls_the_action_for_every_record() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let log = Arc::clone(&seen);
    longs(&builder, "in")
        .map_values(|v| v * 10)
        .foreach(move |k, v| log.lock().unwrap().push((k.clone(), *v)));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, LongCodec);
    input
        .pipe_key_values([(s("a"), 1), (s("b"), 2), (s("a"), 3)])
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(s("a"), 10), (s("b"), 20), (s("a"), 30)]
    );
}

#[test]
fn branch_sends_each_record_to_the_first_matching_branch_and_drops_the_rest() {
    let builder = StreamsBuilder::new();
    let branches = longs(&builder, "in").branch(vec![
        Box::new(|_, v| *v < 0),
        Box::new(|_, v| *v < 10),
        // Also true for everything below 10: those went to the branch before.
        Box::new(|_, v| *v < 100),
    ]);
    assert_eq!(branches.len(), 3);
    for (i, branch) in branches.iter().enumerate() {
        branch.to(
            &format!("branch-{i}"),
            Produced::with(StringCodec, LongCodec),
        );
    }
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, LongCodec);
    for (i, value) in [5, -3, 500, 50, 9, -1, 99, 100].into_iter().enumerate() {
        input
            .pipe_input_at(format!("r{i}"), value, i as i64)
            .unwrap();
    }
    let read = |i: usize| {
        driver
            .output_topic(&format!("branch-{i}"), StringCodec, LongCodec)
            .read_records()
            .unwrap()
    };
    assert_eq!(
        read(0),
        vec![rec(s("r1"), Some(-3), 1), rec(s("r5"), Some(-1), 5)]
    );
    assert_eq!(
        read(1),
        vec![rec(s("r0"), Some(5), 0), rec(s("r4"), Some(9), 4)]
    );
    // 500 and 100 match no predicate: dropped.
    assert_eq!(
        read(2),
        vec![rec(s("r3"), Some(50), 3), rec(s("r6"), Some(99), 6)]
    );
}

#[test]
fn merge_interleaves_two_streams_in_processing_order() {
    let builder = StreamsBuilder::new();
    let left = strings(&builder, "left");
    let right = strings(&builder, "right").map_values(|v| v.to_uppercase());
    left.merge(&right)
        .to("merged", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let l = driver.input_topic("left", StringCodec, StringCodec);
    let r = driver.input_topic("right", StringCodec, StringCodec);
    l.pipe_input_at(s("a"), s("l1"), 1).unwrap();
    r.pipe_input_at(s("b"), s("r1"), 2).unwrap();
    r.pipe_input_at(s("c"), s("r2"), 3).unwrap();
    l.pipe_input_at(s("d"), s("l2"), 4).unwrap();
    let out = driver.output_topic("merged", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(s("l1")), 1),
            rec(s("b"), Some(s("R1")), 2),
            rec(s("c"), Some(s("R2")), 3),
            rec(s("d"), Some(s("l2")), 4),
        ]
    );
}

#[test]
fn to_carries_headers_and_timestamps_through_operators() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values(|v| v.len() as i64)
        .select_key(|k, _| format!("{k}!"))
        .to("out", Produced::with(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let headers = vec![
        Header::new("trace", "abc"),
        Header {
            key: s("empty"),
            value: None,
        },
    ];
    input
        .pipe_raw(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"four")),
            1234,
            headers.clone(),
        )
        .unwrap();
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![TestRecord {
            key: s("k!"),
            value: Some(4),
            timestamp: 1234,
            headers,
        }]
    );
}

#[test]
fn records_without_a_key_get_the_key_decoded_from_no_bytes() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in").to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_value_at(s("v"), 9).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s(""), Some(s("v")), 9)]
    );
}

#[test]
fn repartition_goes_through_the_internal_topic_and_comes_back() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .select_key(|_, v| v.clone())
        .repartition(Repartitioned::with(StringCodec, StringCodec).with_name("by-value"))
        .map_values(|v| format!("<{v}>"))
        .to("out", Produced::with(StringCodec, StringCodec));
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2);
    assert_eq!(topology.source_topics(), vec![s("in")]);
    let driver = TopologyTestDriver::new(topology).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let headers = vec![Header::new("h", "1")];
    input
        .pipe_raw(
            Some(Bytes::from_static(b"k1")),
            Some(Bytes::from_static(b"x")),
            10,
            headers.clone(),
        )
        .unwrap();
    input.pipe_input_at(s("k2"), s("y"), 20).unwrap();
    let through = driver.output_topic(
        &format!("{APP}-by-value-repartition"),
        StringCodec,
        StringCodec,
    );
    assert_eq!(
        through.read_records().unwrap(),
        vec![
            TestRecord {
                key: s("x"),
                value: Some(s("x")),
                timestamp: 10,
                headers: headers.clone(),
            },
            rec(s("y"), Some(s("y")), 20),
        ]
    );
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            TestRecord {
                key: s("x"),
                value: Some(s("<x>")),
                timestamp: 10,
                headers,
            },
            rec(s("y"), Some(s("<y>")), 20),
        ]
    );
}

#[test]
fn repartition_topic_takes_the_configured_application_id() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .repartition(Repartitioned::default().with_name("again"))
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver =
        TopologyTestDriver::with_config(builder.build().unwrap(), &StreamsConfig::new("my-app"), 0)
            .unwrap();
    driver
        .input_topic("in", StringCodec, StringCodec)
        .pipe_input_at(s("k"), s("v"), 5)
        .unwrap();
    let through = driver.output_topic("my-app-again-repartition", StringCodec, StringCodec);
    assert_eq!(
        through.read_records().unwrap(),
        vec![rec(s("k"), Some(s("v")), 5)]
    );
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("k"), Some(s("v")), 5)]
    );
}

#[test]
fn a_topic_written_and_read_back_is_processed_in_the_same_pipe() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values(|v| v.to_uppercase())
        .to("mid", Produced::with(StringCodec, StringCodec));
    strings(&builder, "mid")
        .map_values(|v| format!("{v}!"))
        .to("out", Produced::with(StringCodec, StringCodec));
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2);
    let driver = TopologyTestDriver::new(topology).unwrap();
    driver
        .input_topic("in", StringCodec, StringCodec)
        .pipe_input_at(s("k"), s("tea"), 7)
        .unwrap();
    let mid = driver.output_topic("mid", StringCodec, StringCodec);
    assert_eq!(
        mid.read_records().unwrap(),
        vec![rec(s("k"), Some(s("TEA")), 7)]
    );
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("k"), Some(s("TEA!")), 7)]
    );
}

// ---------------------------------------------------------------------------------------------
// Grouping and aggregation
// ---------------------------------------------------------------------------------------------

#[test]
fn group_by_key_count_into_a_named_store_with_changelog() {
    let builder = StreamsBuilder::new();
    strings(&builder, "words")
        .group_by_key(Grouped::default())
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let topology = builder.build().unwrap();
    // No operator changed keys: no repartition topic.
    assert_eq!(topology.subtopology_count(), 1);
    let driver = TopologyTestDriver::new(topology).unwrap();
    let input = driver.input_topic("words", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("."), 10).unwrap();
    input.pipe_input_at(s("b"), s("."), 20).unwrap();
    input.pipe_input_at(s("a"), s("."), 30).unwrap();
    let out = driver.output_topic("counts-out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(1), 10),
            rec(s("b"), Some(1), 20),
            rec(s("a"), Some(2), 30)
        ]
    );
    assert_eq!(
        store_contents::<i64>(&driver, "counts"),
        vec![(s("a"), 2), (s("b"), 1)]
    );
    let store = driver.key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.get(&s("a")).unwrap(), Some(2));
    assert_eq!(store.get(&s("zzz")).unwrap(), None);
    // Every change reaches the changelog, stamped with wall-clock time (the driver's, 0 here):
    // compaction ages tombstones by real time.
    let changelog = driver.output_topic(&format!("{APP}-counts-changelog"), StringCodec, LongCodec);
    assert_eq!(
        changelog.read_records().unwrap(),
        vec![
            rec(s("a"), Some(1), 0),
            rec(s("b"), Some(1), 0),
            rec(s("a"), Some(2), 0)
        ]
    );
}

#[test]
fn group_by_key_reduce_sums_values_per_key() {
    let builder = StreamsBuilder::new();
    longs(&builder, "amounts")
        .group_by_key(Grouped::default())
        .reduce_with(|a, b| a + b, Materialized::named("sums"))
        .to_stream()
        .to(
            "sums-out",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let driver = driver(builder);
    let input = driver.input_topic("amounts", StringCodec, LongCodec);
    input.pipe_input_at(s("a"), 5, 1).unwrap();
    input.pipe_input_at(s("b"), 7, 2).unwrap();
    input.pipe_input_at(s("a"), -2, 3).unwrap();
    input.pipe_input_at(s("a"), 10, 4).unwrap();
    let out = driver.output_topic("sums-out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(5), 1),
            rec(s("b"), Some(7), 2),
            rec(s("a"), Some(3), 3),
            rec(s("a"), Some(13), 4),
        ]
    );
    assert_eq!(
        store_contents::<i64>(&driver, "sums"),
        vec![(s("a"), 13), (s("b"), 7)]
    );
}

#[test]
fn group_by_key_aggregate_folds_into_another_type() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .group_by_key(Grouped::default())
        .aggregate(
            || 100,
            |k, v, total: i64| total + (k.len() * v.len()) as i64,
            Materialized::named("lengths").with_value_codec(LongCodec),
        )
        .to_stream()
        .to("out", Produced::with_tombstones(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("xyz"), 1).unwrap();
    input.pipe_input_at(s("bb"), s("q"), 2).unwrap();
    input.pipe_input_at(s("a"), s("12"), 3).unwrap();
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(103), 1),
            rec(s("bb"), Some(102), 2),
            rec(s("a"), Some(105), 3),
        ]
    );
    assert_eq!(
        store_contents::<i64>(&driver, "lengths"),
        vec![(s("a"), 105), (s("bb"), 102)]
    );
}

#[test]
fn group_by_a_new_key_repartitions_automatically() {
    let builder = StreamsBuilder::new();
    strings(&builder, "clicks")
        .group_by(
            |_, page| page.clone(),
            Grouped::with(StringCodec, StringCodec).with_name("by-page"),
        )
        .count_with(Materialized::named("page-counts"))
        .to_stream()
        .to(
            "page-counts-out",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2);
    let driver = TopologyTestDriver::new(topology).unwrap();
    let input = driver.input_topic("clicks", StringCodec, StringCodec);
    input.pipe_input_at(s("u1"), s("home"), 1).unwrap();
    input.pipe_input_at(s("u2"), s("cart"), 2).unwrap();
    input.pipe_input_at(s("u3"), s("home"), 3).unwrap();
    let through = driver.output_topic(
        &format!("{APP}-by-page-repartition"),
        StringCodec,
        StringCodec,
    );
    assert_eq!(
        through.read_records().unwrap(),
        vec![
            rec(s("home"), Some(s("home")), 1),
            rec(s("cart"), Some(s("cart")), 2),
            rec(s("home"), Some(s("home")), 3),
        ]
    );
    let out = driver.output_topic("page-counts-out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("home"), Some(1), 1),
            rec(s("cart"), Some(1), 2),
            rec(s("home"), Some(2), 3)
        ]
    );
    assert_eq!(
        store_contents::<i64>(&driver, "page-counts"),
        vec![(s("cart"), 1), (s("home"), 2)]
    );
}

#[test]
fn group_by_key_after_a_key_change_repartitions_too() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map(|k, v| (v, k))
        .group_by_key(Grouped::with(StringCodec, StringCodec).with_name("swapped"))
        .reduce_with(|a, b| format!("{a}+{b}"), Materialized::named("joined"))
        .to_stream()
        .to("out", Produced::with_tombstones(StringCodec, StringCodec));
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2);
    let driver = TopologyTestDriver::new(topology).unwrap();
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("1"), s("x"), 1).unwrap();
    input.pipe_input_at(s("2"), s("x"), 2).unwrap();
    input.pipe_input_at(s("3"), s("y"), 3).unwrap();
    let through = driver.output_topic(
        &format!("{APP}-swapped-repartition"),
        StringCodec,
        StringCodec,
    );
    assert_eq!(through.queue_size(), 3);
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("x"), Some(s("1")), 1),
            rec(s("x"), Some(s("1+2")), 2),
            rec(s("y"), Some(s("3")), 3),
        ]
    );
}

#[test]
fn materialized_with_logging_disabled_writes_no_changelog() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .group_by_key(Grouped::default())
        .count_with(Materialized::named("quiet").with_logging_disabled());
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("."), 1).unwrap();
    input.pipe_input_at(s("a"), s("."), 2).unwrap();
    assert_eq!(store_contents::<i64>(&driver, "quiet"), vec![(s("a"), 2)]);
    let changelog = driver.output_topic(&format!("{APP}-quiet-changelog"), StringCodec, LongCodec);
    assert!(changelog.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[test]
fn table_upserts_and_tombstones_update_store_and_downstream() {
    let builder = StreamsBuilder::new();
    string_table(&builder, "users", "users-store")
        .to_stream()
        .to(
            "users-out",
            Produced::with_tombstones(StringCodec, StringCodec),
        );
    let driver = driver(builder);
    let input = driver.input_topic("users", StringCodec, StringCodec);
    input.pipe_input_at(s("u1"), s("alice"), 1).unwrap();
    input.pipe_input_at(s("u2"), s("bob"), 2).unwrap();
    assert_eq!(
        store_contents::<String>(&driver, "users-store"),
        vec![(s("u1"), s("alice")), (s("u2"), s("bob"))]
    );
    input.pipe_input_at(s("u1"), s("alicia"), 3).unwrap();
    input.pipe_tombstone_at(s("u2"), 4).unwrap();
    assert_eq!(
        store_contents::<String>(&driver, "users-store"),
        vec![(s("u1"), s("alicia"))]
    );
    let out = driver.output_topic("users-out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("u1"), Some(s("alice")), 1),
            rec(s("u2"), Some(s("bob")), 2),
            rec(s("u1"), Some(s("alicia")), 3),
            rec(s("u2"), None, 4),
        ]
    );
    // The store's changelog has the deletion as a tombstone.
    let changelog = driver.output_topic(
        &format!("{APP}-users-store-changelog"),
        StringCodec,
        StringCodec,
    );
    assert_eq!(
        changelog.read_key_values_to_map().unwrap(),
        [(s("u1"), s("alicia"))].into_iter().collect()
    );
}

#[test]
fn table_source_drops_records_without_a_key() {
    let builder = StreamsBuilder::new();
    string_table(&builder, "t", "t-store")
        .to_stream()
        .to("t-out", Produced::with_tombstones(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("t", StringCodec, StringCodec);
    input.pipe_value_at(s("orphan"), 1).unwrap();
    input.pipe_input_at(s("k"), s("v"), 2).unwrap();
    input.pipe_raw(None, None, 3, Vec::new()).unwrap();
    let metrics = driver.metrics();
    assert_eq!(metrics.dropped_null_key, 2);
    assert_eq!(metrics.processed, 3);
    assert_eq!(
        store_contents::<String>(&driver, "t-store"),
        vec![(s("k"), s("v"))]
    );
    let out = driver.output_topic("t-out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("k"), Some(s("v")), 2)]
    );
}

#[test]
fn table_filter_forwards_failing_rows_as_deletions() {
    let builder = StreamsBuilder::new();
    builder
        .table(
            "prices",
            Consumed::with(StringCodec, LongCodec),
            Materialized::named("prices-store"),
        )
        .filter(|_, price| *price >= 10)
        .to_stream()
        .to(
            "expensive",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let driver = driver(builder);
    let input = driver.input_topic("prices", StringCodec, LongCodec);
    input.pipe_input_at(s("a"), 5, 1).unwrap();
    input.pipe_input_at(s("b"), 20, 2).unwrap();
    input.pipe_input_at(s("b"), 3, 3).unwrap();
    input.pipe_input_at(s("a"), 15, 4).unwrap();
    input.pipe_tombstone_at(s("a"), 5).unwrap();
    let out = driver.output_topic("expensive", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), None, 1),
            rec(s("b"), Some(20), 2),
            rec(s("b"), None, 3),
            rec(s("a"), Some(15), 4),
            rec(s("a"), None, 5),
        ]
    );
    // The source's store keeps every row; the filter is a view.
    assert_eq!(
        store_contents::<i64>(&driver, "prices-store"),
        vec![(s("b"), 3)]
    );
}

#[test]
fn table_filter_not_and_map_values() {
    let builder = StreamsBuilder::new();
    string_table(&builder, "names", "names-store")
        .filter_not(|k, _| k.starts_with('x'))
        .map_values(|name| name.len() as i64)
        .to_stream()
        .to("lengths", Produced::with_tombstones(StringCodec, LongCodec));
    let driver = driver(builder);
    let input = driver.input_topic("names", StringCodec, StringCodec);
    input.pipe_input_at(s("a"), s("ann"), 1).unwrap();
    input.pipe_input_at(s("x1"), s("xavier"), 2).unwrap();
    input.pipe_input_at(s("a"), s("annabel"), 3).unwrap();
    input.pipe_tombstone_at(s("a"), 4).unwrap();
    let out = driver.output_topic("lengths", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), Some(3), 1),
            rec(s("x1"), None, 2),
            rec(s("a"), Some(7), 3),
            rec(s("a"), None, 4),
        ]
    );
}

#[test]
fn aggregation_table_to_stream_filter_and_map_values() {
    // A table made by an aggregation behaves as a source table does.
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .group_by_key(Grouped::default())
        .count()
        .filter(|_, n| n % 2 == 0)
        .map_values(|n| format!("even:{n}"))
        .to_stream()
        .to("out", Produced::with_tombstones(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    for (i, key) in ["a", "a", "b", "a"].into_iter().enumerate() {
        input.pipe_input_at(s(key), s("."), i as i64).unwrap();
    }
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("a"), None, 0),
            rec(s("a"), Some(s("even:2")), 1),
            rec(s("b"), None, 2),
            rec(s("a"), None, 3),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Joins
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum TableJoin {
    Inner,
    Left,
    Outer,
}

fn or_null(value: Option<&String>) -> &str {
    value.map_or("null", String::as_str)
}

/// Runs one update sequence on two tables through a table-table join and returns what the
/// joined table forwarded.
fn table_join_updates(kind: TableJoin) -> Vec<TestRecord<String, String>> {
    let builder = StreamsBuilder::new();
    let left = string_table(&builder, "left", "left-store");
    let right = string_table(&builder, "right", "right-store");
    let joined = match kind {
        TableJoin::Inner => left.join(&right, |l, r| format!("{l}+{r}")),
        TableJoin::Left => left.left_join(&right, |l, r| format!("{l}+{}", or_null(r))),
        TableJoin::Outer => {
            left.outer_join(&right, |l, r| format!("{}+{}", or_null(l), or_null(r)))
        }
    };
    joined.to_stream().to(
        "joined",
        Produced::with_tombstones(StringCodec, StringCodec),
    );
    let driver = driver(builder);
    let l = driver.input_topic("left", StringCodec, StringCodec);
    let r = driver.input_topic("right", StringCodec, StringCodec);
    l.pipe_input_at(s("a"), s("1"), 1).unwrap();
    r.pipe_input_at(s("a"), s("x"), 2).unwrap();
    l.pipe_input_at(s("a"), s("2"), 3).unwrap();
    r.pipe_input_at(s("b"), s("y"), 4).unwrap();
    r.pipe_tombstone_at(s("a"), 5).unwrap();
    l.pipe_tombstone_at(s("a"), 6).unwrap();
    r.pipe_tombstone_at(s("b"), 7).unwrap();
    driver
        .output_topic("joined", StringCodec, StringCodec)
        .read_records()
        .unwrap()
}

#[test]
fn table_table_join_has_rows_for_keys_on_both_sides() {
    // Updates whose key is missing on the other side make no row and forward nothing
    // (Kafka's KTableKTableInnerJoin); a deletion of a joined row forwards a tombstone.
    assert_eq!(
        table_join_updates(TableJoin::Inner),
        vec![
            rec(s("a"), Some(s("1+x")), 2),
            rec(s("a"), Some(s("2+x")), 3),
            rec(s("a"), None, 5),
        ]
    );
}

#[test]
fn table_table_left_join_has_rows_for_every_left_key() {
    assert_eq!(
        table_join_updates(TableJoin::Left),
        vec![
            rec(s("a"), Some(s("1+null")), 1),
            rec(s("a"), Some(s("1+x")), 2),
            rec(s("a"), Some(s("2+x")), 3),
            // b is only on the right: no row.
            rec(s("a"), Some(s("2+null")), 5),
            rec(s("a"), None, 6),
        ]
    );
}

#[test]
fn table_table_outer_join_has_rows_for_keys_on_either_side() {
    assert_eq!(
        table_join_updates(TableJoin::Outer),
        vec![
            rec(s("a"), Some(s("1+null")), 1),
            rec(s("a"), Some(s("1+x")), 2),
            rec(s("a"), Some(s("2+x")), 3),
            rec(s("b"), Some(s("null+y")), 4),
            rec(s("a"), Some(s("2+null")), 5),
            rec(s("a"), None, 6),
            rec(s("b"), None, 7),
        ]
    );
}

/// Orders joined with customers; returns (join, left join) outputs.
#[allow(clippy::type_complexity)]
fn stream_table_join_outputs() -> (
    Vec<TestRecord<String, String>>,
    Vec<TestRecord<String, String>>,
) {
    let builder = StreamsBuilder::new();
    let customers = string_table(&builder, "customers", "customers-store");
    let orders = strings(&builder, "orders");
    orders
        .join(&customers, |order, customer| {
            format!("{order} for {customer}")
        })
        .to("enriched", Produced::with(StringCodec, StringCodec));
    orders
        .left_join(&customers, |order, customer: Option<&String>| {
            format!("{order} for {}", customer.map_or("unknown", String::as_str))
        })
        .to("enriched-left", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let o = driver.input_topic("orders", StringCodec, StringCodec);
    let c = driver.input_topic("customers", StringCodec, StringCodec);
    o.pipe_input_at(s("c1"), s("tea"), 1).unwrap();
    c.pipe_input_at(s("c1"), s("ann"), 2).unwrap();
    o.pipe_input_at(s("c1"), s("cake"), 3).unwrap();
    c.pipe_input_at(s("c1"), s("anna"), 4).unwrap();
    o.pipe_input_at(s("c1"), s("pie"), 5).unwrap();
    c.pipe_tombstone_at(s("c1"), 6).unwrap();
    o.pipe_input_at(s("c1"), s("jam"), 7).unwrap();
    o.pipe_input_at(s("c2"), s("bun"), 8).unwrap();
    let read = |topic: &str| {
        driver
            .output_topic(topic, StringCodec, StringCodec)
            .read_records()
            .unwrap()
    };
    (read("enriched"), read("enriched-left"))
}

#[test]
fn stream_table_join_drops_records_whose_key_is_not_in_the_table() {
    let (joined, _) = stream_table_join_outputs();
    // Table updates trigger nothing; each order sees the customer as of its processing.
    assert_eq!(
        joined,
        vec![
            rec(s("c1"), Some(s("cake for ann")), 3),
            rec(s("c1"), Some(s("pie for anna")), 5),
        ]
    );
}

#[test]
fn stream_table_left_join_joins_missing_keys_with_none() {
    let (_, left) = stream_table_join_outputs();
    assert_eq!(
        left,
        vec![
            rec(s("c1"), Some(s("tea for unknown")), 1),
            rec(s("c1"), Some(s("cake for ann")), 3),
            rec(s("c1"), Some(s("pie for anna")), 5),
            rec(s("c1"), Some(s("jam for unknown")), 7),
            rec(s("c2"), Some(s("bun for unknown")), 8),
        ]
    );
}

#[test]
fn stream_table_join_reads_through_table_filters_and_repartitions_a_rekeyed_stream() {
    let builder = StreamsBuilder::new();
    let vip = string_table(&builder, "customers", "customers-store")
        .filter(|_, level| level == "gold")
        .map_values(|level| level.to_uppercase());
    // Orders are keyed by order id, valued "<customer>:<item>". After select_key the stream
    // no longer knows its key codec, and join takes no codecs: repartition explicitly.
    strings(&builder, "orders")
        .select_key(|_, v| v.split(':').next().unwrap_or_default().to_owned())
        .repartition(Repartitioned::with(StringCodec, StringCodec).with_name("orders-by-customer"))
        .join(&vip, |order, level| format!("{order}@{level}"))
        .to("vip-orders", Produced::with(StringCodec, StringCodec));
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopology_count(), 2);
    let driver = TopologyTestDriver::new(topology).unwrap();
    let c = driver.input_topic("customers", StringCodec, StringCodec);
    let o = driver.input_topic("orders", StringCodec, StringCodec);
    c.pipe_input_at(s("c1"), s("gold"), 1).unwrap();
    c.pipe_input_at(s("c2"), s("silver"), 2).unwrap();
    o.pipe_input_at(s("o1"), s("c1:tea"), 3).unwrap();
    o.pipe_input_at(s("o2"), s("c2:cake"), 4).unwrap();
    c.pipe_input_at(s("c1"), s("bronze"), 5).unwrap();
    o.pipe_input_at(s("o3"), s("c1:pie"), 6).unwrap();
    let out = driver.output_topic("vip-orders", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("c1"), Some(s("c1:tea@GOLD")), 3)]
    );
}

#[test]
fn stream_table_join_against_a_table_table_join_reads_both_stores() {
    let builder = StreamsBuilder::new();
    let regions = string_table(&builder, "regions", "regions-store");
    let plans = string_table(&builder, "plans", "plans-store");
    let profiles = regions.join(&plans, |region, plan| format!("{plan}/{region}"));
    strings(&builder, "clicks")
        .join(&profiles, |page, profile| format!("{page} by {profile}"))
        .to("enriched", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let r = driver.input_topic("regions", StringCodec, StringCodec);
    let p = driver.input_topic("plans", StringCodec, StringCodec);
    let c = driver.input_topic("clicks", StringCodec, StringCodec);
    r.pipe_input_at(s("u1"), s("eu"), 1).unwrap();
    c.pipe_input_at(s("u1"), s("/a"), 2).unwrap();
    p.pipe_input_at(s("u1"), s("pro"), 3).unwrap();
    c.pipe_input_at(s("u1"), s("/b"), 4).unwrap();
    r.pipe_tombstone_at(s("u1"), 5).unwrap();
    c.pipe_input_at(s("u1"), s("/c"), 6).unwrap();
    let out = driver.output_topic("enriched", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("u1"), Some(s("/b by pro/eu")), 4)]
    );
}

// ---------------------------------------------------------------------------------------------
// Processor API
// ---------------------------------------------------------------------------------------------

/// Counts records per key in store `tally` and forwards where each record came from.
struct Tally {
    store: Option<KeyValueStore<String, i64>>,
}

impl Processor<String, String, String, String> for Tally {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> tidelog::Result<()> {
        self.store = Some(ctx.key_value_store("tally")?);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        record: StreamRecord<String, String>,
    ) -> tidelog::Result<()> {
        let store = self.store.as_ref().unwrap();
        let count = store.get(&record.key)?.unwrap_or(0) + 1;
        store.put(&record.key, &count)?;
        let meta = ctx.record_metadata().unwrap();
        let value = format!(
            "{}#{count} {}/{}/{} task {} app {}",
            record.value,
            meta.topic,
            meta.partition,
            meta.offset,
            ctx.task_id(),
            ctx.application_id()
        );
        ctx.forward(record.with_value(value))
    }
}

#[test]
fn processor_with_a_store_sees_record_metadata() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("tally", StringCodec, LongCodec));
    builder
        .stream_from(&["a", "b"], Consumed::with(StringCodec, StringCodec))
        .process(|| Tally { store: None }, &["tally"])
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = TopologyTestDriver::with_config(
        builder.build().unwrap(),
        &StreamsConfig::new("tally-app"),
        0,
    )
    .unwrap();
    let a = driver.input_topic("a", StringCodec, StringCodec);
    let b = driver.input_topic("b", StringCodec, StringCodec);
    a.pipe_input_at(s("x"), s("p"), 1).unwrap();
    a.pipe_input_at(s("y"), s("q"), 2).unwrap();
    b.pipe_input_at(s("x"), s("r"), 3).unwrap();
    a.pipe_input_at(s("x"), s("s"), 4).unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    let app = "task 0_0 app tally-app";
    assert_eq!(
        out.read_records().unwrap(),
        vec![
            rec(s("x"), Some(format!("p#1 a/0/0 {app}")), 1),
            rec(s("y"), Some(format!("q#1 a/0/1 {app}")), 2),
            rec(s("x"), Some(format!("r#2 b/0/0 {app}")), 3),
            rec(s("x"), Some(format!("s#3 a/0/2 {app}")), 4),
        ]
    );
    assert_eq!(
        store_contents::<i64>(&driver, "tally"),
        vec![(s("x"), 3), (s("y"), 1)]
    );
    let changelog = driver.output_topic("tally-app-tally-changelog", StringCodec, LongCodec);
    assert_eq!(
        changelog
            .read_records()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value.unwrap()))
            .collect::<Vec<_>>(),
        vec![(s("x"), 1), (s("y"), 1), (s("x"), 2), (s("x"), 3)]
    );
}

/// Schedules one punctuation; forwards `(kind, time the context reports)` at each firing and
/// cancels it on a record whose value is `"cancel"`.
struct Ticker {
    interval: Duration,
    kind: PunctuationType,
    handle: Option<Cancellable>,
}

impl Ticker {
    fn new(interval: Duration, kind: PunctuationType) -> Self {
        Ticker {
            interval,
            kind,
            handle: None,
        }
    }
}

impl Processor<String, String, String, i64> for Ticker {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> tidelog::Result<()> {
        self.handle = Some(ctx.schedule(self.interval, self.kind)?);
        Ok(())
    }

    fn process(
        &mut self,
        _ctx: &mut ProcessorContext<'_, String, i64>,
        record: StreamRecord<String, String>,
    ) -> tidelog::Result<()> {
        if record.value == "cancel" {
            self.handle.as_ref().unwrap().cancel();
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        kind: PunctuationType,
        timestamp: i64,
    ) -> tidelog::Result<()> {
        // A punctuation is not a record.
        assert!(ctx.record_metadata().is_none());
        let (name, now) = match kind {
            PunctuationType::StreamTime => ("stream-time", ctx.stream_time()),
            PunctuationType::WallClockTime => ("wall-clock", ctx.wall_clock_time()),
        };
        ctx.forward(StreamRecord::new(s(name), now, timestamp))
    }
}

fn ticker_driver(kind: PunctuationType, interval: Duration, wall_clock: i64) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .process(move || Ticker::new(interval, kind), &[])
        .to("ticks", Produced::with(StringCodec, LongCodec));
    TopologyTestDriver::with_config(
        builder.build().unwrap(),
        &StreamsConfig::new("ticker"),
        wall_clock,
    )
    .unwrap()
}

#[test]
fn stream_time_punctuation_fires_at_the_first_record_then_each_interval_at_most_once_per_record() {
    let driver = ticker_driver(PunctuationType::StreamTime, Duration::from_secs(10), 0);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let ticks = driver.output_topic("ticks", StringCodec, LongCodec);
    // No records, no stream time: wall-clock time does not move it.
    driver
        .advance_wall_clock_time(Duration::from_secs(3600))
        .unwrap();
    assert!(ticks.is_empty());
    // Fires at 1 000 (first record), then is due at 11 000, 21 000, ...; out-of-order records
    // do not move stream time back; a jump over several intervals fires once.
    for ts in [1_000, 5_000, 12_000, 8_000, 21_000, 65_000, 70_999, 71_000] {
        input.pipe_input_at(s("k"), s("v"), ts).unwrap();
    }
    let fired: Vec<_> = ticks.read_records().unwrap();
    let expected: Vec<_> = [1_000, 12_000, 21_000, 65_000, 71_000]
        .into_iter()
        .map(|t| rec(s("stream-time"), Some(t), t))
        .collect();
    assert_eq!(fired, expected);
    // Cancelled while processing a record: that record does not fire it, nor any after.
    input.pipe_input_at(s("k"), s("cancel"), 90_000).unwrap();
    input.pipe_input_at(s("k"), s("v"), 200_000).unwrap();
    assert!(ticks.is_empty());
}

#[test]
fn wall_clock_punctuation_fires_when_the_driver_clock_advances_until_cancelled() {
    let start = 1_000_000;
    let driver = ticker_driver(
        PunctuationType::WallClockTime,
        Duration::from_secs(60),
        start,
    );
    let input = driver.input_topic("in", StringCodec, StringCodec);
    let ticks = driver.output_topic("ticks", StringCodec, LongCodec);
    // Records, even far in event time, do not fire wall-clock punctuations.
    input.pipe_input_at(s("k"), s("v"), 10_000_000).unwrap();
    driver
        .advance_wall_clock_time(Duration::from_secs(30))
        .unwrap();
    assert!(ticks.is_empty());
    driver
        .advance_wall_clock_time(Duration::from_secs(30))
        .unwrap();
    // Five minutes at once: fires once.
    driver
        .advance_wall_clock_time(Duration::from_secs(300))
        .unwrap();
    driver
        .advance_wall_clock_time(Duration::from_secs(59))
        .unwrap();
    driver
        .advance_wall_clock_time(Duration::from_secs(1))
        .unwrap();
    assert_eq!(driver.wall_clock_time(), start + 420_000);
    let expected: Vec<_> = [start + 60_000, start + 360_000, start + 420_000]
        .into_iter()
        .map(|t| rec(s("wall-clock"), Some(t), t))
        .collect();
    assert_eq!(ticks.read_records().unwrap(), expected);
    // A record without a timestamp is stamped with the driver's clock.
    input.pipe_input(s("k"), s("cancel")).unwrap();
    driver
        .advance_wall_clock_time(Duration::from_secs(600))
        .unwrap();
    assert!(ticks.is_empty());
}

#[test]
fn processor_cannot_forward_from_init_or_schedule_outside_it() {
    struct Eager;
    impl Processor<String, String, String, String> for Eager {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> tidelog::Result<()> {
            let err = ctx
                .forward(StreamRecord::new(s("k"), s("v"), 0))
                .unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)));
            Ok(())
        }
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            record: StreamRecord<String, String>,
        ) -> tidelog::Result<()> {
            let late = ctx.schedule(Duration::from_secs(1), PunctuationType::StreamTime);
            let value = match late {
                Err(Error::InvalidArgument(_)) => s("refused"),
                _ => s("accepted"),
            };
            ctx.forward(record.with_value(value))
        }
    }
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .process(|| Eager, &[])
        .to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    driver
        .input_topic("in", StringCodec, StringCodec)
        .pipe_input_at(s("k"), s("v"), 1)
        .unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("k"), Some(s("refused")), 1)]
    );
}

// ---------------------------------------------------------------------------------------------
// Undecodable records
// ---------------------------------------------------------------------------------------------

fn passthrough_longs() -> Topology {
    let builder = StreamsBuilder::new();
    longs(&builder, "in").to("out", Produced::with(StringCodec, LongCodec));
    builder.build().unwrap()
}

#[test]
fn undecodable_records_are_skipped_and_counted_when_configured() {
    let config = StreamsConfig::new("skipper").skip_undecodable_records(true);
    let driver = TopologyTestDriver::with_config(passthrough_longs(), &config, 0).unwrap();
    let input = driver.input_topic("in", StringCodec, LongCodec);
    input.pipe_input_at(s("a"), 1, 1).unwrap();
    // A value that is not 8 bytes, then a key that is not UTF-8.
    input
        .pipe_raw(
            Some(Bytes::from_static(b"b")),
            Some(Bytes::from_static(&[1, 2, 3])),
            2,
            Vec::new(),
        )
        .unwrap();
    input
        .pipe_raw(
            Some(Bytes::from_static(&[0xff, 0xfe])),
            Some(Bytes::from_static(&[0; 8])),
            3,
            Vec::new(),
        )
        .unwrap();
    input.pipe_input_at(s("c"), 3, 4).unwrap();
    let metrics = driver.metrics();
    assert_eq!(metrics.skipped_undecodable, 2);
    assert_eq!(metrics.processed, 4);
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(
        out.read_records().unwrap(),
        vec![rec(s("a"), Some(1), 1), rec(s("c"), Some(3), 4)]
    );
}

#[test]
fn undecodable_records_fail_the_pipe_by_default() {
    let driver = TopologyTestDriver::new(passthrough_longs()).unwrap();
    let input = driver.input_topic("in", StringCodec, LongCodec);
    input.pipe_input_at(s("a"), 1, 1).unwrap();
    let err = input
        .pipe_raw(
            Some(Bytes::from_static(b"b")),
            Some(Bytes::from_static(&[1, 2, 3])),
            2,
            Vec::new(),
        )
        .unwrap_err();
    match &err {
        Error::StreamsFailed(message) => assert!(
            message.contains("in-0 at offset 1"),
            "message names the record: {message}"
        ),
        other => panic!("expected StreamsFailed, got {other:?}"),
    }
    assert_eq!(driver.metrics().skipped_undecodable, 0);
    let out = driver.output_topic("out", StringCodec, LongCodec);
    assert_eq!(out.read_records().unwrap(), vec![rec(s("a"), Some(1), 1)]);
}

#[test]
fn piping_into_a_topic_the_topology_does_not_read_is_an_error() {
    let driver = TopologyTestDriver::new(passthrough_longs()).unwrap();
    let err = driver
        .input_topic("elsewhere", StringCodec, LongCodec)
        .pipe_input_at(s("a"), 1, 1)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Topology description and build errors
// ---------------------------------------------------------------------------------------------

#[test]
fn topology_display_names_sub_topologies_nodes_and_topics() {
    let builder = StreamsBuilder::new();
    strings(&builder, "words")
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringCodec, StringCodec).with_name("by-word"),
        )
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let topology = builder.build().unwrap();
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [words])
      --> KSTREAM-KEY-SELECT-0000000001
    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])
      --> by-word-repartition-sink
    Sink: by-word-repartition-sink (topic: by-word-repartition)
   Sub-topology: 1
    Source: by-word-repartition-source (topics: [by-word-repartition])
      --> KSTREAM-COUNT-0000000002
    Processor: KSTREAM-COUNT-0000000002 (stores: [counts])
      --> KSTREAM-SINK-0000000003
    Sink: KSTREAM-SINK-0000000003 (topic: counts-out)
";
    assert_eq!(topology.to_string(), expected);
}

#[test]
fn topology_display_uses_given_node_names() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(StringCodec, StringCodec).with_name("read-in"),
        )
        .filter(|_, v| !v.is_empty())
        .to(
            "out",
            Produced::with(StringCodec, StringCodec).with_name("write-out"),
        );
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: read-in (topics: [in])
      --> KSTREAM-FILTER-0000000000
    Processor: KSTREAM-FILTER-0000000000 (stores: [])
      --> write-out
    Sink: write-out (topic: out)
";
    assert_eq!(builder.build().unwrap().to_string(), expected);
}

fn invalid_topology(builder: StreamsBuilder) -> String {
    match builder.build() {
        Err(Error::InvalidTopology(message)) => message,
        Err(other) => panic!("expected InvalidTopology, got {other:?}"),
        Ok(topology) => panic!("expected InvalidTopology, got a topology:\n{topology}"),
    }
}

#[test]
fn build_refuses_a_store_used_but_not_added() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .process(|| Tally { store: None }, &["tally"])
        .to("out", Produced::with(StringCodec, StringCodec));
    let message = invalid_topology(builder);
    assert!(
        message.contains("`tally`") && message.contains("not added"),
        "{message}"
    );
}

#[test]
fn build_refuses_duplicate_store_names() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value("dup", StringCodec, LongCodec));
    strings(&builder, "in")
        .group_by_key(Grouped::default())
        .count_with(Materialized::named("dup"));
    let message = invalid_topology(builder);
    assert!(
        message.contains("two state stores are named `dup`"),
        "{message}"
    );

    let builder = StreamsBuilder::new();
    let grouped = strings(&builder, "in").group_by_key(Grouped::default());
    grouped.count_with(Materialized::named("same"));
    grouped.reduce_with(|a, _| a, Materialized::named("same"));
    let message = invalid_topology(builder);
    assert!(
        message.contains("two state stores are named `same`"),
        "{message}"
    );
}

#[test]
fn build_refuses_a_repartition_without_codecs_after_a_type_change() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map(|k, v| (v, k))
        .group_by_key(Grouped::default())
        .count();
    let message = invalid_topology(builder);
    assert!(message.contains("needs codecs"), "{message}");
}

#[test]
fn build_refuses_an_aggregation_without_a_value_codec() {
    // map_values forgot the value codec; reduce's store needs one.
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values(|v| v.len() as i64)
        .group_by_key(Grouped::default())
        .reduce_with(|a, b| a + b, Materialized::named("sums"));
    let message = invalid_topology(builder);
    assert!(
        message.contains("store `sums` needs a value codec"),
        "{message}"
    );

    // aggregate's type is new: Materialized must give its codec.
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .group_by_key(Grouped::default())
        .aggregate(|| 0_i64, |_, _, n| n + 1, Materialized::named("agg"));
    let message = invalid_topology(builder);
    assert!(
        message.contains("store `agg` needs a value codec"),
        "{message}"
    );

    // With the codec given, both build.
    let builder = StreamsBuilder::new();
    strings(&builder, "in")
        .map_values(|v| v.len() as i64)
        .group_by_key(Grouped::default())
        .reduce_with(
            |a, b| a + b,
            Materialized::named("sums").with_value_codec(LongCodec),
        );
    assert!(builder.build().is_ok());
}

#[test]
fn build_refuses_an_implicit_join_repartition_without_a_key_codec() {
    let builder = StreamsBuilder::new();
    let customers = string_table(&builder, "customers", "customers-store");
    strings(&builder, "orders")
        .select_key(|_, v| v.clone())
        .join(&customers, |order, customer| {
            format!("{order} for {customer}")
        })
        .to("out", Produced::with(StringCodec, StringCodec));
    let message = invalid_topology(builder);
    assert!(
        message.contains("needs codecs") && message.contains("Repartitioned::with"),
        "{message}"
    );
}

#[test]
fn build_refuses_a_cycle_through_topics() {
    let builder = StreamsBuilder::new();
    strings(&builder, "a").to("b", Produced::with(StringCodec, StringCodec));
    strings(&builder, "b").to("a", Produced::with(StringCodec, StringCodec));
    let message = invalid_topology(builder);
    assert!(message.contains("cycle"), "{message}");
}

#[test]
fn build_refuses_a_topic_read_by_two_unconnected_parts() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in").to("out1", Produced::with(StringCodec, StringCodec));
    strings(&builder, "in").to("out2", Produced::with(StringCodec, StringCodec));
    let message = invalid_topology(builder);
    assert!(message.contains("`in` is read by two"), "{message}");
}

#[test]
fn build_refuses_an_empty_topology() {
    let message = invalid_topology(StreamsBuilder::new());
    assert!(message.contains("no source"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Aggregations against a model
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reduce_max_and_count_match_a_btreemap_model(
        records in prop::collection::vec((0_u8..6, -1_000_i64..1_000), 0..80),
    ) {
        let builder = StreamsBuilder::new();
        let grouped = longs(&builder, "in").group_by_key(Grouped::default());
        grouped
            .reduce_with(|a, b| a.max(b), Materialized::named("max"))
            .to_stream()
            .to("max-out", Produced::with_tombstones(StringCodec, LongCodec));
        grouped
            .count_with(Materialized::named("count"))
            .to_stream()
            .to("count-out", Produced::with_tombstones(StringCodec, LongCodec));
        let driver = driver(builder);
        let input = driver.input_topic("in", StringCodec, LongCodec);

        let mut max = BTreeMap::new();
        let mut count = BTreeMap::new();
        let mut max_updates = Vec::new();
        let mut count_updates = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            let key = format!("k{key}");
            let timestamp = i as i64;
            input.pipe_input_at(key.clone(), *value, timestamp).unwrap();
            let m = max.entry(key.clone()).or_insert(*value);
            *m = (*m).max(*value);
            let c = count.entry(key.clone()).or_insert(0_i64);
            *c += 1;
            max_updates.push(rec(key.clone(), Some(*m), timestamp));
            count_updates.push(rec(key, Some(*c), timestamp));
        }

        let read = |topic: &str| driver.output_topic(topic, StringCodec, LongCodec).read_records().unwrap();
        prop_assert_eq!(read("max-out"), max_updates);
        prop_assert_eq!(read("count-out"), count_updates);
        prop_assert_eq!(store_contents::<i64>(&driver, "max"), max.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(store_contents::<i64>(&driver, "count"), count.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn split_names_branches_and_the_default_takes_the_rest() {
    let builder = StreamsBuilder::new();
    let branches = strings(&builder, "in")
        .split("b-")
        .branch("tea", |_, v| v.contains("tea"))
        .branch("hot", |_, v| v.contains("hot"))
        .default_branch("rest");
    assert_eq!(
        branches.keys().cloned().collect::<Vec<_>>(),
        vec![s("b-hot"), s("b-rest"), s("b-tea")]
    );
    for (name, stream) in &branches {
        stream.to(name, Produced::with(StringCodec, StringCodec));
    }
    let driver = driver(builder);
    let input = driver.input_topic("in", StringCodec, StringCodec);
    for (i, v) in ["hot tea", "hot water", "juice"].iter().enumerate() {
        input.pipe_input_at(format!("k{i}"), s(v), 10).unwrap();
    }
    let read = |topic: &str| {
        driver
            .output_topic(topic, StringCodec, StringCodec)
            .read_key_values()
            .unwrap()
    };
    assert_eq!(read("b-tea"), vec![(s("k0"), s("hot tea"))]);
    assert_eq!(read("b-hot"), vec![(s("k1"), s("hot water"))]);
    assert_eq!(read("b-rest"), vec![(s("k2"), s("juice"))]);

    // Two branches with one name are a build error.
    let builder = StreamsBuilder::new();
    let _ = strings(&builder, "in")
        .split("")
        .branch("x", |_, _| true)
        .branch("x", |_, _| true)
        .no_default_branch();
    assert!(builder.build().is_err());
}

#[test]
fn input_topic_with_auto_advance_stamps_records_with_its_own_time() {
    let builder = StreamsBuilder::new();
    strings(&builder, "in").to("out", Produced::with(StringCodec, StringCodec));
    let driver = driver(builder);
    let input = driver
        .input_topic("in", StringCodec, StringCodec)
        .with_auto_advance(1_000, Duration::from_millis(250));
    input.pipe_input(s("a"), s("1")).unwrap();
    input.pipe_input(s("b"), s("2")).unwrap();
    input.pipe_input_at(s("c"), s("3"), 5).unwrap();
    input.pipe_input(s("d"), s("4")).unwrap();
    let stamps: Vec<i64> = driver
        .output_topic("out", StringCodec, StringCodec)
        .read_records()
        .unwrap()
        .into_iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(stamps, vec![1_000, 1_250, 5, 1_500]);
}
