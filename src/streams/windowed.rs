//! Windowed aggregations: [`KGroupedStream::windowed_by`] and friends, Kafka's
//! `TimeWindowedKStream` and `SessionWindowedKStream`.
//!
//! Each aggregation keeps its windows in a window store (time and sliding windows) or a
//! session store, changelogged like every store, and returns a
//! `KTable<Windowed<K>, aggregate>` whose updates are `(windowed key, Some(aggregate))`, and
//! `(windowed key, None)` for a session merged into a larger one.
//!
//! # Stream time, grace, late records
//!
//! Each aggregation node tracks its own stream time: the largest timestamp it has seen (as
//! Kafka's `observedStreamTime`). A window is **closed** once stream time passes its end plus
//! the grace period (see the table in [`TimeWindows`](crate::TimeWindows)'s module); records for
//! closed windows are dropped and counted in [`TaskMetrics::dropped_late`](crate::TaskMetrics),
//! once per closed window (as Kafka's `dropped-records`). Records with negative timestamps
//! belong to no window and are ignored.
//!
//! # Emitting final results
//!
//! With [`EmitStrategy::OnWindowClose`] nothing is forwarded on updates; when a record moves
//! stream time so that windows close, those windows' final aggregates are forwarded (ordered by
//! window start, then key; sessions by end) *before* the record is aggregated. A session is
//! final once no record could still extend it: `end + gap + grace < stream time` (Kafka's
//! rule); a session that is final is not merged into a later one, even when Kafka would. The node
//! remembers which close time it emitted up to in memory only: after a restart, windows that
//! closed shortly before and are still in the store may be emitted again (at-least-once).
//!
//! # Sliding windows: how they are computed
//!
//! Kafka derives each new sliding window's aggregate from its neighbours'. This implementation
//! keeps the raw records of the last `diff + grace` milliseconds per key in a second store
//! (`<store>-raw`, changelogged, Kafka's `WindowKeySchema` with sequence numbers) and:
//! 1. updates every existing window that contains the new record incrementally, as Kafka does;
//! 2. computes each window that the record creates (its own left window `[t - diff, t]`, its
//!    right window `[t + 1, t + 1 + diff]` when a later record falls in it, the previous
//!    record's right window) by aggregating the raw records within its bounds, oldest first.
//!
//! The windows that exist are exactly Kafka's: each record's left window, and each record's
//! right window when it holds records; records earlier than `diff` share `[0, diff]`. A new
//! window's aggregate folds its records in timestamp order (ties in arrival order), which may
//! differ from Kafka's for aggregators that depend on order.

use std::rc::Rc;
use std::sync::Arc;

use crate::codec::LongCodec;
use crate::error::Result;
use crate::streams::builder::Materialized;
use crate::streams::codec::{codec_ref, CodecRef};
use crate::streams::context::TaskContext;
use crate::streams::grouped::{Aggregator, KGroupedStream};
use crate::streams::kstream::add_node;
use crate::streams::ktable::{GetterFactory, KTable, ValueGetter};
use crate::streams::node::{Data, Downstream, Node};
use crate::streams::processor::StreamRecord;
use crate::streams::session::SessionWindowedKStream;
use crate::streams::store::window::{WinStore, WindowStoreSpec};
use crate::streams::store::{StoreBuilder, StoreKind};
use crate::streams::window::{
    EmitStrategy, SessionWindows, SharedCodec, SlidingWindows, TimeWindows, Window, Windowed,
    WindowedCodec,
};

