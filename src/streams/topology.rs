//! The topology: the graph the DSL builds, checked, split into sub-topologies, and turned into
//! a task's nodes.
//!
//! Nodes are numbered in the order the DSL creates them; a node's parents always have smaller
//! numbers, so the graph of nodes is acyclic by construction. Two nodes belong to the same
//! **sub-topology** when they are linked by an edge or use the same store; a sub-topology is
//! what one task runs. Records cross from one sub-topology to another only through a topic
//! (an internal repartition topic, or a user topic that the topology both writes and reads).
//! A cycle through topics between sub-topologies is refused at [`StreamsBuilder::build`].
//!
//! Internal topics are named `<application id>-<name>`: repartition topics
//! `<application id>-<node>-repartition`, changelogs `<application id>-<store>-changelog`.
//!
//! [`StreamsBuilder::build`]: crate::StreamsBuilder::build

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::Header;
use crate::streams::context::TaskContext;
use crate::streams::node::{Child, Data, Downstream, Node};
use crate::streams::processor::{PunctuationType, Schedule};
use crate::streams::store::{StateStore, StoreBuilder};

/// A topic as a source or sink names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TopicRef {
    pub(crate) name: String,
    /// Internal topics get the application id as prefix when the application runs.
    pub(crate) internal: bool,
}

impl TopicRef {
    pub(crate) fn user(name: &str) -> Self {
        TopicRef {
            name: name.to_owned(),
            internal: false,
        }
    }

    pub(crate) fn internal(name: String) -> Self {
        TopicRef {
            name,
            internal: true,
        }
    }

    pub(crate) fn resolve(&self, application_id: &str) -> String {
        if self.internal {
            format!("{application_id}-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// A record as it comes from a source topic.
pub(crate) struct RawRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<Header>,
}

/// A source node: decodes raw records and forwards them typed.
pub(crate) trait SourceNode: Send {
    fn process_raw(&mut self, ctx: &mut TaskContext, record: RawRecord) -> Result<()>;
}

/// Makes a task's instance of a processor or sink node; returns `Box<dyn Node<K, V>>` in an
/// `Any` (the DSL knows the types, the graph does not).
pub(crate) type NodeFactory =
    Arc<dyn Fn(&mut Instantiator<'_>, usize) -> Result<Box<dyn Any + Send>> + Send + Sync>;

/// Makes a task's instance of a source node.
pub(crate) type SourceFactory =
    Arc<dyn Fn(&mut Instantiator<'_>, usize) -> Result<Box<dyn SourceNode>> + Send + Sync>;

pub(crate) enum NodeKind {
    Source {
        topics: Vec<TopicRef>,
        factory: SourceFactory,
    },
    Processor {
        factory: NodeFactory,
    },
    Sink {
        topic: TopicRef,
        factory: NodeFactory,
    },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) parents: Vec<usize>,
    pub(crate) kind: NodeKind,
    /// Stores the node reads or writes.
    pub(crate) stores: Vec<String>,
}

/// What the DSL accumulates.
#[derive(Default)]
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreBuilder>,
    /// Groups of source topics that must have the same partition count (joins).
    pub(crate) copartition: Vec<BTreeSet<TopicRef>>,
    /// Repartition topics (names without the application id), with a partition count when
    /// the user fixed one (else: the most partitions among the upstream source topics).
    pub(crate) repartition_topics: BTreeMap<String, Option<u32>>,
    /// First problem found while building; reported by `build`.
    pub(crate) errors: Vec<String>,
    counter: usize,
}

impl GraphBuilder {
    /// Kafka-style generated names: `KSTREAM-FILTER-0000000003`.
    pub(crate) fn name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}-{:010}", self.counter);
        self.counter += 1;
        name
    }

    pub(crate) fn add(
        &mut self,
        name: String,
        parents: Vec<usize>,
        kind: NodeKind,
        stores: Vec<String>,
    ) -> usize {
        if self.nodes.iter().any(|n| n.name == name) {
            self.errors.push(format!(
                "two nodes are named `{name}`; names must be unique"
            ));
        }
        self.nodes.push(NodeDef {
            name,
            parents,
            kind,
            stores,
        });
        self.nodes.len() - 1
    }

    pub(crate) fn add_store(&mut self, store: StoreBuilder) {
        if self.stores.contains_key(&store.name) {
            self.errors.push(format!(
                "two state stores are named `{}`; names must be unique",
                store.name
            ));
            return;
        }
        self.stores.insert(store.name.clone(), store);
    }

    /// The source topics feeding node `id` (following parents to the sources).
    pub(crate) fn source_topics_of(&self, id: usize) -> BTreeSet<TopicRef> {
        let mut topics = BTreeSet::new();
        let mut stack = vec![id];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            let node = &self.nodes[n];
            if let NodeKind::Source { topics: t, .. } = &node.kind {
                topics.extend(t.iter().cloned());
            }
            stack.extend(node.parents.iter().copied());
        }
        topics
    }
}

