//! `KStream`: a stream of events and its operators.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::Result;
use crate::streams::builder::{stream_source, Consumed, Grouped, Produced};
use crate::streams::codec::{codec_ref, Codec, CodecRef};
use crate::streams::context::{OutRecord, TaskContext};
use crate::streams::grouped::KGroupedStream;
use crate::streams::ktable::KTable;
use crate::streams::node::{fn_node, Data, Downstream, Node};
use crate::streams::processor::{Processor, ProcessorContext, PunctuationType, StreamRecord};
use crate::streams::topology::{
    GraphBuilder, Instantiator, NodeKind, Punctuate, Punctuator, TopicRef,
};

/// A stream of key-value events (Kafka's `KStream<K, V>`): every record is a fact of its own,
/// unlike a [`KTable`] where a record replaces the previous value of its key.
///
/// Operators return new streams; a stream can feed several operators (each gets every record).
/// Closures must be `Send + Sync` because every task runs its own copy of the topology, on
/// whatever thread owns it.
///
/// The stream remembers the codecs of its keys and values while operators keep their types, so
/// stateful operators and repartitioning further down can use them; after a type change, give
/// codecs where needed ([`Grouped`], [`Materialized`](crate::Materialized), [`Produced`]).
pub struct KStream<K, V> {
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
    pub(crate) node: usize,
    pub(crate) keys: Option<CodecRef<K>>,
    pub(crate) values: Option<CodecRef<V>>,
    /// Whether an operator may have changed keys since the last partitioning by key; a
    /// grouping or join then goes through a repartition topic first.
    pub(crate) key_changed: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            graph: Rc::clone(&self.graph),
            node: self.node,
            keys: self.keys.clone(),
            values: self.values.clone(),
            key_changed: self.key_changed,
        }
    }
}