impl<K: Data, V: Data> KGroupedStream<K, V> {
    fn regrouped(&self) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.stream.clone(), self.keys.clone(), self.values.clone())
    }

    /// Aggregates in tumbling or hopping time windows (Kafka's `windowedBy(TimeWindows)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidelog::{Consumed, Grouped, Produced, StreamsBuilder, StringCodec, LongCodec,
    ///     TimeWindows, TopologyTestDriver, WindowedCodec};
    ///
    /// let minute = Duration::from_secs(60);
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("clicks", Consumed::with(StringCodec, StringCodec))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_no_grace(minute)?)
    ///     .count()
    ///     .to_stream()
    ///     .to("clicks-per-minute", Produced::with_tombstones(WindowedCodec::new(StringCodec, minute), LongCodec));
    /// let driver = TopologyTestDriver::new(builder.build()?)?;
    /// let clicks = driver.input_topic("clicks", StringCodec, StringCodec);
    /// clicks.pipe_input_at("ann".to_string(), "/".to_string(), 10_000)?;
    /// clicks.pipe_input_at("ann".to_string(), "/a".to_string(), 50_000)?;
    /// clicks.pipe_input_at("ann".to_string(), "/b".to_string(), 70_000)?;
    /// let out = driver.output_topic("clicks-per-minute", WindowedCodec::new(StringCodec, minute), LongCodec);
    /// let counts: Vec<(i64, i64)> = out.read_key_values()?.into_iter().map(|(k, c)| (k.window.start, c)).collect();
    /// assert_eq!(counts, [(0, 1), (0, 2), (60_000, 1)]);
    /// # Ok::<(), tidelog::Error>(())
    /// ```
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self.regrouped(),
            spec: Spec::Time(windows),
            emit: EmitStrategy::default(),
        }
    }

    /// Aggregates in sliding windows (Kafka's `windowedBy(SlidingWindows)`).
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self.regrouped(),
            spec: Spec::Sliding(windows),
            emit: EmitStrategy::default(),
        }
    }

    /// Aggregates in session windows (Kafka's `windowedBy(SessionWindows)`).
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped: self.regrouped(),
            windows,
            emit: EmitStrategy::default(),
        }
    }
}

#[derive(Clone, Copy)]
enum Spec {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

impl Spec {
    fn grace(self) -> i64 {
        match self {
            Spec::Time(w) => w.grace_ms(),
            Spec::Sliding(w) => w.grace_ms(),
        }
    }

    /// The window size as the windowed key reports it (`end = start + size`).
    fn size(self) -> i64 {
        match self {
            Spec::Time(w) => w.size_ms(),
            Spec::Sliding(w) => w.time_difference_ms(),
        }
    }

    /// A window closes when `start + closing_length <= stream time - grace`.
    fn closing_length(self) -> i64 {
        match self {
            Spec::Time(w) => w.size_ms(),
            Spec::Sliding(w) => w.time_difference_ms().saturating_add(1),
        }
    }