/// One connected part of a topology: what a task runs.
#[derive(Debug, Clone)]
pub(crate) struct Subtopology {
    pub(crate) id: u32,
    pub(crate) nodes: Vec<usize>,
    pub(crate) sources: BTreeSet<TopicRef>,
    pub(crate) sinks: BTreeSet<TopicRef>,
    pub(crate) stores: BTreeSet<String>,
}

/// A checked topology, ready to run with [`Streams`](crate::Streams) or the
/// [`TopologyTestDriver`](crate::TopologyTestDriver). Cheap to clone (shared).
/// Its `Display` describes it as Kafka's `Topology.describe()` does.
#[derive(Clone)]
pub struct Topology {
    pub(crate) inner: Arc<TopologyInner>,
}

pub(crate) struct TopologyInner {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) children: Vec<Vec<usize>>,
    pub(crate) stores: BTreeMap<String, StoreBuilder>,
    pub(crate) subtopologies: Vec<Subtopology>,
    pub(crate) copartition: Vec<BTreeSet<TopicRef>>,
    pub(crate) repartition_topics: BTreeMap<String, Option<u32>>,
}

impl Topology {
    pub(crate) fn build(graph: GraphBuilder) -> Result<Topology> {
        if let Some(problem) = graph.errors.first() {
            return Err(Error::InvalidTopology(problem.clone()));
        }
        if graph.nodes.is_empty() {
            return Err(Error::InvalidTopology(
                "the topology has no source: read a topic with StreamsBuilder::stream or table"
                    .into(),
            ));
        }
        let mut children = vec![Vec::new(); graph.nodes.len()];
        for (id, node) in graph.nodes.iter().enumerate() {
            for &parent in &node.parents {
                children[parent].push(id);
            }
            for store in &node.stores {
                if !graph.stores.contains_key(store) {
                    return Err(Error::InvalidTopology(format!(
                        "node `{}` uses state store `{store}`, which was not added to the topology",
                        node.name
                    )));
                }
            }
        }
        let subtopologies = split(&graph.nodes);
        for s in &subtopologies {
            if s.sources.is_empty() {
                return Err(Error::InvalidTopology(format!(
                    "sub-topology {} has no source topic",
                    s.id
                )));
            }
        }
        // A topic read by two source nodes: Kafka refuses it ("already registered by another
        // source"); each record would reach only one of them.
        let mut sourced: BTreeSet<&TopicRef> = BTreeSet::new();
        for node in &graph.nodes {
            if let NodeKind::Source { topics, .. } = &node.kind {
                for topic in topics {
                    if !sourced.insert(topic) {
                        return Err(Error::InvalidTopology(format!(
                            "topic `{}` is read by two sources; read it once and reuse the stream",
                            topic.name
                        )));
                    }
                }
            }
        }
        check_cycles(&subtopologies)?;
        Ok(Topology {
            inner: Arc::new(TopologyInner {
                nodes: graph.nodes,
                children,
                stores: graph.stores,
                subtopologies,
                copartition: graph.copartition,
                repartition_topics: graph.repartition_topics,
            }),
        })
    }

    /// Source topics (user topics; internal ones excluded) of the whole topology.
    pub fn source_topics(&self) -> Vec<String> {
        self.inner
            .subtopologies
            .iter()
            .flat_map(|s| s.sources.iter())
            .filter(|t| !t.internal)
            .map(|t| t.name.clone())
            .collect()
    }

    /// Number of sub-topologies.
    pub fn subtopology_count(&self) -> usize {
        self.inner.subtopologies.len()
    }
}