/// Adds a processor node with `parents`, made per task by `make` from its downstream.
pub(crate) fn add_node<KIn: Data, VIn: Data, KOut: Data, VOut: Data>(
    graph: &Rc<RefCell<GraphBuilder>>,
    parents: Vec<usize>,
    prefix: &str,
    stores: Vec<String>,
    make: impl Fn(&mut Instantiator<'_>, Downstream<KOut, VOut>) -> Result<Box<dyn Node<KIn, VIn>>>
        + Send
        + Sync
        + 'static,
) -> usize {
    let mut g = graph.borrow_mut();
    let name = g.name(prefix);
    g.add(
        name,
        parents,
        NodeKind::Processor {
            factory: Arc::new(move |inst, id| {
                let down = inst.downstream::<KOut, VOut>(id)?;
                let node = make(inst, down)?;
                Ok(Box::new(node) as Box<dyn std::any::Any + Send>)
            }),
        },
        stores,
    )
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(
        graph: Rc<RefCell<GraphBuilder>>,
        node: usize,
        keys: Option<CodecRef<K>>,
        values: Option<CodecRef<V>>,
    ) -> Self {
        KStream {
            graph,
            node,
            keys,
            values,
            key_changed: false,
        }
    }

    fn derive<K2: Data, V2: Data>(
        &self,
        node: usize,
        keys: Option<CodecRef<K2>>,
        values: Option<CodecRef<V2>>,
        key_changed: bool,
    ) -> KStream<K2, V2> {
        KStream {
            graph: Rc::clone(&self.graph),
            node,
            keys,
            values,
            key_changed: self.key_changed || key_changed,
        }
    }

    /// A stateless step: `step` gets each record and the downstream.
    fn step<K2: Data, V2: Data>(
        &self,
        prefix: &str,
        step: impl Fn(&mut TaskContext, StreamRecord<K, V>, &mut Downstream<K2, V2>) -> Result<()>
            + Send
            + Sync
            + 'static,
    ) -> usize {
        let step = Arc::new(step);
        add_node(
            &self.graph,
            vec![self.node],
            prefix,
            Vec::new(),
            move |_, mut down| {
                let step = Arc::clone(&step);
                Ok(fn_node(move |ctx, record| step(ctx, record, &mut down)))
            },
        )
    }

    /// Keeps the records for which `predicate` holds.
    #[must_use]
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        let id = self.step("KSTREAM-FILTER", move |ctx, r, down| {
            if predicate(&r.key, &r.value) {
                down.forward(ctx, r)
            } else {
                Ok(())
            }
        });
        self.derive(id, self.keys.clone(), self.values.clone(), false)
    }

    /// Drops the records for which `predicate` holds.
    #[must_use]
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces each record's key and value. The keys may change, so a later grouping or join
    /// repartitions first.
    pub fn map<K2: Data, V2: Data>(
        &self,
        mapper: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let id = self.step("KSTREAM-MAP", move |ctx, r, down| {
            let (key, value) = mapper(r.key, r.value);
            down.forward(
                ctx,
                StreamRecord {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                },
            )
        });
        self.derive(id, None, None, true)
    }

    /// Replaces each record's value; keys (and their partitioning) stay.
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let id = self.step("KSTREAM-MAPVALUES", move |ctx, r, down| {
            let value = mapper(r.value);
            down.forward(
                ctx,
                StreamRecord {
                    key: r.key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                },
            )
        });
        self.derive(id, self.keys.clone(), None, false)
    }

    /// Replaces each record's value, seeing the key.
    pub fn map_values_with_key<V2: Data>(
        &self,
        mapper: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let id = self.step("KSTREAM-MAPVALUES", move |ctx, r, down| {
            let value = mapper(&r.key, r.value);
            down.forward(
                ctx,
                StreamRecord {
                    key: r.key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                },
            )
        });
        self.derive(id, self.keys.clone(), None, false)
    }

    /// Replaces each record by zero or more records (keys may change).
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        mapper: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let id = self.step("KSTREAM-FLATMAP", move |ctx, r, down| {
            for (key, value) in mapper(r.key, r.value) {
                let mut out = StreamRecord::new(key, value, r.timestamp);
                out.headers.clone_from(&r.headers);
                down.forward(ctx, out)?;
            }
            Ok(())
        });
        self.derive(id, None, None, true)
    }

    /// Replaces each record by zero or more records with the same key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        mapper: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let id = self.step("KSTREAM-FLATMAPVALUES", move |ctx, r, down| {
            for value in mapper(r.value) {
                let mut out = StreamRecord::new(r.key.clone(), value, r.timestamp);
                out.headers.clone_from(&r.headers);
                down.forward(ctx, out)?;
            }
            Ok(())
        });
        self.derive(id, self.keys.clone(), None, false)
    }

    /// Gives each record a new key computed from it; the value stays.
    pub fn select_key<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let id = self.step("KSTREAM-KEY-SELECT", move |ctx, r, down| {
            let key = selector(&r.key, &r.value);
            down.forward(
                ctx,
                StreamRecord {
                    key,
                    value: r.value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                },
            )
        });
        self.derive(id, None, self.values.clone(), true)
    }

    /// Calls `action` for each record and passes it on unchanged.
    #[must_use]
    pub fn peek(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        let id = self.step("KSTREAM-PEEK", move |ctx, r, down| {
            action(&r.key, &r.value);
            down.forward(ctx, r)
        });
        self.derive(id, self.keys.clone(), self.values.clone(), false)
    }

    /// Calls `action` for each record; the end of this branch of the topology.
    pub fn foreach(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) {
        self.step::<K, V>("KSTREAM-FOREACH", move |_, r, _| {
            action(&r.key, &r.value);
            Ok(())
        });
    }

    /// Splits the stream (Kafka's `split().branch(...)`): a record goes to the stream of the
    /// first predicate that holds for it, and is dropped if none does. Returns one stream per
    /// predicate, in order; end with `|_, _| true` for a default branch.
    #[allow(clippy::type_complexity)]
    pub fn branch(
        &self,
        predicates: Vec<Box<dyn Fn(&K, &V) -> bool + Send + Sync>>,
    ) -> Vec<KStream<K, V>> {
        let count = predicates.len();
        let predicates = Arc::new(predicates);
        let id = self.step("KSTREAM-BRANCH", move |ctx, r, down| {
            match predicates.iter().position(|p| p(&r.key, &r.value)) {
                Some(i) => down.forward_to(i, ctx, r),
                None => Ok(()),
            }
        });
        // The branch node's children, in creation order, are its branches: `forward_to(i)`.
        (0..count)
            .map(|_| {
                let child = add_node(
                    &self.graph,
                    vec![id],
                    "KSTREAM-BRANCHCHILD",
                    Vec::new(),
                    |_, mut down: Downstream<K, V>| Ok(fn_node(move |ctx, r| down.forward(ctx, r))),
                );
                self.derive(child, self.keys.clone(), self.values.clone(), false)
            })
            .collect()
    }

    /// Splits the stream into named branches (Kafka's `split()`): add branches with
    /// [`BranchedKStream::branch`]; a record goes to the first branch whose predicate holds.
    ///
    /// ```
    /// use tidelog::{Consumed, Produced, StreamsBuilder, StringCodec};
    /// let builder = StreamsBuilder::new();
    /// let branches = builder
    ///     .stream("orders", Consumed::with(StringCodec, StringCodec))
    ///     .split("order-")
    ///     .branch("tea", |_, v| v.contains("tea"))
    ///     .branch("coffee", |_, v| v.contains("coffee"))
    ///     .default_branch("other");
    /// branches["order-tea"].to("tea", Produced::with(StringCodec, StringCodec));
    /// assert_eq!(branches.len(), 3);
    /// ```
    pub fn split(&self, prefix: &str) -> BranchedKStream<K, V> {
        BranchedKStream {
            stream: self.clone(),
            prefix: prefix.to_owned(),
            branches: Vec::new(),
        }
    }

    /// One stream with the records of both (Kafka's `merge`); order between the two follows
    /// processing order.
    #[must_use]
    pub fn merge(&self, other: &KStream<K, V>) -> Self {
        let id = add_node(
            &self.graph,
            vec![self.node, other.node],
            "KSTREAM-MERGE",
            Vec::new(),
            |_, mut down: Downstream<K, V>| Ok(fn_node(move |ctx, r| down.forward(ctx, r))),
        );
        let mut merged = self.derive(id, self.keys.clone(), self.values.clone(), false);
        merged.key_changed |= other.key_changed;
        merged
    }

    /// Writes the stream to `topic` (which must exist when the application starts).
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        self.sink(TopicRef::user(topic), produced);
    }

    pub(crate) fn sink(&self, topic: TopicRef, produced: Produced<K, V>) {
        let mut g = self.graph.borrow_mut();
        let name = produced
            .name
            .clone()
            .unwrap_or_else(|| g.name("KSTREAM-SINK"));
        let (keys, values) = (produced.keys, produced.values);
        let target = topic.clone();
        g.add(
            name,
            vec![self.node],
            NodeKind::Sink {
                topic,
                factory: Arc::new(move |inst, _| {
                    let topic: Arc<str> = Arc::from(target.resolve(&inst.ctx.application_id));
                    let (keys, values) = (Arc::clone(&keys), Arc::clone(&values));
                    let node: Box<dyn Node<K, V>> = fn_node(move |ctx, r: StreamRecord<K, V>| {
                        let key = keys.encode(&r.key)?;
                        let value = values(&r.value)?;
                        ctx.outbox.push(OutRecord {
                            topic: Arc::clone(&topic),
                            partition: None,
                            key: Some(key),
                            value,
                            timestamp: r.timestamp,
                            headers: r.headers,
                        });
                        Ok(())
                    });
                    Ok(Box::new(node) as Box<dyn std::any::Any + Send>)
                }),
            },
            Vec::new(),
        );
    }

    /// Sends the stream through an internal topic `<application id>-<name>-repartition`, so that
    /// records are partitioned by their current key (Kafka's `repartition`). Needs codecs: from
    /// `repartitioned`, else the stream's.
    #[must_use]
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> Self {
        let keys = repartitioned.keys.or_else(|| self.keys.clone());
        let values = repartitioned.values.or_else(|| self.values.clone());
        self.through_internal(repartitioned.name, repartitioned.partitions, keys, values)
    }

    /// The repartition step of `repartition`, `group_by` and joins.
    pub(crate) fn through_internal(
        &self,
        name: Option<String>,
        partitions: Option<u32>,
        keys: Option<CodecRef<K>>,
        values: Option<CodecRef<V>>,
    ) -> Self {
        let base = {
            let mut g = self.graph.borrow_mut();
            let base = name.unwrap_or_else(|| g.name("KSTREAM-REPARTITION"));
            let topic = format!("{base}-repartition");
            if g.repartition_topics.insert(topic, partitions).is_some() {
                g.errors.push(format!(
                    "two repartition topics are named `{base}-repartition`; name them apart"
                ));
            }
            base
        };
        let (Some(keys), Some(values)) = (keys, values) else {
            self.graph.borrow_mut().errors.push(format!(
                "repartitioning `{base}` needs codecs for the key and the value; the stream no \
                 longer knows them after a type change: give them with Grouped::with or \
                 Repartitioned::with"
            ));
            return self.clone();
        };
        let topic = TopicRef::internal(format!("{base}-repartition"));
        let produce_values = Arc::clone(&values);
        self.sink(
            topic.clone(),
            Produced {
                keys: Arc::clone(&keys),
                values: Arc::new(move |v| Ok(Some(produce_values.encode(v)?))),
                name: Some(format!("{base}-repartition-sink")),
            },
        );
        let consumed = Consumed {
            keys,
            values,
            name: Some(format!("{base}-repartition-source")),
        };
        stream_source(&self.graph, vec![topic], consumed)
    }

    /// Groups records by their key, for an aggregation (Kafka's `groupByKey`). Repartitions
    /// first when an operator before may have changed keys.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        let keys = grouped.keys.or_else(|| self.keys.clone());
        let values = grouped.values.or_else(|| self.values.clone());
        let stream = if self.key_changed {
            self.through_internal(grouped.name, None, keys.clone(), values.clone())
        } else {
            self.clone()
        };
        KGroupedStream::new(stream, keys, values)
    }

    /// Groups records by a new key computed from each, through a repartition topic (Kafka's
    /// `groupBy`). `grouped` gives the new key's codec (needed: the stream cannot know it).
    pub fn group_by<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(selector).group_by_key(grouped)
    }

    /// Runs a [`Processor`] of your own on each record (Kafka's `process`). `supplier` makes one
    /// processor per task; `stores` names the stores it uses (added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)).
    pub fn process<KOut: Data, VOut: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<KOut, VOut>
    where
        P: Processor<K, V, KOut, VOut> + 'static,
    {
        let stores: Vec<String> = stores.iter().map(|s| (*s).to_owned()).collect();
        let id = add_node(
            &self.graph,
            vec![self.node],
            "KSTREAM-PROCESSOR",
            stores.clone(),
            move |inst, down: Downstream<KOut, VOut>| {
                for store in &stores {
                    inst.store_any(store)?;
                }
                let mut processor = supplier();
                let mut schedules = Vec::new();
                processor.init(&mut ProcessorContext {
                    task: inst.ctx,
                    downstream: None,
                    schedules: Some(&mut schedules),
                })?;
                let node = Arc::new(parking_lot::Mutex::new(ProcessorNode {
                    processor,
                    down,
                    _input: std::marker::PhantomData,
                }));
                for schedule in schedules {
                    inst.punctuators.push(Punctuator {
                        node: Arc::clone(&node) as Arc<parking_lot::Mutex<dyn Punctuate>>,
                        schedule,
                        next: None,
                    });
                }
                Ok(Box::new(SharedProcessor(node)) as Box<dyn Node<K, V>>)
            },
        );
        self.derive(id, None, None, true)
    }

    /// Joins each record with the value of its key in `table` (Kafka's stream-table `join`):
    /// records whose key is not in the table are dropped. Both must be partitioned alike (same
    /// partition count, same keys); the stream is repartitioned first if its keys changed
    /// (with the stream's codecs; after a type change give them with
    /// [`join_with`](Self::join_with)).
    pub fn join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.join_with(table, joiner, Joined::default())
    }

    /// [`join`](Self::join) with codecs for the repartition topic (Kafka's `Joined`).
    pub fn join_with<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
        options: Joined<K, V>,
    ) -> KStream<K, VR> {
        self.table_join(table, "KSTREAM-JOIN", options, move |v, t: Option<&VT>| {
            t.map(|t| joiner(v, t))
        })
    }

    /// Like [`join`](Self::join), but a record whose key is not in the table is joined with
    /// `None` instead of being dropped (Kafka's stream-table `leftJoin`).
    pub fn left_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.left_join_with(table, joiner, Joined::default())
    }

    /// [`left_join`](Self::left_join) with codecs for the repartition topic.
    pub fn left_join_with<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
        options: Joined<K, V>,
    ) -> KStream<K, VR> {
        self.table_join(table, "KSTREAM-LEFTJOIN", options, move |v, t| {
            Some(joiner(v, t))
        })
    }

    fn table_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        prefix: &str,
        options: Joined<K, V>,
        joiner: impl Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let stream = if self.key_changed {
            self.through_internal(
                options.name,
                None,
                options.keys.or_else(|| self.keys.clone()),
                options.values.or_else(|| self.values.clone()),
            )
        } else {
            self.clone()
        };
        let Some(getter) = table.getter.clone() else {
            self.graph.borrow_mut().errors.push(
                "a stream can only join a table whose values can be looked up (a source table, \
                 an aggregation, or filters and mappings of them)"
                    .into(),
            );
            return stream.derive(stream.node, None, None, false);
        };
        {
            let mut g = self.graph.borrow_mut();
            let mut group = g.source_topics_of(stream.node);
            group.extend(g.source_topics_of(table.node));
            g.copartition.push(group);
        }
        let joiner = Arc::new(joiner);
        let id = add_node(
            &self.graph,
            vec![stream.node],
            prefix,
            table.stores.clone(),
            move |inst, mut down: Downstream<K, VR>| {
                let mut lookup = getter(inst)?;
                let joiner = Arc::clone(&joiner);
                Ok(fn_node(move |ctx, r: StreamRecord<K, V>| {
                    let found = lookup.get(&r.key)?;
                    match joiner(&r.value, found.as_ref()) {
                        Some(value) => down.forward(ctx, r.with_value_keep_key(value)),
                        None => Ok(()),
                    }
                }))
            },
        );
        stream.derive(id, stream.keys.clone(), None, false)
    }
}

