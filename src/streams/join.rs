//! Stream-stream joins within a time window (Kafka's `KStream#join(KStream, ..., JoinWindows)`):
//! inner, left and outer.
//!
//! Each side's records are buffered in a window store (with duplicates, changelogged), keyed by
//! record key and timestamp. A record at `t` of the left stream joins the right stream's
//! records of its key with timestamps in `[t - before, t + after]`, and vice versa (a right
//! record at `t` joins left records in `[t - after, t + before]`); each pair is forwarded once,
//! when its second record arrives, with the larger of the two timestamps.
//!
//! Both join nodes use both buffers, so they run in one sub-topology, and the two input topics
//! must be co-partitioned (a side whose keys may have changed is repartitioned first).
//!
//! # Time, grace, late records
//!
//! Stream time is the largest timestamp of either side (the buffers' newest entry). A record is
//! late, dropped and counted in [`TaskMetrics::dropped_late`](crate::TaskMetrics), when its
//! join window has closed: `t + after + grace < stream time` for a left record
//! (`t + before + grace` for a right record). Buffers keep `before + after + grace`.
//!
//! # Left and outer joins
//!
//! A record without a partner is not forwarded at once (a partner may still come): it waits in
//! a third store (`<name>-outer-shared-join-store`) and is forwarded with `None` for the
//! missing side when its window closes, as Kafka has done since 3.1, with its own timestamp.
//! A partner arriving in time takes it out of that store.
//!
//! ```text
//! outer store key: | side (1 B: 0 left, 1 right) | key bytes | timestamp (8 B BE) | seq (4 B BE) |
//! ```

use std::rc::Rc;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::BytesCodec;
use crate::error::Result;
use crate::streams::codec::{codec_ref, Codec, CodecRef};
use crate::streams::context::TaskContext;
use crate::streams::kstream::{add_node, KStream};
use crate::streams::node::{fn_node, Data, Downstream, Node};
use crate::streams::processor::StreamRecord;
use crate::streams::store::window::{WinStore, WindowStoreSpec};
use crate::streams::topology::{GraphBuilder, Instantiator};
use crate::streams::window::JoinWindows;
use crate::streams::windowed::window_store_builder;

/// Options of a stream-stream join (Kafka's `StreamJoined`): codecs of the key and of both
/// sides' values (needed by the buffers' changelogs; taken from the streams when left out) and
/// the name of the join's stores.
pub struct StreamJoined<K, V, V2> {
    keys: Option<CodecRef<K>>,
    values: Option<CodecRef<V>>,
    other_values: Option<CodecRef<V2>>,
    name: Option<String>,
    logged: bool,
}

impl<K, V, V2> Default for StreamJoined<K, V, V2> {
    fn default() -> Self {
        StreamJoined {
            keys: None,
            values: None,
            other_values: None,
            name: None,
            logged: true,
        }
    }
}

impl<K, V, V2> StreamJoined<K, V, V2> {
    /// With these codecs for the key, this stream's values and the other stream's values.
    pub fn with(
        keys: impl Codec<K> + 'static,
        values: impl Codec<V> + 'static,
        other_values: impl Codec<V2> + 'static,
    ) -> Self {
        StreamJoined {
            keys: Some(codec_ref(keys)),
            values: Some(codec_ref(values)),
            other_values: Some(codec_ref(other_values)),
            ..Self::default()
        }
    }

    /// Names the join's stores `<name>-this-join-store`, `<name>-other-join-store` (and
    /// `<name>-outer-shared-join-store` for left and outer joins); their changelogs follow.
    #[must_use]
    pub fn with_store_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// No changelogs: the buffers start empty after a restart.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logged = false;
        self
    }
}

/// Which sides are forwarded without a partner.
#[derive(Clone, Copy)]
struct Outerness {
    left: bool,
    right: bool,
}

/// The joiner of both sides, with `None` for a missing partner.
type Joiner<V, V2, VR> = Arc<dyn Fn(Option<&V>, Option<&V2>) -> Option<VR> + Send + Sync>;

