//! Stream-stream joins within a window, through the public API and the test driver: inner,
//! left and outer joins, asymmetric windows, grace and late records, repartitioning, and the
//! join's buffers.

use std::time::Duration;

use tidelog::{
    Consumed, JoinWindows, KStream, Produced, StreamJoined, StreamsBuilder, StringCodec,
    TestInputTopic, TopologyTestDriver,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn s(x: &str) -> String {
    x.to_string()
}

struct Setup {
    driver: TopologyTestDriver,
    left: TestInputTopic<String, String>,
    right: TestInputTopic<String, String>,
}

impl Setup {
    fn new(
        build: impl FnOnce(
            &KStream<String, String>,
            &KStream<String, String>,
        ) -> KStream<String, String>,
    ) -> Setup {
        let builder = StreamsBuilder::new();
        let left = builder.stream("left", Consumed::with(StringCodec, StringCodec));
        let right = builder.stream("right", Consumed::with(StringCodec, StringCodec));
        build(&left, &right).to("out", Produced::with(StringCodec, StringCodec));
        let topology = builder.build().unwrap();
        assert_eq!(
            topology.subtopology_count(),
            1,
            "both join nodes in one sub-topology"
        );
        let driver = TopologyTestDriver::new(topology).unwrap();
        let left = driver.input_topic("left", StringCodec, StringCodec);
        let right = driver.input_topic("right", StringCodec, StringCodec);
        Setup {
            driver,
            left,
            right,
        }
    }

    fn l(&self, key: &str, value: &str, t: i64) {
        self.left.pipe_input_at(s(key), s(value), t).unwrap();
    }

    fn r(&self, key: &str, value: &str, t: i64) {
        self.right.pipe_input_at(s(key), s(value), t).unwrap();
    }

    /// (key, value, timestamp) written since the last call.
    fn out(&self) -> Vec<(String, String, i64)> {
        self.driver
            .output_topic("out", StringCodec, StringCodec)
            .read_records()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value.unwrap(), r.timestamp))
            .collect()
    }
}

#[test]
fn inner_join_inside_and_outside_the_window() {
    let t = Setup::new(|l, r| {
        l.join_stream(
            r,
            |a, b| format!("{a}+{b}"),
            JoinWindows::of_time_difference_with_grace(secs(10), secs(60)).unwrap(),
            StreamJoined::default(),
        )
    });
    t.l("k", "a1", 1_000);
    assert_eq!(t.out(), []);
    t.r("k", "b1", 5_000);
    assert_eq!(t.out(), [(s("k"), s("a1+b1"), 5_000)]);
    t.r("k", "b2", 20_000); // 19 s after a1: outside the window
    t.r("x", "b3", 5_000); // another key
    assert_eq!(t.out(), []);
    t.l("k", "a2", 15_000); // within 10 s of b1 (5 s) and of b2 (20 s)
    assert_eq!(
        t.out(),
        [(s("k"), s("a2+b1"), 15_000), (s("k"), s("a2+b2"), 20_000)]
    );
    // Duplicates at one timestamp are all kept and joined (b1 at 5 s is too far from 20 s).
    t.l("k", "a3", 20_000);
    t.l("k", "a4", 20_000);
    t.r("k", "b4", 21_000);
    assert_eq!(
        t.out(),
        [
            (s("k"), s("a3+b2"), 20_000),
            (s("k"), s("a4+b2"), 20_000),
            (s("k"), s("a2+b4"), 21_000),
            (s("k"), s("a3+b4"), 21_000),
            (s("k"), s("a4+b4"), 21_000),
        ]
    );
    assert_eq!(t.driver.metrics().dropped_late, 0);
}

#[test]
fn asymmetric_windows() {
    // A right record may be up to 1 s before and 5 s after a left record.
    let t = Setup::new(|l, r| {
        l.join_stream(
            r,
            |a, b| format!("{a}+{b}"),
            JoinWindows::of_time_difference_with_grace(secs(1), secs(60))
                .unwrap()
                .after(secs(5))
                .unwrap(),
            StreamJoined::default(),
        )
    });
    t.l("k", "a", 10_000);
    t.r("k", "before-2s", 8_000);
    t.r("k", "before-1s", 9_000);
    t.r("k", "after-5s", 15_000);
    t.r("k", "after-6s", 16_000);
    let joined: Vec<String> = t.out().into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(joined, ["a+before-1s", "a+after-5s"]);
    // A left record at 11 s joins the right records in [10 s, 16 s].
    t.l("k", "a2", 11_000);
    let joined: Vec<String> = t.out().into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(joined, ["a2+after-5s", "a2+after-6s"]);
}