/// Root of `x` in a union-find forest (with path halving).
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Splits the nodes into sub-topologies: union-find over edges and shared stores, numbered in
/// the order of their first node.
fn split(nodes: &[NodeDef]) -> Vec<Subtopology> {
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    };
    let mut store_user: HashMap<&str, usize> = HashMap::new();
    for (id, node) in nodes.iter().enumerate() {
        for &p in &node.parents {
            union(&mut parent, id, p);
        }
        for store in &node.stores {
            if let Some(&other) = store_user.get(store.as_str()) {
                union(&mut parent, id, other);
            } else {
                store_user.insert(store, id);
            }
        }
    }
    let mut roots: BTreeMap<usize, u32> = BTreeMap::new();
    let mut subtopologies: Vec<Subtopology> = Vec::new();
    for (id, node) in nodes.iter().enumerate() {
        let root = find(&mut parent, id);
        let next = roots.len() as u32;
        let sub = *roots.entry(root).or_insert(next);
        if sub as usize == subtopologies.len() {
            subtopologies.push(Subtopology {
                id: sub,
                nodes: Vec::new(),
                sources: BTreeSet::new(),
                sinks: BTreeSet::new(),
                stores: BTreeSet::new(),
            });
        }
        let s = &mut subtopologies[sub as usize];
        s.nodes.push(id);
        s.stores.extend(node.stores.iter().cloned());
        match &node.kind {
            NodeKind::Source { topics, .. } => s.sources.extend(topics.iter().cloned()),
            NodeKind::Sink { topic, .. } => {
                s.sinks.insert(topic.clone());
            }
            NodeKind::Processor { .. } => {}
        }
    }
    subtopologies
}

/// Depth-first search with colours (0 new, 1 on the path, 2 done); returns the topics along
/// the first cycle found.
fn visit(
    v: usize,
    edges: &[Vec<(usize, String)>],
    colour: &mut [u8],
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    colour[v] = 1;
    for (w, topic) in &edges[v] {
        path.push(topic.clone());
        if colour[*w] == 1 {
            return Some(path.clone());
        }
        if colour[*w] == 0 {
            if let Some(cycle) = visit(*w, edges, colour, path) {
                return Some(cycle);
            }
        }
        path.pop();
    }
    colour[v] = 2;
    None
}