impl<K: Data, V: Data> KStream<K, V> {
    /// Joins this stream with `other` on equal keys within `windows` (Kafka's stream-stream
    /// `join`): for each pair of records whose timestamps are close enough, forwards
    /// `joiner(this value, other value)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidelog::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder, StringCodec,
    ///     TopologyTestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// let views = builder.stream("views", Consumed::with(StringCodec, StringCodec));
    /// let clicks = builder.stream("clicks", Consumed::with(StringCodec, StringCodec));
    /// views
    ///     .join_stream(
    ///         &clicks,
    ///         |view, click| format!("{view}+{click}"),
    ///         JoinWindows::of_time_difference_without_grace(Duration::from_secs(10))?,
    ///         StreamJoined::default(),
    ///     )
    ///     .to("views-with-clicks", Produced::with(StringCodec, StringCodec));
    /// let driver = TopologyTestDriver::new(builder.build()?)?;
    /// let (v, c) = (driver.input_topic("views", StringCodec, StringCodec), driver.input_topic("clicks", StringCodec, StringCodec));
    /// v.pipe_input_at("ad1".to_string(), "view".to_string(), 1_000)?;
    /// c.pipe_input_at("ad1".to_string(), "click".to_string(), 5_000)?;   // within 10 s: joins
    /// c.pipe_input_at("ad1".to_string(), "late-click".to_string(), 20_000)?; // too far apart
    /// let out = driver.output_topic("views-with-clicks", StringCodec, StringCodec);
    /// assert_eq!(out.read_key_values()?, [("ad1".to_string(), "view+click".to_string())]);
    /// # Ok::<(), tidelog::Error>(())
    /// ```
    pub fn join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        stream_joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, V2, VR> = Arc::new(move |l, r| match (l, r) {
            (Some(l), Some(r)) => Some(joiner(l, r)),
            _ => None,
        });
        let unmatched = Outerness {
            left: false,
            right: false,
        };
        self.stream_join(
            other,
            joiner,
            windows,
            stream_joined,
            unmatched,
            "KSTREAM-JOIN",
        )
    }

    /// Left join within `windows` (Kafka's stream-stream `leftJoin`): like
    /// [`join_stream`](Self::join_stream), and a record of this stream that found no partner
    /// by the time its window closes is forwarded as `joiner(value, None)`.
    pub fn left_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        stream_joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, V2, VR> = Arc::new(move |l, r| l.map(|l| joiner(l, r)));
        let unmatched = Outerness {
            left: true,
            right: false,
        };
        self.stream_join(
            other,
            joiner,
            windows,
            stream_joined,
            unmatched,
            "KSTREAM-LEFTJOIN",
        )
    }

    /// Outer join within `windows` (Kafka's stream-stream `outerJoin`): like
    /// [`left_join_stream`](Self::left_join_stream), for records of both streams.
    pub fn outer_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        stream_joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: Joiner<V, V2, VR> = Arc::new(move |l, r| Some(joiner(l, r)));
        let unmatched = Outerness {
            left: true,
            right: true,
        };
        self.stream_join(
            other,
            joiner,
            windows,
            stream_joined,
            unmatched,
            "KSTREAM-OUTERJOIN",
        )
    }

    /// This stream, repartitioned first if its keys may have changed.
    fn partitioned_by_key(&self, keys: &CodecRef<K>, values: &CodecRef<V>) -> Self {
        if self.key_changed {
            self.through_internal(None, None, Some(Arc::clone(keys)), Some(Arc::clone(values)))
        } else {
            self.clone()
        }
    }

    fn stream_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: Joiner<V, V2, VR>,
        windows: JoinWindows,
        stream_joined: StreamJoined<K, V, V2>,
        unmatched: Outerness,
        prefix: &str,
    ) -> KStream<K, VR> {
        let keys = stream_joined
            .keys
            .or_else(|| self.keys.clone())
            .or_else(|| other.keys.clone());
        let values = stream_joined.values.or_else(|| self.values.clone());
        let other_values = stream_joined.other_values.or_else(|| other.values.clone());
        let base = stream_joined
            .name
            .unwrap_or_else(|| self.graph.borrow_mut().name(prefix));
        let (Some(keys), Some(values), Some(other_values)) = (keys, values, other_values) else {
            self.graph.borrow_mut().errors.push(format!(
                "the stream-stream join `{base}` buffers both sides and needs codecs for the key \
                 and both values; the streams no longer know them after a type change: give \
                 them with StreamJoined::with"
            ));
            return KStream::new(Rc::clone(&self.graph), self.node, None, None);
        };
        let this = self.partitioned_by_key(&keys, &values);
        let that = other.partitioned_by_key(&keys, &other_values);
        let with_outer = unmatched.left || unmatched.right;
        let names = {
            let mut g = self.graph.borrow_mut();
            let mut group = g.source_topics_of(this.node);
            group.extend(g.source_topics_of(that.node));
            g.copartition.push(group);
            Arc::new(add_join_stores(
                &mut g,
                &base,
                stream_joined.logged,
                windows,
                with_outer,
                (&keys, &values, &other_values),
            ))
        };
        let stores = names.all();
        let make_state = {
            let names = Arc::clone(&names);
            let (keys, values, other_values) = (keys.clone(), values.clone(), other_values.clone());
            move |inst: &mut Instantiator<'_>,
                  down: Downstream<K, VR>|
                  -> Result<JoinState<K, V, V2, VR>> {
                Ok(JoinState {
                    left: inst.store::<WinStore<K, V>>(&names.this)?,
                    right: inst.store::<WinStore<K, V2>>(&names.other)?,
                    outer_store: match &names.outer {
                        Some(name) => Some(inst.store::<WinStore<Bytes, Bytes>>(name)?),
                        None => None,
                    },
                    keys: Arc::clone(&keys),
                    values: Arc::clone(&values),
                    other_values: Arc::clone(&other_values),
                    windows,
                    unmatched,
                    joiner: Arc::clone(&joiner),
                    down,
                })
            }
        };
        let make_state = Arc::new(make_state);
        let make_left = Arc::clone(&make_state);
        let left = add_node(
            &self.graph,
            vec![this.node],
            &format!("{prefix}THIS"),
            stores.clone(),
            move |inst, down: Downstream<K, VR>| {
                Ok(Box::new(LeftSide(make_left(inst, down)?)) as Box<dyn Node<K, V>>)
            },
        );
        let right = add_node(
            &self.graph,
            vec![that.node],
            &format!("{prefix}OTHER"),
            stores,
            move |inst, down: Downstream<K, VR>| {
                Ok(Box::new(RightSide(make_state(inst, down)?)) as Box<dyn Node<K, V2>>)
            },
        );
        let merge = add_node(
            &self.graph,
            vec![left, right],
            &format!("{prefix}-MERGE"),
            Vec::new(),
            |_, mut down: Downstream<K, VR>| {
                Ok(fn_node(move |ctx, r: StreamRecord<K, VR>| {
                    down.forward(ctx, r)
                }))
            },
        );
        KStream::new(Rc::clone(&self.graph), merge, Some(keys), None)
    }
}