#[test]
fn late_records_are_dropped_and_counted() {
    let t = Setup::new(|l, r| {
        l.join_stream(
            r,
            |a, b| format!("{a}+{b}"),
            JoinWindows::of_time_difference_with_grace(secs(10), secs(5)).unwrap(),
            StreamJoined::default(),
        )
    });
    t.r("k", "b1", 10_000);
    t.l("k", "a-late-ok", 30_000); // stream time 30 s
    assert_eq!(t.out(), []);
    // A left record at 15 s: its window ends at 25 s, plus 5 s grace: still accepted at 30 s.
    t.l("k", "a15", 15_000);
    assert_eq!(t.out(), [(s("k"), s("a15+b1"), 15_000)]);
    // At 14 s it is late: 14 + 10 + 5 < 30.
    t.l("k", "a14", 14_000);
    t.r("k", "b-late", 10_000);
    assert_eq!(t.out(), []);
    assert_eq!(t.driver.metrics().dropped_late, 2);
}

#[test]
fn left_join_emits_unmatched_records_when_their_window_closes() {
    let t = Setup::new(|l, r| {
        l.left_join_stream(
            r,
            |a, b| format!("{a}+{}", b.map_or("null", String::as_str)),
            JoinWindows::of_time_difference_without_grace(secs(10)).unwrap(),
            StreamJoined::with(StringCodec, StringCodec, StringCodec).with_store_name("lj"),
        )
    });
    t.l("k", "matched", 0);
    t.l("u", "unmatched", 1_000);
    t.r("k", "b", 3_000);
    assert_eq!(t.out(), [(s("k"), s("matched+b"), 3_000)]);
    t.r("z", "other", 11_000); // stream time 11 s: the window of `unmatched` (to 11 s) is open
    assert_eq!(t.out(), []);
    t.r("z", "other", 11_001); // 1 + 10 + 0 < 11.001: closed
    assert_eq!(t.out(), [(s("u"), s("unmatched+null"), 1_000)]);
    // A right record alone is never forwarded by a left join.
    t.r("z", "more", 40_000);
    assert_eq!(t.out(), []);
    // The join's stores are named after the StreamJoined name.
    assert!(t
        .driver
        .window_store::<String, String>("lj-this-join-store")
        .is_ok());
    let buffered = t
        .driver
        .window_store::<String, String>("lj-other-join-store")
        .unwrap()
        .fetch(&s("z"), 0, 50_000)
        .unwrap();
    // Buffers keep before + after + grace = 20 s behind the newest record (40 s): the z
    // records at 11 s are gone.
    assert_eq!(buffered, [(40_000, s("more"))]);
}

#[test]
fn outer_join_emits_both_sides_unmatched() {
    let t = Setup::new(|l, r| {
        l.outer_join_stream(
            r,
            |a, b| {
                format!(
                    "{}+{}",
                    a.map_or("null", String::as_str),
                    b.map_or("null", String::as_str)
                )
            },
            JoinWindows::of_time_difference_with_grace(secs(5), secs(1)).unwrap(),
            StreamJoined::default(),
        )
    });
    t.l("a", "L", 0);
    t.r("b", "R", 2_000);
    t.l("c", "L2", 3_000);
    t.r("c", "R2", 4_000);
    assert_eq!(t.out(), [(s("c"), s("L2+R2"), 4_000)]);
    // Stream time 20 s closes everything before 14 s: both partnerless records come out, in
    // timestamp order; the matched ones do not.
    t.l("d", "tick", 20_000);
    assert_eq!(
        t.out(),
        [(s("a"), s("L+null"), 0), (s("b"), s("null+R"), 2_000)]
    );
}

#[test]
fn join_after_a_key_change_repartitions() {
    let builder = StreamsBuilder::new();
    let left = builder
        .stream("left", Consumed::with(StringCodec, StringCodec))
        .select_key(|_, v| v.clone());
    let right = builder.stream("right", Consumed::with(StringCodec, StringCodec));
    left.join_stream(
        &right,
        |a, b| format!("{a}/{b}"),
        JoinWindows::of_time_difference_without_grace(secs(1)).unwrap(),
        StreamJoined::with(StringCodec, StringCodec, StringCodec),
    )
    .to("out", Produced::with(StringCodec, StringCodec));
    let topology = builder.build().unwrap();
    assert_eq!(
        topology.subtopology_count(),
        2,
        "the left side goes through a topic"
    );
    let driver = TopologyTestDriver::new(topology).unwrap();
    driver
        .input_topic("left", StringCodec, StringCodec)
        .pipe_input_at(s("old-key"), s("new"), 100)
        .unwrap();
    driver
        .input_topic("right", StringCodec, StringCodec)
        .pipe_input_at(s("new"), s("r"), 200)
        .unwrap();
    let out = driver.output_topic("out", StringCodec, StringCodec);
    assert_eq!(out.read_key_values().unwrap(), [(s("new"), s("new/r"))]);
}

#[test]
fn a_join_after_a_type_change_needs_codecs() {
    let builder = StreamsBuilder::new();
    let left = builder
        .stream("left", Consumed::with(StringCodec, StringCodec))
        .map_values(|v| v.len());
    let right = builder.stream("right", Consumed::with(StringCodec, StringCodec));
    let _ = left.join_stream(
        &right,
        |a, b| format!("{a}{b}"),
        JoinWindows::of_time_difference_without_grace(secs(1)).unwrap(),
        StreamJoined::default(),
    );
    let err = builder.build().unwrap_err();
    assert!(err.to_string().contains("StreamJoined::with"), "{err}");
}