impl<K, V> StreamRecord<K, V> {
    pub(crate) fn with_value_keep_key<V2>(self, value: V2) -> StreamRecord<K, V2> {
        self.with_value(value)
    }
}

/// A predicate of a branch.
type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Branches being added to a split stream (Kafka's `BranchedKStream`); finish with
/// [`default_branch`](Self::default_branch) or [`no_default_branch`](Self::no_default_branch),
/// which return the branches by name (`prefix` + branch name).
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    prefix: String,
    branches: Vec<(String, Predicate<K, V>)>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// Adds a branch for the records `predicate` holds for (and no earlier branch took).
    #[must_use]
    pub fn branch(
        mut self,
        name: &str,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.branches
            .push((format!("{}{name}", self.prefix), Box::new(predicate)));
        self
    }

    /// Ends the split with a branch for every record no branch took.
    pub fn default_branch(mut self, name: &str) -> BTreeMap<String, KStream<K, V>> {
        self.branches
            .push((format!("{}{name}", self.prefix), Box::new(|_, _| true)));
        self.no_default_branch()
    }

    /// Ends the split; records no branch took are dropped.
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        let (names, predicates): (Vec<String>, Vec<Predicate<K, V>>) =
            self.branches.into_iter().unzip();
        let mut seen = std::collections::BTreeSet::new();
        for name in &names {
            if !seen.insert(name) {
                self.stream
                    .graph
                    .borrow_mut()
                    .errors
                    .push(format!("two branches of a split are named `{name}`"));
            }
        }
        names
            .into_iter()
            .zip(self.stream.branch(predicates))
            .collect()
    }
}

