//! The DSL's entry point and its option types (Kafka's `StreamsBuilder`, `Consumed`,
//! `Produced`, `Grouped`, `Materialized`).

// Option types (`Consumed`, `Materialized`, ...) are taken by value, as Kafka's DSL takes them;
// some are only read.
#![allow(clippy::needless_pass_by_value)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::streams::codec::{codec_ref, Codec, CodecRef};
use crate::streams::context::TaskContext;
use crate::streams::kstream::KStream;
use crate::streams::ktable::{store_getter, KTable};
use crate::streams::node::Data;
use crate::streams::processor::StreamRecord;
use crate::streams::store::kv::KvStore;
use crate::streams::store::{KeyValueStore, StoreBuilder};
use crate::streams::topology::{GraphBuilder, NodeKind, RawRecord, SourceNode, TopicRef, Topology};

/// Builds a topology with the DSL (Kafka's `StreamsBuilder`): read topics as a [`KStream`] or a
/// [`KTable`], chain operators, write results with [`KStream::to`], then [`build`](Self::build).
///
/// ```
/// use tidelog::{Consumed, Produced, StreamsBuilder, StringCodec, TopologyTestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("orders", Consumed::with(StringCodec, StringCodec))
///     .filter(|_, v| v.contains("tea"))
///     .map_values(|v| v.to_uppercase())
///     .to("tea-orders", Produced::with(StringCodec, StringCodec));
/// let topology = builder.build()?;
///
/// let driver = TopologyTestDriver::new(topology)?;
/// let input = driver.input_topic("orders", StringCodec, StringCodec);
/// input.pipe_input("o1".to_string(), "green tea".to_string())?;
/// input.pipe_input("o2".to_string(), "coffee".to_string())?;
/// let output = driver.output_topic("tea-orders", StringCodec, StringCodec);
/// assert_eq!(output.read_key_values()?, vec![("o1".to_string(), "GREEN TEA".to_string())]);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `topic` as a stream: every record is an event. A record without a key gets the
    /// key its codec decodes from no bytes (`""` for [`StringCodec`](crate::StringCodec)); one
    /// whose key or value cannot be decoded fails the application, or is skipped and counted
    /// if the application says so ([`StreamsConfig::skip_undecodable_records`](crate::StreamsConfig::skip_undecodable_records)).
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        self.stream_from(&[topic], consumed)
    }

    /// Reads several topics as one stream.
    pub fn stream_from<K: Data, V: Data>(
        &self,
        topics: &[&str],
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let topics = topics.iter().map(|t| TopicRef::user(t)).collect();
        self.source(topics, consumed)
    }

    pub(crate) fn source<K: Data, V: Data>(
        &self,
        topics: Vec<TopicRef>,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        stream_source(&self.graph, topics, consumed)
    }

    /// Reads `topic` as a table: a record is the latest value of its key, a tombstone deletes
    /// the key. The table is materialized in a key-value store (named by `materialized`, or
    /// generated) that joins and interactive queries read. Records without a key are dropped
    /// (counted in [`TaskMetrics::dropped_null_key`](crate::TaskMetrics)).
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let mut graph = self.graph.borrow_mut();
        let source_name = consumed
            .name
            .clone()
            .unwrap_or_else(|| graph.name("KTABLE-SOURCE"));
        let store_name = materialized.name.clone().unwrap_or_else(|| {
            format!(
                "{topic}-STATE-STORE-{}",
                graph.name("").trim_start_matches('-')
            )
        });
        let keys = materialized
            .keys
            .clone()
            .unwrap_or_else(|| Arc::clone(&consumed.keys));
        let values = materialized
            .values
            .clone()
            .unwrap_or_else(|| Arc::clone(&consumed.values));
        let mut store = StoreBuilder::key_value_with(
            store_name.clone(),
            Arc::clone(&keys),
            Arc::clone(&values),
        );
        store.logged = materialized.logged;
        graph.add_store(store);
        let (ck, cv) = (consumed.keys, consumed.values);
        let name = store_name.clone();
        let id = graph.add(
            source_name,
            Vec::new(),
            NodeKind::Source {
                topics: vec![TopicRef::user(topic)],
                factory: Arc::new(move |inst, id| {
                    let store = KeyValueStore::from_inner(inst.store::<KvStore<K, V>>(&name)?);
                    let mut down = inst.downstream::<K, Option<V>>(id)?;
                    let (ck, cv) = (Arc::clone(&ck), Arc::clone(&cv));
                    let source = move |ctx: &mut TaskContext, raw: RawRecord| -> Result<()> {
                        let Some(key) = raw.key else {
                            ctx.metrics.dropped_null_key += 1;
                            return Ok(());
                        };
                        let Some(key) = decode_or_skip(ctx, ck.decode(&key))? else {
                            return Ok(());
                        };
                        let value = match raw.value {
                            Some(bytes) => match decode_or_skip(ctx, cv.decode(&bytes))? {
                                Some(value) => Some(value),
                                None => return Ok(()),
                            },
                            None => None,
                        };
                        match &value {
                            Some(v) => store.put(&key, v)?,
                            None => {
                                store.delete(&key)?;
                            }
                        }
                        let mut record = StreamRecord::new(key, value, raw.timestamp);
                        record.headers = raw.headers;
                        down.forward(ctx, record)
                    };
                    Ok(Box::new(FnSource(source)) as Box<dyn SourceNode>)
                }),
            },
            vec![store_name.clone()],
        );
        drop(graph);
        KTable {
            graph: Rc::clone(&self.graph),
            node: id,
            keys: Some(keys),
            values: Some(values),
            getter: Some(store_getter::<K, V>(store_name.clone())),
            stores: vec![store_name],
        }
    }

    /// Adds a store for processors of your own; connect it by naming it in
    /// [`KStream::process`].
    pub fn add_state_store(&self, store: StoreBuilder) -> &Self {
        self.graph.borrow_mut().add_store(store);
        self
    }

    /// Checks the topology and returns it: errors for a store used but never added, a name
    /// used twice, a missing codec, a cycle through topics, a topic read twice.
    pub fn build(self) -> Result<Topology> {
        // Streams made by the builder may still hold the graph; take it from them.
        let graph = match Rc::try_unwrap(self.graph) {
            Ok(graph) => graph.into_inner(),
            Err(shared) => std::mem::take(&mut *shared.borrow_mut()),
        };
        Topology::build(graph)
    }
}

