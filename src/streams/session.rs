//! Session-windowed aggregations: [`KGroupedStream::windowed_by_session`]'s
//! `SessionWindowedKStream` (Kafka's), and the node that merges sessions. Stream time, grace,
//! late records and emit-final work as the windowed module describes.

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
use crate::streams::store::session::SessStore;
use crate::streams::store::{StoreBuilder, StoreKind};
use crate::streams::window::{
    EmitStrategy, SessionWindowedCodec, SessionWindows, SharedCodec, Window, Windowed,
};
use crate::streams::windowed::broken_table;

/// Merges two session aggregates when a record joins their sessions: `(key, aggregate so far
/// or None, next session's aggregate)`.
type Merger<K, VA> = Arc<dyn Fn(&K, Option<VA>, VA) -> VA + Send + Sync>;

/// A grouped stream in session windows, ready to aggregate (Kafka's
/// `SessionWindowedKStream`); from [`KGroupedStream::windowed_by_session`].
///
/// ```
/// use std::time::Duration;
/// use tidelog::{Consumed, Grouped, Produced, SessionWindows, SessionWindowedCodec,
///     StreamsBuilder, StringCodec, LongCodec, TopologyTestDriver, Window};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("clicks", Consumed::with(StringCodec, StringCodec))
///     .group_by_key(Grouped::default())
///     .windowed_by_session(SessionWindows::of_inactivity_gap_with_grace(
///         Duration::from_millis(10),
///         Duration::from_millis(20),
///     )?)
///     .count()
///     .to_stream()
///     .to("sessions", Produced::with_tombstones(SessionWindowedCodec::new(StringCodec), LongCodec));
/// let driver = TopologyTestDriver::new(builder.build()?)?;
/// let clicks = driver.input_topic("clicks", StringCodec, StringCodec);
/// for t in [0, 5, 25, 15] {
///     clicks.pipe_input_at("ann".to_string(), "x".to_string(), t)?;
/// }
/// let out = driver.output_topic("sessions", SessionWindowedCodec::new(StringCodec), LongCodec);
/// let updates: Vec<(Window, Option<i64>)> =
///     out.read_records()?.into_iter().map(|r| (r.key.window, r.value)).collect();
/// assert_eq!(updates, [
///     (Window::new(0, 0), Some(1)),
///     (Window::new(0, 0), None), (Window::new(0, 5), Some(2)),
///     (Window::new(25, 25), Some(1)),
///     // 15 is within 10 ms of both sessions: they merge.
///     (Window::new(0, 5), None), (Window::new(25, 25), None), (Window::new(0, 25), Some(4)),
/// ]);
/// # Ok::<(), tidelog::Error>(())
/// ```
pub struct SessionWindowedKStream<K, V> {
    pub(crate) grouped: KGroupedStream<K, V>,
    pub(crate) windows: SessionWindows,
    pub(crate) emit: EmitStrategy,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// When results are forwarded (default: on every update).
    #[must_use]
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Counts records per key and session.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`count`](Self::count) into a session store named or configured by `materialized`.
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_into(
            "KSTREAM-SESSION-COUNT",
            materialized,
            Some(codec_ref(LongCodec)),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
            Arc::new(|_, a: Option<i64>, b| a.unwrap_or(0) + b),
        )
    }

    /// Combines the values of each key and session with `reducer(aggregate, value)`; merged
    /// sessions' aggregates are combined with it too.
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
        let reducer = Arc::new(reducer);
        let merge = Arc::clone(&reducer);
        self.aggregate_into(
            "KSTREAM-SESSION-REDUCE",
            materialized,
            self.grouped.values.clone(),
            Arc::new(move |_, value, aggregate: Option<V>| match aggregate {
                Some(aggregate) => reducer(aggregate, value),
                None => value,
            }),
            Arc::new(move |_, a: Option<V>, b| match a {
                Some(a) => merge(a, b),
                None => b,
            }),
        )
    }

    /// Folds the values of each key and session: `initializer()` starts a session,
    /// `aggregator(key, value, aggregate)` adds a record, and `merger(key, a, b)` combines two
    /// sessions that a record joins (Kafka's `aggregate(initializer, aggregator, merger)`).
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let initializer = Arc::new(initializer);
        let init = Arc::clone(&initializer);
        self.aggregate_into(
            "KSTREAM-SESSION-AGGREGATE",
            materialized,
            None,
            Arc::new(move |key, value, aggregate: Option<VA>| {
                aggregator(key, value, aggregate.unwrap_or_else(|| initializer()))
            }),
            Arc::new(move |key, a: Option<VA>, b| merger(key, a.unwrap_or_else(|| init()), b)),
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
        merger: Merger<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let graph = Rc::clone(&self.grouped.stream.graph);
        let Some((name, keys, values)) =
            self.grouped
                .store_for(prefix, &materialized, default_values)
        else {
            return broken_table(&self.grouped);
        };
        let windows = self.windows;
        let retention = windows
            .inactivity_gap_ms()
            .saturating_add(windows.grace_ms());
        let (store_keys, store_values) = (Arc::clone(&keys), Arc::clone(&values));
        graph.borrow_mut().add_store(StoreBuilder {
            name: name.clone(),
            kind: StoreKind::Session,
            logged: materialized.logged,
            factory: Arc::new(move |name, logged| {
                Arc::new(SessStore::new(
                    name,
                    logged,
                    retention,
                    Arc::clone(&store_keys),
                    Arc::clone(&store_values),
                ))
            }),
        });
        let emit = self.emit;
        let store_name = name.clone();
        let id = add_node(
            &graph,
            vec![self.grouped.stream.node],
            prefix,
            vec![name.clone()],
            move |inst, down: Downstream<Windowed<K>, Option<VA>>| {
                Ok(Box::new(SessionAggregate {
                    store: inst.store::<SessStore<K, VA>>(&store_name)?,
                    windows,
                    emit,
                    aggregator: Arc::clone(&aggregator),
                    merger: Arc::clone(&merger),
                    observed: i64::MIN,
                    emitted_close: None,
                    down,
                }) as Box<dyn Node<K, V>>)
            },
        );
        let getter_store = name.clone();
        let getter: GetterFactory<Windowed<K>, VA> = Arc::new(move |inst| {
            let store = inst.store::<SessStore<K, VA>>(&getter_store)?;
            Ok(Box::new(move |key: &Windowed<K>| {
                let bytes = store.encode_key(&key.key)?;
                store.get_raw(bytes, key.window)
            }) as Box<dyn ValueGetter<Windowed<K>, VA>>)
        });
        KTable {
            graph,
            node: id,
            keys: Some(codec_ref(SessionWindowedCodec::new(SharedCodec(keys)))),
            values: Some(values),
            getter: Some(getter),
            stores: vec![name],
        }
    }
}