/// Codecs for the repartition topic a stream-table join may need (Kafka's `Joined`); codecs
/// left out are the stream's.
pub struct Joined<K, V> {
    keys: Option<CodecRef<K>>,
    values: Option<CodecRef<V>>,
    name: Option<String>,
}

impl<K, V> Default for Joined<K, V> {
    fn default() -> Self {
        Joined {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K, V> Joined<K, V> {
    /// Keys and values of the stream side with these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        Joined {
            keys: Some(codec_ref(keys)),
            values: Some(codec_ref(values)),
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

/// Options of [`KStream::repartition`] (Kafka's `Repartitioned`).
pub struct Repartitioned<K, V> {
    keys: Option<CodecRef<K>>,
    values: Option<CodecRef<V>>,
    name: Option<String>,
    partitions: Option<u32>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            keys: None,
            values: None,
            name: None,
            partitions: None,
        }
    }
}

impl<K, V> Repartitioned<K, V> {
    /// With these codecs.
    pub fn with(keys: impl Codec<K> + 'static, values: impl Codec<V> + 'static) -> Self {
        Repartitioned {
            keys: Some(codec_ref(keys)),
            values: Some(codec_ref(values)),
            ..Self::default()
        }
    }

    /// Names the topic `<application id>-<name>-repartition`.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Its partition count (default: the most partitions among the upstream source topics).
    #[must_use]
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// A user processor with its downstream; shared so that punctuations reach it.
struct ProcessorNode<P, K, V, KOut, VOut> {
    processor: P,
    down: Downstream<KOut, VOut>,
    _input: std::marker::PhantomData<fn(K, V)>,
}

impl<P, K, V, KOut: Data, VOut: Data> ProcessorNode<P, K, V, KOut, VOut>
where
    P: Processor<K, V, KOut, VOut>,
{
    fn context<'a>(
        &'a mut self,
        ctx: &'a mut TaskContext,
    ) -> (&'a mut P, ProcessorContext<'a, KOut, VOut>) {
        let pctx = ProcessorContext {
            task: ctx,
            downstream: Some(&mut self.down),
            schedules: None,
        };
        (&mut self.processor, pctx)
    }
}

impl<P, K: Data, V: Data, KOut: Data, VOut: Data> Punctuate for ProcessorNode<P, K, V, KOut, VOut>
where
    P: Processor<K, V, KOut, VOut>,
{
    fn punctuate(
        &mut self,
        ctx: &mut TaskContext,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<()> {
        let (processor, mut pctx) = self.context(ctx);
        processor.punctuate(&mut pctx, kind, timestamp)
    }
}

/// A user processor as its parent calls it.
type SharedNode<P, K, V, KOut, VOut> = Arc<parking_lot::Mutex<ProcessorNode<P, K, V, KOut, VOut>>>;

struct SharedProcessor<P, K, V, KOut, VOut>(SharedNode<P, K, V, KOut, VOut>);

impl<K: Data, V: Data, KOut: Data, VOut: Data, P> Node<K, V>
    for SharedProcessor<P, K, V, KOut, VOut>
where
    P: Processor<K, V, KOut, VOut>,
{
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        let mut node = self.0.lock();
        let (processor, mut pctx) = node.context(ctx);
        processor.process(&mut pctx, record)
    }
}
