//! `KGroupedStream`: a stream grouped by key, and its aggregations into tables.

use std::rc::Rc;
use std::sync::Arc;

use crate::codec::LongCodec;
use crate::streams::builder::Materialized;
use crate::streams::codec::{codec_ref, CodecRef};
use crate::streams::kstream::{add_node, KStream};
use crate::streams::ktable::{store_getter, KTable};
use crate::streams::node::{fn_node, Data, Downstream};
use crate::streams::processor::StreamRecord;
use crate::streams::store::kv::KvStore;
use crate::streams::store::{KeyValueStore, StoreBuilder};

/// A stream grouped by key, ready to aggregate (Kafka's `KGroupedStream<K, V>`). Records with
/// the same key are in the same partition (the grouping repartitioned if needed), so each
/// task aggregates its keys alone.
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) keys: Option<CodecRef<K>>,
    pub(crate) values: Option<CodecRef<V>>,
}

/// An aggregation step: the key, the record's value, the current aggregate (`None` for a new
/// key) → the new aggregate.
pub(crate) type Aggregator<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(
        stream: KStream<K, V>,
        keys: Option<CodecRef<K>>,
        values: Option<CodecRef<V>>,
    ) -> Self {
        KGroupedStream {
            stream,
            keys,
            values,
        }
    }

    /// Counts records per key into a table of `i64` (changelog and store values encoded with
    /// [`LongCodec`] unless `Materialized` says otherwise).
    pub fn count(&self) -> KTable<K, i64> {
        self.count_with(Materialized::default())
    }

    /// [`count`](Self::count) into a store named or configured by `materialized`.
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_into(
            "KSTREAM-COUNT",
            materialized,
            Some(codec_ref(LongCodec)),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
        )
    }

    /// Combines the values of each key with `reducer(aggregate, value)`; the first value of a
    /// key is its aggregate as it is.
    pub fn reduce(&self, reducer: impl Fn(V, V) -> V + Send + Sync + 'static) -> KTable<K, V> {
        self.reduce_with(reducer, Materialized::default())
    }

    /// [`reduce`](Self::reduce) into a store named or configured by `materialized`.
    pub fn reduce_with(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        self.aggregate_into(
            "KSTREAM-REDUCE",
            materialized,
            self.values.clone(),
            Arc::new(move |_, value, aggregate: Option<V>| match aggregate {
                Some(aggregate) => reducer(aggregate, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key: `initializer()` starts a key's aggregate, then
    /// `aggregator(key, value, aggregate)` gives the next. `materialized` must give the
    /// aggregate's codec ([`Materialized::with_value_codec`]).
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.aggregate_into(
            "KSTREAM-AGGREGATE",
            materialized,
            None,
            Arc::new(move |key, value, aggregate: Option<VA>| {
                aggregator(key, value, aggregate.unwrap_or_else(&initializer))
            }),
        )
    }

    /// The codecs and store name of an aggregation; `None` after recording the error.
    pub(crate) fn store_for<VA: Data>(
        &self,
        prefix: &str,
        materialized: &Materialized<K, VA>,
        default_values: Option<CodecRef<VA>>,
    ) -> Option<(String, CodecRef<K>, CodecRef<VA>)> {
        let mut g = self.stream.graph.borrow_mut();
        let name = materialized
            .name
            .clone()
            .unwrap_or_else(|| g.name(&format!("{prefix}-STATE-STORE")));
        let keys = materialized.keys.clone().or_else(|| self.keys.clone());
        let values = materialized.values.clone().or(default_values);
        match (keys, values) {
            (Some(keys), Some(values)) => Some((name, keys, values)),
            (None, _) => {
                g.errors.push(format!(
                    "store `{name}` needs a key codec: give one with Grouped::with or \
                     Materialized::with_key_codec"
                ));
                None
            }
            (_, None) => {
                g.errors.push(format!(
                    "store `{name}` needs a value codec: give one with \
                     Materialized::with_value_codec"
                ));
                None
            }
        }
    }

    #[allow(clippy::needless_pass_by_value)] // `Materialized` by value, as the public methods take it
    fn aggregate_into<VA: Data>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_values: Option<CodecRef<VA>>,
        aggregator: Aggregator<K, V, VA>,
    ) -> KTable<K, VA> {
        let graph = Rc::clone(&self.stream.graph);
        let Some((name, keys, values)) = self.store_for(prefix, &materialized, default_values)
        else {
            return KTable {
                graph,
                node: self.stream.node,
                keys: None,
                values: None,
                getter: None,
                stores: Vec::new(),
            };
        };
        let mut store =
            StoreBuilder::key_value_with(name.clone(), Arc::clone(&keys), Arc::clone(&values));
        store.logged = materialized.logged;
        graph.borrow_mut().add_store(store);
        let store_name = name.clone();
        let id = add_node(
            &graph,
            vec![self.stream.node],
            prefix,
            vec![name.clone()],
            move |inst, mut down: Downstream<K, Option<VA>>| {
                let store = KeyValueStore::from_inner(inst.store::<KvStore<K, VA>>(&store_name)?);
                let aggregator = Arc::clone(&aggregator);
                Ok(fn_node(move |ctx, r: StreamRecord<K, V>| {
                    let current = store.get(&r.key)?;
                    let next = aggregator(&r.key, r.value, current);
                    store.put(&r.key, &next)?;
                    down.forward(
                        ctx,
                        StreamRecord {
                            key: r.key,
                            value: Some(next),
                            timestamp: r.timestamp,
                            headers: r.headers,
                        },
                    )
                }))
            },
        );
        KTable {
            graph,
            node: id,
            keys: Some(keys),
            values: Some(values),
            getter: Some(store_getter::<K, VA>(name.clone())),
            stores: vec![name],
        }
    }
}