struct StoreNames {
    this: String,
    other: String,
    outer: Option<String>,
}

impl StoreNames {
    fn all(&self) -> Vec<String> {
        let mut all = vec![self.this.clone(), self.other.clone()];
        all.extend(self.outer.clone());
        all
    }
}

/// Adds the join's buffers (and the store of partnerless records when `with_outer`).
fn add_join_stores<K: Data, V: Data, V2: Data>(
    graph: &mut GraphBuilder,
    base: &str,
    logged: bool,
    windows: JoinWindows,
    with_outer: bool,
    (keys, values, other_values): (&CodecRef<K>, &CodecRef<V>, &CodecRef<V2>),
) -> StoreNames {
    let spec = WindowStoreSpec {
        retention_ms: windows
            .before_ms()
            .saturating_add(windows.after_ms())
            .saturating_add(windows.grace_ms()),
        window_size_ms: 0,
        retain_duplicates: true,
        timestamped: false,
    };
    let names = StoreNames {
        this: format!("{base}-this-join-store"),
        other: format!("{base}-other-join-store"),
        outer: with_outer.then(|| format!("{base}-outer-shared-join-store")),
    };
    graph.add_store(window_store_builder(
        names.this.clone(),
        logged,
        spec,
        Arc::clone(keys),
        Arc::clone(values),
    ));
    graph.add_store(window_store_builder(
        names.other.clone(),
        logged,
        spec,
        Arc::clone(keys),
        Arc::clone(other_values),
    ));
    if let Some(outer) = &names.outer {
        graph.add_store(window_store_builder::<Bytes, Bytes>(
            outer.clone(),
            logged,
            spec,
            codec_ref(BytesCodec),
            codec_ref(BytesCodec),
        ));
    }
    names
}

const LEFT: u8 = 0;
const RIGHT: u8 = 1;

fn outer_key(side: u8, key: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 1);
    buf.put_u8(side);
    buf.put_slice(key);
    buf.freeze()
}

/// What one join node of a task holds (each of the two nodes has its own, over shared stores).
struct JoinState<K, V, V2, VR> {
    left: Arc<WinStore<K, V>>,
    right: Arc<WinStore<K, V2>>,
    outer_store: Option<Arc<WinStore<Bytes, Bytes>>>,
    keys: CodecRef<K>,
    values: CodecRef<V>,
    other_values: CodecRef<V2>,
    windows: JoinWindows,
    unmatched: Outerness,
    joiner: Joiner<V, V2, VR>,
    down: Downstream<K, VR>,
}

impl<K: Data, V: Data, V2: Data, VR: Data> JoinState<K, V, V2, VR> {
    /// Stream time including a record at `timestamp`.
    fn stream_time(&self, timestamp: i64) -> i64 {
        let left = self.left.observed().unwrap_or(i64::MIN);
        let right = self.right.observed().unwrap_or(i64::MIN);
        left.max(right).max(timestamp)
    }