    fn retention(self) -> i64 {
        match self {
            Spec::Time(w) => w.size_ms().saturating_add(w.grace_ms()),
            Spec::Sliding(w) => w
                .time_difference_ms()
                .saturating_mul(2)
                .saturating_add(w.grace_ms())
                .saturating_add(1),
        }
    }
}

/// A grouped stream in time windows, ready to aggregate (Kafka's `TimeWindowedKStream`); from
/// [`KGroupedStream::windowed_by`] or [`KGroupedStream::windowed_by_sliding`].
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    spec: Spec,
    emit: EmitStrategy,
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// When results are forwarded (default: on every update).
    #[must_use]
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Counts records per key and window.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`count`](Self::count) into a window store named or configured by `materialized`.
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_into(
            "KSTREAM-WINDOWED-COUNT",
            materialized,
            Some(codec_ref(LongCodec)),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
        )
    }

    /// Combines the values of each key and window with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, V> {
        self.reduce_with(reducer, Materialized::default())
    }

    /// [`reduce`](Self::reduce) into a store named or configured by `materialized`.
    pub fn reduce_with(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        self.aggregate_into(
            "KSTREAM-WINDOWED-REDUCE",
            materialized,
            self.grouped.values.clone(),
            Arc::new(move |_, value, aggregate: Option<V>| match aggregate {
                Some(aggregate) => reducer(aggregate, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key and window: `initializer()` starts a window's aggregate,
    /// `aggregator(key, value, aggregate)` gives the next. `materialized` must give the
    /// aggregate's codec.
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.aggregate_into(
            "KSTREAM-WINDOWED-AGGREGATE",
            materialized,
            None,
            Arc::new(move |key, value, aggregate: Option<VA>| {
                aggregator(key, value, aggregate.unwrap_or_else(&initializer))
            }),
        )
    }

    // Takes `materialized` by value so the public methods can pass theirs on.
    #[allow(clippy::needless_pass_by_value)]
    fn aggregate_into<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_values: Option<CodecRef<VA>>,
        aggregator: Aggregator<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let graph = Rc::clone(&self.grouped.stream.graph);
        let Some((name, keys, values)) =
            self.grouped
                .store_for(prefix, &materialized, default_values)
        else {
            return broken_table(&self.grouped);
        };
        let spec = self.spec;
        let window_spec = WindowStoreSpec {
            retention_ms: spec.retention(),
            window_size_ms: spec.size(),
            retain_duplicates: false,
            timestamped: true,
        };
        graph.borrow_mut().add_store(window_store_builder(
            name.clone(),
            materialized.logged,
            window_spec,
            Arc::clone(&keys),
            Arc::clone(&values),
        ));
        let mut stores = vec![name.clone()];
        let raw_name = format!("{name}-raw");
        if let Spec::Sliding(w) = spec {
            let Some(raw_values) = self.grouped.values.clone() else {
                graph.borrow_mut().errors.push(format!(
                    "the sliding-window aggregation `{name}` keeps its input records and needs \
                     their value codec: give it with Grouped::with"
                ));
                return broken_table(&self.grouped);
            };
            let raw_spec = WindowStoreSpec {
                retention_ms: w.time_difference_ms().saturating_add(w.grace_ms()),
                window_size_ms: 0,
                retain_duplicates: true,
                timestamped: false,
            };
            graph.borrow_mut().add_store(window_store_builder(
                raw_name.clone(),
                materialized.logged,
                raw_spec,
                Arc::clone(&keys),
                raw_values,
            ));
            stores.push(raw_name.clone());
        }
        let emit = self.emit;
        let store_name = name.clone();
        let id = add_node(
            &graph,
            vec![self.grouped.stream.node],
            prefix,
            stores.clone(),
            move |inst, down: Downstream<Windowed<K>, Option<VA>>| {
                let store = inst.store::<WinStore<K, VA>>(&store_name)?;
                let core = WindowCore {
                    store,
                    spec,
                    emit,
                    aggregator: Arc::clone(&aggregator),
                    observed: i64::MIN,
                    emitted_close: None,
                    down,
                };
                Ok(match spec {
                    Spec::Time(windows) => {
                        Box::new(TimeAggregate { core, windows }) as Box<dyn Node<K, V>>
                    }
                    Spec::Sliding(windows) => Box::new(SlidingAggregate {
                        core,
                        windows,
                        raw: inst.store::<WinStore<K, V>>(&raw_name)?,
                    }),
                })
            },
        );
        let key_codec: CodecRef<Windowed<K>> =
            codec_ref(WindowedCodec::with_size_ms(SharedCodec(keys), spec.size()));
        let getter_store = name.clone();
        let getter: GetterFactory<Windowed<K>, VA> = Arc::new(move |inst| {
            let store = inst.store::<WinStore<K, VA>>(&getter_store)?;
            Ok(Box::new(move |key: &Windowed<K>| {
                let bytes = store.encode_key(&key.key)?;
                Ok(store.get_raw(&bytes, key.window.start)?.map(|(_, v)| v))
            }) as Box<dyn ValueGetter<Windowed<K>, VA>>)
        });
        KTable {
            graph,
            node: id,
            keys: Some(key_codec),
            values: Some(values),
            getter: Some(getter),
            stores,
        }
    }
}

pub(crate) fn broken_table<K: Data, V: Data, VA: Data>(
    grouped: &KGroupedStream<K, V>,
) -> KTable<Windowed<K>, VA> {
    KTable {
        graph: Rc::clone(&grouped.stream.graph),
        node: grouped.stream.node,
        keys: None,
        values: None,
        getter: None,
        stores: Vec::new(),
    }
}

/// A window store's builder.
pub(crate) fn window_store_builder<K: Data, V: Data>(
    name: String,
    logged: bool,
    spec: WindowStoreSpec,
    keys: CodecRef<K>,
    values: CodecRef<V>,
) -> StoreBuilder {
    StoreBuilder {
        name,
        kind: StoreKind::Window,
        logged,
        factory: Arc::new(move |name, logged| {
            Arc::new(WinStore::new(
                name,
                logged,
                spec,
                Arc::clone(&keys),
                Arc::clone(&values),
            ))
        }),
    }
}

/// What time and sliding window aggregations share.
struct WindowCore<K, V, VA> {
    store: Arc<WinStore<K, VA>>,
    spec: Spec,
    emit: EmitStrategy,
    aggregator: Aggregator<K, V, VA>,
    /// Largest timestamp seen.
    observed: i64,
    /// Close time up to which final results were emitted.
    emitted_close: Option<i64>,
    down: Downstream<Windowed<K>, Option<VA>>,
}

impl<K: Data, V: Data, VA: Data> WindowCore<K, V, VA> {
    /// Advances stream time to `timestamp`; returns the close time (stream time - grace).
    fn advance(&mut self, ctx: &mut TaskContext, timestamp: i64) -> Result<i64> {
        self.observed = self.observed.max(timestamp);
        let close = self.observed.saturating_sub(self.spec.grace());
        if self.emit == EmitStrategy::OnWindowClose {
            self.emit_final(ctx, close)?;
        }
        Ok(close)
    }

    /// Forwards the windows that closed since the last call.
    fn emit_final(&mut self, ctx: &mut TaskContext, close: i64) -> Result<()> {
        if self.emitted_close.is_some_and(|done| close <= done) {
            return Ok(());
        }
        let length = self.spec.closing_length();
        let from = self.emitted_close.map_or(i64::MIN, |done| {
            done.saturating_sub(length).saturating_add(1)
        });
        let to = close.saturating_sub(length);
        self.emitted_close = Some(close);
        if from > to {
            return Ok(());
        }
        let size = self.spec.size();
        for (key, start, _, timestamp, value) in self.store.fetch_all_raw(from, to)? {
            let key = self.store.decode_key(&key)?;
            let window = Window::new(start, start.saturating_add(size));
            self.down.forward(
                ctx,
                StreamRecord::new(Windowed::new(key, window), Some(value), timestamp),
            )?;
        }
        Ok(())
    }

    /// Aggregates `value` into the window at `start` (which holds `old`), stores and forwards.
    fn update(
        &mut self,
        ctx: &mut TaskContext,
        record: &StreamRecord<K, V>,
        key: &bytes::Bytes,
        start: i64,
        old: Option<(i64, VA)>,
    ) -> Result<()> {
        let (old_ts, old) = match old {
            Some((ts, agg)) => (ts, Some(agg)),
            None => (i64::MIN, None),
        };
        let next = (self.aggregator)(&record.key, record.value.clone(), old);
        let timestamp = old_ts.max(record.timestamp);
        self.put_and_forward(ctx, record, key, start, next, timestamp)
    }

    fn put_and_forward(
        &mut self,
        ctx: &mut TaskContext,
        record: &StreamRecord<K, V>,
        key: &bytes::Bytes,
        start: i64,
        aggregate: VA,
        timestamp: i64,
    ) -> Result<()> {
        self.store
            .put_raw(key.clone(), start, &aggregate, timestamp)?;
        if self.emit == EmitStrategy::OnWindowUpdate {
            let window = Window::new(start, start.saturating_add(self.spec.size()));
            let mut out = StreamRecord::new(
                Windowed::new(record.key.clone(), window),
                Some(aggregate),
                timestamp,
            );
            out.headers.clone_from(&record.headers);
            self.down.forward(ctx, out)?;
        }
        Ok(())
    }
}

/// Tumbling and hopping windows (Kafka's `KStreamWindowAggregate`).
struct TimeAggregate<K, V, VA> {
    core: WindowCore<K, V, VA>,
    windows: TimeWindows,
}

impl<K: Data, V: Data, VA: Data> Node<K, V> for TimeAggregate<K, V, VA> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        if record.timestamp < 0 {
            return Ok(());
        }
        let close = self.core.advance(ctx, record.timestamp)?;
        let key = self.core.store.encode_key(&record.key)?;
        for window in self.windows.windows_for(record.timestamp) {
            if window.end > close {
                let old = self.core.store.get_raw(&key, window.start)?;
                self.core.update(ctx, &record, &key, window.start, old)?;
            } else {
                ctx.metrics.dropped_late += 1;
            }
        }
        Ok(())
    }
}