/// Adds a stream source node for `topics`.
pub(crate) fn stream_source<K: Data, V: Data>(
    graph: &Rc<RefCell<GraphBuilder>>,
    topics: Vec<TopicRef>,
    consumed: Consumed<K, V>,
) -> KStream<K, V> {
    let mut g = graph.borrow_mut();
    let name = consumed
        .name
        .clone()
        .unwrap_or_else(|| g.name("KSTREAM-SOURCE"));
    let (ck, cv) = (Arc::clone(&consumed.keys), Arc::clone(&consumed.values));
    let id = g.add(
        name,
        Vec::new(),
        NodeKind::Source {
            topics,
            factory: Arc::new(move |inst, id| {
                let mut down = inst.downstream::<K, V>(id)?;
                let (ck, cv) = (Arc::clone(&ck), Arc::clone(&cv));
                let source = move |ctx: &mut TaskContext, raw: RawRecord| -> Result<()> {
                    let key = raw.key.unwrap_or_default();
                    let Some(key) = decode_or_skip(ctx, ck.decode(&key))? else {
                        return Ok(());
                    };
                    let value = raw.value.unwrap_or_default();
                    let Some(value) = decode_or_skip(ctx, cv.decode(&value))? else {
                        return Ok(());
                    };
                    let mut record = StreamRecord::new(key, value, raw.timestamp);
                    record.headers = raw.headers;
                    down.forward(ctx, record)
                };
                Ok(Box::new(FnSource(source)) as Box<dyn SourceNode>)
            }),
        },
        Vec::new(),
    );
    drop(g);
    KStream::new(
        Rc::clone(graph),
        id,
        Some(consumed.keys),
        Some(consumed.values),
    )
}

/// A decoded value, `None` if it could not be decoded and the application skips such records,
/// or the error if it does not.
pub(crate) fn decode_or_skip<T>(
    ctx: &mut TaskContext,
    decoded: std::result::Result<T, crate::codec::CodecError>,
) -> Result<Option<T>> {
    match decoded {
        Ok(value) => Ok(Some(value)),
        Err(_) if ctx.skip_undecodable => {
            ctx.metrics.skipped_undecodable += 1;
            Ok(None)
        }
        Err(e) => Err(Error::StreamsFailed(format!(
            "task {}: cannot decode a record of {}: {e}",
            ctx.task_id,
            ctx.record.as_ref().map_or_else(
                || "a punctuation".to_string(),
                |m| format!("{}-{} at offset {}", m.topic, m.partition, m.offset)
            ),
        ))),
    }
}

