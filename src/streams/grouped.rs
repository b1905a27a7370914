//! `KGroupedStream`: a stream grouped by key, and its aggregations into tables.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::codec::LongCodec;
use crate::error::Result;
use crate::record::Header;
use crate::streams::builder::Materialized;
use crate::streams::codec::{codec_ref, CodecRef};
use crate::streams::context::TaskContext;
use crate::streams::kstream::{add_node, KStream};
use crate::streams::ktable::{store_getter, KTable};
use crate::streams::node::{Data, Downstream, Node};
use crate::streams::processor::StreamRecord;
use crate::streams::store::kv::KvStore;
use crate::streams::store::{KeyValueStore, StoreBuilder};
use crate::streams::topology::Flush;

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
            move |inst, down: Downstream<K, Option<VA>>| {
                let store = KeyValueStore::from_inner(inst.store::<KvStore<K, VA>>(&store_name)?);
                let node = Arc::new(Mutex::new(CachedAggregate {
                    store,
                    aggregator: Arc::clone(&aggregator),
                    down,
                    cached: HashMap::new(),
                    order: Vec::new(),
                    bytes: 0,
                }));
                inst.flushers
                    .push(Arc::clone(&node) as Arc<Mutex<dyn Flush>>);
                Ok(Box::new(SharedAggregate(node)) as Box<dyn Node<K, V>>)
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

/// An aggregation with Kafka's record cache: each update goes to the store at once, but only
/// the latest update per key since the last flush is forwarded, when the task flushes (every
/// commit; under the test driver, after every record) or when the cache holds more than
/// `cache_max_bytes`. With `cache_max_bytes` 0 every update is forwarded as it happens.
struct CachedAggregate<K, V, VA> {
    store: KeyValueStore<K, VA>,
    aggregator: Aggregator<K, V, VA>,
    down: Downstream<K, Option<VA>>,
    /// Encoded key → index in `order` of the key's pending update.
    cached: HashMap<Bytes, usize>,
    /// Pending updates in first-update order: key, encoded key, latest timestamp and headers.
    order: Vec<(K, Bytes, i64, Vec<Header>)>,
    /// Approximate memory held.
    bytes: usize,
}

/// What one cached key costs beyond its encoded bytes (vector slot, map entry, timestamps).
const CACHE_ENTRY_OVERHEAD: usize = 64;

impl<K: Data, V: Data, VA: Data> Node<K, V> for CachedAggregate<K, V, VA> {
    fn process(&mut self, ctx: &mut TaskContext, r: StreamRecord<K, V>) -> Result<()> {
        let encoded = self.store.encode_key(&r.key)?;
        let aggregator = &self.aggregator;
        let key = &r.key;
        let value = r.value;
        let next = self
            .store
            .update_encoded(encoded.clone(), |current| aggregator(key, value, current))?;
        if ctx.cache_max_bytes == 0 {
            return self.down.forward(
                ctx,
                StreamRecord {
                    key: r.key,
                    value: Some(next),
                    timestamp: r.timestamp,
                    headers: r.headers,
                },
            );
        }
        match self.cached.get(&encoded) {
            Some(&i) => {
                let entry = &mut self.order[i];
                entry.2 = entry.2.max(r.timestamp);
                entry.3 = r.headers;
            }
            None => {
                self.bytes += encoded.len() + CACHE_ENTRY_OVERHEAD;
                self.cached.insert(encoded.clone(), self.order.len());
                self.order.push((r.key, encoded, r.timestamp, r.headers));
            }
        }
        if self.bytes > ctx.cache_max_bytes {
            self.flush(ctx)?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data, VA: Data> Flush for CachedAggregate<K, V, VA> {
    fn flush(&mut self, ctx: &mut TaskContext) -> Result<()> {
        self.cached.clear();
        self.bytes = 0;
        for (key, encoded, timestamp, headers) in std::mem::take(&mut self.order) {
            let value = self.store.get_encoded(&encoded)?;
            self.down.forward(
                ctx,
                StreamRecord {
                    key,
                    value,
                    timestamp,
                    headers,
                },
            )?;
        }
        Ok(())
    }
}

/// The task's handle on a cached aggregation (the flush list holds another).
struct SharedAggregate<K, V, VA>(Arc<Mutex<CachedAggregate<K, V, VA>>>);

impl<K: Data, V: Data, VA: Data> Node<K, V> for SharedAggregate<K, V, VA> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        self.0.lock().process(ctx, record)
    }
}