/// Session windows (Kafka's `KStreamSessionWindowAggregate`).
struct SessionAggregate<K, V, VA> {
    store: Arc<SessStore<K, VA>>,
    windows: SessionWindows,
    emit: EmitStrategy,
    aggregator: Aggregator<K, V, VA>,
    merger: Merger<K, VA>,
    observed: i64,
    emitted_close: Option<i64>,
    down: Downstream<Windowed<K>, Option<VA>>,
}

impl<K: Data, V: Data, VA: Data> SessionAggregate<K, V, VA> {
    /// Forwards the sessions that became final since the last call: those no accepted record
    /// can reach any more, `end < close - gap`.
    fn emit_final(&mut self, ctx: &mut TaskContext, close: i64) -> Result<()> {
        let close = close.saturating_sub(self.windows.inactivity_gap_ms());
        if self.emitted_close.is_some_and(|done| close <= done) {
            return Ok(());
        }
        let from = self.emitted_close.unwrap_or(i64::MIN);
        self.emitted_close = Some(close);
        let to = close.saturating_sub(1);
        for (key, window, value) in self.store.by_end_raw(from, to)? {
            let key = self.store.decode_key(&key)?;
            self.down.forward(
                ctx,
                StreamRecord::new(Windowed::new(key, window), Some(value), window.end),
            )?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data, VA: Data> Node<K, V> for SessionAggregate<K, V, VA> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        let t = record.timestamp;
        if t < 0 {
            return Ok(());
        }
        self.observed = self.observed.max(t);
        let close = self.observed.saturating_sub(self.windows.grace_ms());
        if self.emit == EmitStrategy::OnWindowClose {
            self.emit_final(ctx, close)?;
        }
        let gap = self.windows.inactivity_gap_ms();
        let key = self.store.encode_key(&record.key)?;
        // Final sessions (their result may have been emitted) are never merged.
        let final_before = close.saturating_sub(gap);
        let found: Vec<_> = self
            .store
            .find_raw(&key, t.saturating_sub(gap), t.saturating_add(gap))?
            .into_iter()
            .filter(|(_, w, _)| w.end >= final_before)
            .collect();
        let mut merged = Window::new(t, t);
        let mut aggregate = None;
        for (_, window, value) in &found {
            aggregate = Some((self.merger)(&record.key, aggregate, value.clone()));
            merged = Window::new(merged.start.min(window.start), merged.end.max(window.end));
        }
        if merged.end < close {
            ctx.metrics.dropped_late += 1;
            return Ok(());
        }
        for (_, window, _) in &found {
            if *window == merged {
                continue;
            }
            self.store.remove_raw(key.clone(), *window);
            if self.emit == EmitStrategy::OnWindowUpdate {
                let mut out =
                    StreamRecord::new(Windowed::new(record.key.clone(), *window), None, window.end);
                out.headers.clone_from(&record.headers);
                self.down.forward(ctx, out)?;
            }
        }
        let next = (self.aggregator)(&record.key, record.value, aggregate);
        self.store.put_raw(key, merged, &next)?;
        if self.emit == EmitStrategy::OnWindowUpdate {
            let mut out =
                StreamRecord::new(Windowed::new(record.key, merged), Some(next), merged.end);
            out.headers = record.headers;
            self.down.forward(ctx, out)?;
        }
        Ok(())
    }
}