/// A source node made from a closure.
struct FnSource<F>(F);

impl<F: FnMut(&mut TaskContext, RawRecord) -> Result<()> + Send> SourceNode for FnSource<F> {
    fn process_raw(&mut self, ctx: &mut TaskContext, record: RawRecord) -> Result<()> {
        (self.0)(ctx, record)
    }
}

/// How a topic is read: the codecs of its keys and values, and optionally the source node's
/// name (Kafka's `Consumed`).
pub struct Consumed<K, V> {
    pub(crate) keys: CodecRef<K>,
    pub(crate) values: CodecRef<V>,
    pub(crate) name: Option<String>,
}

impl<K, V> Consumed<K, V> {
    /// Keys and values decoded with these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        Consumed {
            keys: codec_ref(keys),
            values: codec_ref(values),
            name: None,
        }
    }

    /// Names the source node (else generated, `KSTREAM-SOURCE-0000000000`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Encodes a value for a sink; `None` writes a tombstone.
pub(crate) type ValueEncoder<V> = Arc<dyn Fn(&V) -> Result<Option<Bytes>> + Send + Sync>;

/// How a stream is written to a topic: codecs of keys and values (Kafka's `Produced`).
/// Records go to the partition that the producer's default partitioner picks for the encoded
/// key (Kafka's murmur2), as Kafka Streams does.
pub struct Produced<K, V> {
    pub(crate) keys: CodecRef<K>,
    pub(crate) values: ValueEncoder<V>,
    pub(crate) name: Option<String>,
}

impl<K, V: 'static> Produced<K, V> {
    /// Keys and values encoded with these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        let values = codec_ref(values);
        Produced {
            keys: codec_ref(keys),
            values: Arc::new(move |v| Ok(Some(values.encode(v)?))),
            name: None,
        }
    }

    /// Names the sink node.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K, V: 'static> Produced<K, Option<V>> {
    /// For a stream of optional values (a table's changes, [`KTable::to_stream`]): `None` is
    /// written as a tombstone.
    pub fn with_tombstones(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        let values = codec_ref(values);
        Produced {
            keys: codec_ref(keys),
            values: Arc::new(move |v: &Option<V>| {
                v.as_ref()
                    .map(|v| values.encode(v))
                    .transpose()
                    .map_err(Into::into)
            }),
            name: None,
        }
    }
}

/// Codecs for a grouping, used when it needs a repartition topic (Kafka's `Grouped`). Any codec
/// left out is taken from the stream, where the stream still knows it.
pub struct Grouped<K, V> {
    pub(crate) keys: Option<CodecRef<K>>,
    pub(crate) values: Option<CodecRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K, V> Grouped<K, V> {
    /// Keys and values with these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        Grouped {
            keys: Some(codec_ref(keys)),
            values: Some(codec_ref(values)),
            name: None,
        }
    }

    /// Keys with this codec; values as the stream knows them.
    pub fn with_key_codec(keys: impl Codec<K> + 'static) -> Self {
        Grouped {
            keys: Some(codec_ref(keys)),
            values: None,
            name: None,
        }
    }

    /// Names the repartition topic (`<application id>-<name>-repartition`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a table or aggregation is kept in a store: the store's name (to query it) and codecs
/// (Kafka's `Materialized`). Codecs left out are taken from the stream where it knows them.
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) keys: Option<CodecRef<K>>,
    pub(crate) values: Option<CodecRef<V>>,
    pub(crate) logged: bool,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            keys: None,
            values: None,
            logged: true,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// A store called `name` (Kafka's `Materialized.as(name)`), codecs from the stream.
    pub fn named(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// A store with a generated name and these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        Materialized {
            keys: Some(codec_ref(keys)),
            values: Some(codec_ref(values)),
            ..Self::default()
        }
    }

    /// Sets the key codec.
    #[must_use]
    pub fn with_key_codec(mut self, keys: impl Codec<K> + 'static) -> Self {
        self.keys = Some(codec_ref(keys));
        self
    }

    /// Sets the value codec.
    #[must_use]
    pub fn with_value_codec(mut self, values: impl Codec<V> + 'static) -> Self {
        self.values = Some(codec_ref(values));
        self
    }

    /// No changelog topic: the store starts empty after a restart.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logged = false;
        self
    }
}
