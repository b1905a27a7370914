//! `KTable`: a changelog stream seen as a table, its operators, and value lookups for joins.
//!
//! A table's records are updates: `(key, Some(value))` sets the key, `(key, None)` deletes it.
//! Operators on a table forward updates downstream; a table whose current values can be looked
//! up (a source table, an aggregation, and filters, mappings and joins of those) carries a
//! *value getter*: a recipe that, in each task, reads the store(s) underneath and applies the
//! same filters and mappings. Joins use it, so a derived table needs no store of its own.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::Result;
use crate::streams::codec::CodecRef;
use crate::streams::kstream::{add_node, KStream};
use crate::streams::node::{fn_node, Data, Downstream};
use crate::streams::processor::StreamRecord;
use crate::streams::store::kv::KvStore;
use crate::streams::store::KeyValueStore;
use crate::streams::topology::{GraphBuilder, Instantiator};

/// Reads the current value of a key in a table, in one task.
pub(crate) trait ValueGetter<K, V>: Send {
    fn get(&mut self, key: &K) -> Result<Option<V>>;
}

impl<K, V, F: FnMut(&K) -> Result<Option<V>> + Send> ValueGetter<K, V> for F {
    fn get(&mut self, key: &K) -> Result<Option<V>> {
        self(key)
    }
}

/// A table operator's mapping of a row: key and old value to the new value.
type RowMap<K, V, V2> = Arc<dyn Fn(&K, Option<V>) -> Option<V2> + Send + Sync>;