/// Sliding windows (the module docs say how).
struct SlidingAggregate<K, V, VA> {
    core: WindowCore<K, V, VA>,
    windows: SlidingWindows,
    /// Raw records of the last `diff + grace` ms per key.
    raw: Arc<WinStore<K, V>>,
}

impl<K: Data, V: Data, VA: Data> Node<K, V> for SlidingAggregate<K, V, VA> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        let t = record.timestamp;
        if t < 0 {
            return Ok(());
        }
        let diff = self.windows.time_difference_ms();
        let close = self.core.advance(ctx, t)?;
        if t.saturating_add(diff) < close {
            ctx.metrics.dropped_late += 1;
            return Ok(());
        }
        let key = self.core.store.encode_key(&record.key)?;
        self.raw.put_raw(key.clone(), t, &record.value, t)?;
        let lo = t.saturating_sub(diff).saturating_sub(1);
        let hi = t.saturating_add(diff).saturating_add(1);
        // (timestamp, value), in timestamp then arrival order.
        let records: Vec<(i64, V)> = self
            .raw
            .fetch_raw(&key, lo, hi)?
            .into_iter()
            .map(|(ts, _, _, v)| (ts, v))
            .collect();
        let left_start = |r: i64| if r < diff { 0 } else { r - diff };
        let mut starts = std::collections::BTreeSet::new();
        for &(r, _) in &records {
            if t <= r && r <= t.saturating_add(diff) {
                starts.insert(left_start(r));
            }
            if t.saturating_sub(diff).saturating_sub(1) <= r && r < t {
                starts.insert(r + 1);
            }
        }
        let own_right = t.saturating_add(1);
        let right_end = own_right.saturating_add(diff);
        if records
            .iter()
            .any(|&(r, _)| own_right <= r && r <= right_end)
        {
            starts.insert(own_right);
        }
        for start in starts {
            let end = start.saturating_add(diff);
            if end < close {
                ctx.metrics.dropped_late += 1;
                continue;
            }
            let contains = start <= t && t <= end;
            match self.core.store.get_raw(&key, start)? {
                Some(old) if contains => self.core.update(ctx, &record, &key, start, Some(old))?,
                Some(_) => {}
                None => {
                    let mut aggregate = None;
                    let mut timestamp = i64::MIN;
                    for (r, value) in records.iter().filter(|(r, _)| start <= *r && *r <= end) {
                        aggregate = Some((self.core.aggregator)(
                            &record.key,
                            value.clone(),
                            aggregate,
                        ));
                        timestamp = timestamp.max(*r);
                    }
                    if let Some(aggregate) = aggregate {
                        self.core
                            .put_and_forward(ctx, &record, &key, start, aggregate, timestamp)?;
                    }
                }
            }
        }
        Ok(())
    }
}