/// Refuses a cycle between sub-topologies through topics (a writes what b reads, ..., back to a).
fn check_cycles(subtopologies: &[Subtopology]) -> Result<()> {
    let n = subtopologies.len();
    let mut edges = vec![Vec::new(); n];
    for a in subtopologies {
        for b in subtopologies {
            if let Some(topic) = a.sinks.intersection(&b.sources).next() {
                edges[a.id as usize].push((b.id as usize, topic.name.clone()));
            }
        }
    }
    let mut colour = vec![0u8; n];
    let mut path: Vec<String> = Vec::new();
    for v in 0..n {
        if colour[v] == 0 {
            if let Some(cycle) = visit(v, &edges, &mut colour, &mut path) {
                return Err(Error::InvalidTopology(format!(
                    "records would go round in a cycle through the topics {}",
                    cycle
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                )));
            }
        }
    }
    Ok(())
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        let inner = &self.inner;
        for s in &inner.subtopologies {
            writeln!(f, "   Sub-topology: {}", s.id)?;
            for &id in &s.nodes {
                let node = &inner.nodes[id];
                let kind = match &node.kind {
                    NodeKind::Source { topics, .. } => format!(
                        "Source: {} (topics: [{}])",
                        node.name,
                        topics
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    NodeKind::Processor { .. } => format!(
                        "Processor: {} (stores: [{}])",
                        node.name,
                        node.stores.join(", ")
                    ),
                    NodeKind::Sink { topic, .. } => {
                        format!("Sink: {} (topic: {})", node.name, topic.name)
                    }
                };
                writeln!(f, "    {kind}")?;
                let names: Vec<&str> = inner.children[id]
                    .iter()
                    .map(|&c| inner.nodes[c].name.as_str())
                    .collect();
                if !names.is_empty() {
                    writeln!(f, "      --> {}", names.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A punctuation of one node instance.
pub(crate) struct Punctuator {
    pub(crate) node: Arc<parking_lot::Mutex<dyn Punctuate>>,
    pub(crate) schedule: Schedule,
    /// Next time it fires; `None` until stream time is first known.
    pub(crate) next: Option<i64>,
}

/// A node that holds records back and forwards them when flushed (a record cache).
pub(crate) trait Flush: Send {
    fn flush(&mut self, ctx: &mut TaskContext) -> Result<()>;
}

/// A node that can be punctuated.
pub(crate) trait Punctuate: Send {
    fn punctuate(
        &mut self,
        ctx: &mut TaskContext,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<()>;
}

/// Builds the nodes of one task.
pub(crate) struct Instantiator<'a> {
    pub(crate) topology: &'a TopologyInner,
    pub(crate) ctx: &'a mut TaskContext,
    pub(crate) punctuators: Vec<Punctuator>,
    /// Caching nodes, children before parents (children are made first).
    pub(crate) flushers: Vec<Arc<parking_lot::Mutex<dyn Flush>>>,
    /// Shared instances of nodes with several parents.
    shared: HashMap<usize, Box<dyn Any + Send>>,
    /// Stores created, in creation order (also in `ctx.stores`).
    pub(crate) stores: Vec<Arc<dyn StateStore>>,
}

impl<'a> Instantiator<'a> {
    pub(crate) fn new(topology: &'a TopologyInner, ctx: &'a mut TaskContext) -> Self {
        Instantiator {
            topology,
            ctx,
            punctuators: Vec::new(),
            flushers: Vec::new(),
            shared: HashMap::new(),
            stores: Vec::new(),
        }
    }

    /// Instantiates the sources of sub-topology `sub` with everything downstream of them; each
    /// with the resolved names of the topics it reads.
    #[allow(clippy::type_complexity)]
    pub(crate) fn sources(&mut self, sub: u32) -> Result<Vec<(Vec<String>, Box<dyn SourceNode>)>> {
        let topology = self.topology;
        let application_id = Arc::clone(&self.ctx.application_id);
        let mut sources = Vec::new();
        for &id in &topology.subtopologies[sub as usize].nodes {
            if let NodeKind::Source { topics, factory } = &topology.nodes[id].kind {
                let node = factory(self, id)?;
                let names = topics.iter().map(|t| t.resolve(&application_id)).collect();
                sources.push((names, node));
            }
        }
        // Stores no node has touched yet (a processor that fetches its store lazily).
        let stores: Vec<String> = topology.subtopologies[sub as usize]
            .stores
            .iter()
            .cloned()
            .collect();
        for store in stores {
            self.store_any(&store)?;
        }
        Ok(sources)
    }

    /// The children of node `id`, as its downstream.
    pub(crate) fn downstream<K: Data, V: Data>(&mut self, id: usize) -> Result<Downstream<K, V>> {
        let topology = self.topology;
        let mut children = Vec::new();
        for &child in &topology.children[id] {
            children.push(self.child::<K, V>(child)?);
        }
        Ok(Downstream::new(children))
    }

    fn child<K: Data, V: Data>(&mut self, id: usize) -> Result<Child<K, V>> {
        let topology = self.topology;
        let node = &topology.nodes[id];
        let factory = match &node.kind {
            NodeKind::Processor { factory } | NodeKind::Sink { factory, .. } => factory,
            NodeKind::Source { .. } => {
                return Err(Error::InvalidTopology(format!(
                    "source node `{}` cannot have a parent",
                    node.name
                )))
            }
        };
        let wrong_type = || {
            Error::InvalidTopology(format!(
                "node `{}` receives records of another type than its parent forwards",
                node.name
            ))
        };
        if node.parents.len() <= 1 {
            let made = factory(self, id)?;
            return made
                .downcast::<Box<dyn Node<K, V>>>()
                .map(|node| Child::Owned(*node))
                .map_err(|_| wrong_type());
        }
        if !self.shared.contains_key(&id) {
            let made = factory(self, id)?
                .downcast::<Box<dyn Node<K, V>>>()
                .map_err(|_| wrong_type())?;
            let shared = Arc::new(parking_lot::Mutex::new(*made));
            self.shared.insert(id, Box::new(shared));
        }
        self.shared
            .get(&id)
            .and_then(|any| any.downcast_ref::<Arc<parking_lot::Mutex<Box<dyn Node<K, V>>>>>())
            .map(|shared| Child::Shared(Arc::clone(shared)))
            .ok_or_else(wrong_type)
    }

    /// The task's instance of store `name`, made on first use.
    pub(crate) fn store_any(&mut self, name: &str) -> Result<Arc<dyn StateStore>> {
        if let Some(store) = self.ctx.stores.get(name) {
            return Ok(Arc::clone(store));
        }
        let def = self
            .topology
            .stores
            .get(name)
            .ok_or_else(|| Error::InvalidTopology(format!("no state store named `{name}`")))?;
        let store = (def.factory)(name, def.logged);
        self.ctx.stores.insert(Arc::from(name), Arc::clone(&store));
        self.stores.push(Arc::clone(&store));
        Ok(store)
    }

    /// The task's instance of store `name` as its concrete type.
    pub(crate) fn store<S: StateStore>(&mut self, name: &str) -> Result<Arc<S>> {
        self.store_any(name)?;
        self.ctx.store::<S>(name)
    }
}