/// Makes a task's value getter.
pub(crate) type GetterFactory<K, V> =
    Arc<dyn Fn(&mut Instantiator<'_>) -> Result<Box<dyn ValueGetter<K, V>>> + Send + Sync>;

/// A getter reading key-value store `store`.
pub(crate) fn store_getter<K: Data, V: Data>(store: String) -> GetterFactory<K, V> {
    Arc::new(move |inst| {
        let store = KeyValueStore::from_inner(inst.store::<KvStore<K, V>>(&store)?);
        Ok(Box::new(move |key: &K| store.get(key)) as Box<dyn ValueGetter<K, V>>)
    })
}

/// A table: the latest value of each key (Kafka's `KTable<K, V>`).
///
/// Made by [`StreamsBuilder::table`](crate::StreamsBuilder::table) or by an aggregation
/// ([`KGroupedStream::count`](crate::KGroupedStream::count), ...). Its updates flow on as
/// `(key, Some(value))` and `(key, None)` for deletions; [`to_stream`](Self::to_stream) turns
/// them into a stream.
pub struct KTable<K, V> {
    pub(crate) graph: Rc<RefCell<GraphBuilder>>,
    pub(crate) node: usize,
    pub(crate) keys: Option<CodecRef<K>>,
    pub(crate) values: Option<CodecRef<V>>,
    pub(crate) getter: Option<GetterFactory<K, V>>,
    /// Stores the getter reads (joins must run in their sub-topology).
    pub(crate) stores: Vec<String>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            graph: Rc::clone(&self.graph),
            node: self.node,
            keys: self.keys.clone(),
            values: self.values.clone(),
            getter: self.getter.clone(),
            stores: self.stores.clone(),
        }
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    fn step<V2: Data>(
        &self,
        prefix: &str,
        map: impl Fn(&K, Option<V>) -> Option<V2> + Send + Sync + 'static,
    ) -> (usize, RowMap<K, V, V2>) {
        let map: RowMap<K, V, V2> = Arc::new(map);
        let node_map = Arc::clone(&map);
        let id = add_node(
            &self.graph,
            vec![self.node],
            prefix,
            Vec::new(),
            move |_, mut down: Downstream<K, Option<V2>>| {
                let map = Arc::clone(&node_map);
                Ok(fn_node(move |ctx, r: StreamRecord<K, Option<V>>| {
                    let value = map(&r.key, r.value);
                    down.forward(
                        ctx,
                        StreamRecord {
                            key: r.key,
                            value,
                            timestamp: r.timestamp,
                            headers: r.headers,
                        },
                    )
                }))
            },
        );
        (id, map)
    }

    fn derived<V2: Data>(
        &self,
        id: usize,
        map: RowMap<K, V, V2>,
        values: Option<CodecRef<V2>>,
    ) -> KTable<K, V2> {
        let getter = self.getter.clone().map(|parent| {
            Arc::new(move |inst: &mut Instantiator<'_>| {
                let mut parent = parent(inst)?;
                let map = Arc::clone(&map);
                Ok(Box::new(move |key: &K| Ok(map(key, parent.get(key)?)))
                    as Box<dyn ValueGetter<K, V2>>)
            }) as GetterFactory<K, V2>
        });
        KTable {
            graph: Rc::clone(&self.graph),
            node: id,
            keys: self.keys.clone(),
            values,
            getter,
            stores: self.stores.clone(),
        }
    }

    /// Keeps the rows for which `predicate` holds; an update that fails it is forwarded as a
    /// deletion of its key, as in Kafka, so downstream tables forget the row.
    #[must_use]
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        let (id, map) = self.step("KTABLE-FILTER", move |k, v: Option<V>| {
            v.filter(|v| predicate(k, v))
        });
        self.derived(id, map, self.values.clone())
    }

    /// Drops the rows for which `predicate` holds.
    #[must_use]
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Maps every row's value.
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(&V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let (id, map) = self.step("KTABLE-MAPVALUES", move |_, v: Option<V>| {
            v.map(|v| mapper(&v))
        });
        self.derived(id, map, None)
    }

    /// The table's updates as a stream: `(key, Some(value))`, and `(key, None)` for deletions.
    /// Write it with [`Produced::with_tombstones`](crate::Produced::with_tombstones).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        KStream::new(Rc::clone(&self.graph), self.node, self.keys.clone(), None)
    }

    /// Joins two tables on their keys (Kafka's table-table `join`): the result has a row for
    /// each key present in both, `joiner(left, right)`; an update on either side updates it,
    /// and a deletion on either side deletes it. Both tables must be co-partitioned.
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.join_with(other, "KTABLE-JOIN", (true, true), move |l, r| {
            match (l, r) {
                (Some(l), Some(r)) => Some(joiner(l, r)),
                _ => None,
            }
        })
    }

    /// Table-table left join: a row for every key of this table, `joiner(left, right or None)`.
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.join_with(other, "KTABLE-LEFTJOIN", (true, false), move |l, r| {
            l.map(|l| joiner(l, r))
        })
    }

    /// Table-table outer join: a row for every key in either table.
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.join_with(other, "KTABLE-OUTERJOIN", (false, false), move |l, r| {
            (l.is_some() || r.is_some()).then(|| joiner(l, r))
        })
    }

    /// `needs` says whether a joined row needs this side's row and the other side's. An update
    /// of one side while a side the row needs is missing had no joined row before it and has
    /// none after, so it forwards nothing (as Kafka's table-table join processors return
    /// early), instead of a tombstone for a row that never existed.
    fn join_with<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        prefix: &str,
        (needs_this, needs_other): (bool, bool),
        joiner: impl Fn(Option<&V>, Option<&V2>) -> Option<VR> + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let (Some(left_getter), Some(right_getter)) = (self.getter.clone(), other.getter.clone())
        else {
            self.graph.borrow_mut().errors.push(
                "a table-table join needs tables whose values can be looked up (source tables, \
                 aggregations, or filters and mappings of them)"
                    .into(),
            );
            return KTable {
                graph: Rc::clone(&self.graph),
                node: self.node,
                keys: self.keys.clone(),
                values: None,
                getter: None,
                stores: Vec::new(),
            };
        };
        let mut stores = self.stores.clone();
        stores.extend(other.stores.iter().cloned());
        {
            let mut g = self.graph.borrow_mut();
            let mut group = g.source_topics_of(self.node);
            group.extend(g.source_topics_of(other.node));
            g.copartition.push(group);
        }
        let joiner = Arc::new(joiner);
        // Left updates look up the right side, right updates the left; both feed one merge node.
        let (j, rg) = (Arc::clone(&joiner), Arc::clone(&right_getter));
        let left = add_node(
            &self.graph,
            vec![self.node],
            &format!("{prefix}-THIS"),
            stores.clone(),
            move |inst, mut down: Downstream<K, Option<VR>>| {
                let mut right = rg(inst)?;
                let j = Arc::clone(&j);
                Ok(fn_node(move |ctx, r: StreamRecord<K, Option<V>>| {
                    let other = right.get(&r.key)?;
                    if needs_other && other.is_none() {
                        return Ok(());
                    }
                    let value = j(r.value.as_ref(), other.as_ref());
                    down.forward(ctx, r.with_value(value))
                }))
            },
        );
        let (j, lg) = (Arc::clone(&joiner), Arc::clone(&left_getter));
        let right = add_node(
            &self.graph,
            vec![other.node],
            &format!("{prefix}-OTHER"),
            stores.clone(),
            move |inst, mut down: Downstream<K, Option<VR>>| {
                let mut left = lg(inst)?;
                let j = Arc::clone(&j);
                Ok(fn_node(move |ctx, r: StreamRecord<K, Option<V2>>| {
                    let this = left.get(&r.key)?;
                    if needs_this && this.is_none() {
                        return Ok(());
                    }
                    let value = j(this.as_ref(), r.value.as_ref());
                    down.forward(ctx, r.with_value(value))
                }))
            },
        );
        let merge = add_node(
            &self.graph,
            vec![left, right],
            &format!("{prefix}-MERGE"),
            Vec::new(),
            |_, mut down: Downstream<K, Option<VR>>| {
                Ok(fn_node(move |ctx, r: StreamRecord<K, Option<VR>>| {
                    down.forward(ctx, r)
                }))
            },
        );
        let getter: GetterFactory<K, VR> = Arc::new(move |inst| {
            let mut left = left_getter(inst)?;
            let mut right = right_getter(inst)?;
            let joiner = Arc::clone(&joiner);
            Ok(Box::new(move |key: &K| {
                let (l, r) = (left.get(key)?, right.get(key)?);
                Ok(joiner(l.as_ref(), r.as_ref()))
            }) as Box<dyn ValueGetter<K, VR>>)
        });
        KTable {
            graph: Rc::clone(&self.graph),
            node: merge,
            keys: self.keys.clone(),
            values: None,
            getter: Some(getter),
            stores,
        }
    }
}