    /// Forwards the waiting partnerless records whose window closed by `stream_time`.
    fn emit_unmatched(&mut self, ctx: &mut TaskContext, stream_time: i64) -> Result<()> {
        let Some(store) = self.outer_store.clone() else {
            return Ok(());
        };
        let grace = self.windows.grace_ms();
        // A left record at t closes at t + after + grace < stream time; a right one with before.
        let left_limit = stream_time
            .saturating_sub(self.windows.after_ms())
            .saturating_sub(grace)
            .saturating_sub(1);
        let right_limit = stream_time
            .saturating_sub(self.windows.before_ms())
            .saturating_sub(grace)
            .saturating_sub(1);
        let limit = left_limit.max(right_limit);
        for (key, timestamp, seq, _, value) in store.fetch_all_raw(i64::MIN, limit)? {
            let Some((&side, key_bytes)) = key.split_first() else {
                continue;
            };
            let due = if side == LEFT {
                timestamp <= left_limit
            } else {
                timestamp <= right_limit
            };
            if !due {
                continue;
            }
            store.remove_raw(key.clone(), timestamp, seq);
            let typed_key = self.keys.decode(&key.slice_ref(key_bytes))?;
            let result = if side == LEFT {
                (self.joiner)(Some(&self.values.decode(&value)?), None)
            } else {
                (self.joiner)(None, Some(&self.other_values.decode(&value)?))
            };
            if let Some(result) = result {
                self.down
                    .forward(ctx, StreamRecord::new(typed_key, result, timestamp))?;
            }
        }
        Ok(())
    }
}

/// The left (this) stream's join node.
struct LeftSide<K, V, V2, VR>(JoinState<K, V, V2, VR>);

/// The right (other) stream's join node.
struct RightSide<K, V, V2, VR>(JoinState<K, V, V2, VR>);

impl<K: Data, V: Data, V2: Data, VR: Data> Node<K, V> for LeftSide<K, V, V2, VR> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        let s = &mut self.0;
        let t = record.timestamp;
        let stream_time = s.stream_time(t);
        let (before, after) = (s.windows.before_ms(), s.windows.after_ms());
        if t.saturating_add(after).saturating_add(s.windows.grace_ms()) < stream_time {
            ctx.metrics.dropped_late += 1;
            return Ok(());
        }
        s.emit_unmatched(ctx, stream_time)?;
        let key = s.left.encode_key(&record.key)?;
        let seq = s.left.put_raw(key.clone(), t, &record.value, t)?;
        let partners =
            s.right
                .fetch_raw(&key, t.saturating_sub(before), t.saturating_add(after))?;
        for (time, other_seq, _, other) in &partners {
            if let Some(outer) = &s.outer_store {
                outer.remove_raw(outer_key(RIGHT, &key), *time, *other_seq);
            }
            if let Some(value) = (s.joiner)(Some(&record.value), Some(other)) {
                let mut out = StreamRecord::new(record.key.clone(), value, t.max(*time));
                out.headers.clone_from(&record.headers);
                s.down.forward(ctx, out)?;
            }
        }
        if partners.is_empty() && s.unmatched.left {
            if let Some(outer) = &s.outer_store {
                let value = s.values.encode(&record.value)?;
                outer.put_seq(outer_key(LEFT, &key), t, seq, &value, t)?;
            }
        }
        Ok(())
    }
}

impl<K: Data, V: Data, V2: Data, VR: Data> Node<K, V2> for RightSide<K, V, V2, VR> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V2>) -> Result<()> {
        let s = &mut self.0;
        let t = record.timestamp;
        let stream_time = s.stream_time(t);
        let (before, after) = (s.windows.before_ms(), s.windows.after_ms());
        if t.saturating_add(before)
            .saturating_add(s.windows.grace_ms())
            < stream_time
        {
            ctx.metrics.dropped_late += 1;
            return Ok(());
        }
        s.emit_unmatched(ctx, stream_time)?;
        let key = s.right.encode_key(&record.key)?;
        let seq = s.right.put_raw(key.clone(), t, &record.value, t)?;
        let partners = s
            .left
            .fetch_raw(&key, t.saturating_sub(after), t.saturating_add(before))?;
        for (time, other_seq, _, other) in &partners {
            if let Some(outer) = &s.outer_store {
                outer.remove_raw(outer_key(LEFT, &key), *time, *other_seq);
            }
            if let Some(value) = (s.joiner)(Some(other), Some(&record.value)) {
                let mut out = StreamRecord::new(record.key.clone(), value, t.max(*time));
                out.headers.clone_from(&record.headers);
                s.down.forward(ctx, out)?;
            }
        }
        if partners.is_empty() && s.unmatched.right {
            if let Some(outer) = &s.outer_store {
                let value = s.other_values.encode(&record.value)?;
                outer.put_seq(outer_key(RIGHT, &key), t, seq, &value, t)?;
            }
        }
        Ok(())
    }
}
