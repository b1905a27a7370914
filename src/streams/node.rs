//! The processing graph of one task, as it runs: typed nodes that pass records downstream.
//!
//! A task owns one instance of each node of its sub-topology. A node receives a
//! [`StreamRecord<K, V>`] and forwards zero or more records of its own output types to its
//! children. A node with one parent is owned by it (a plain `Box`, no lock); a node with
//! several parents (after `merge`, or one input of a join fed by both sides) is shared
//! through an `Arc<Mutex<_>>` and instantiated once, so its state is one.
//!
//! Invariant: the graph of a task is acyclic (the DSL only adds children to existing nodes;
//! cycles through topics are refused when the topology is built), so a shared node's lock is
//! never taken twice on one call path.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::streams::context::TaskContext;
use crate::streams::processor::StreamRecord;

/// Key and value types that can flow through a topology.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// One processing step of a task.
pub(crate) trait Node<K, V>: Send {
    /// Processes one record; forwards through the downstream it holds.
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()>;
}

/// A child as its parent holds it.
pub(crate) enum Child<K, V> {
    Owned(Box<dyn Node<K, V>>),
    Shared(Arc<Mutex<Box<dyn Node<K, V>>>>),
}

impl<K, V> Child<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        match self {
            Child::Owned(node) => node.process(ctx, record),
            Child::Shared(node) => node.lock().process(ctx, record),
        }
    }
}

/// The children of a node: a record forwarded reaches each of them, in the order they were
/// added to the topology.
pub(crate) struct Downstream<K, V> {
    children: Vec<Child<K, V>>,
}

impl<K: Data, V: Data> Downstream<K, V> {
    pub(crate) fn new(children: Vec<Child<K, V>>) -> Self {
        Downstream { children }
    }

    /// Sends `record` to every child (clones for all but the last).
    pub(crate) fn forward(
        &mut self,
        ctx: &mut TaskContext,
        record: StreamRecord<K, V>,
    ) -> Result<()> {
        match self.children.split_last_mut() {
            None => Ok(()),
            Some((last, rest)) => {
                for child in rest {
                    child.process(ctx, record.clone())?;
                }
                last.process(ctx, record)
            }
        }
    }

    /// Sends `record` to the child at `index` only (named branches of the Processor API).
    pub(crate) fn forward_to(
        &mut self,
        index: usize,
        ctx: &mut TaskContext,
        record: StreamRecord<K, V>,
    ) -> Result<()> {
        match self.children.get_mut(index) {
            Some(child) => child.process(ctx, record),
            None => Ok(()),
        }
    }
}

/// A node made from a closure: stateless operators are one line each.
pub(crate) struct FnNode<K, V, F> {
    pub(crate) f: F,
    pub(crate) _types: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V, F> Node<K, V> for FnNode<K, V, F>
where
    F: FnMut(&mut TaskContext, StreamRecord<K, V>) -> Result<()> + Send,
{
    fn process(&mut self, ctx: &mut TaskContext, record: StreamRecord<K, V>) -> Result<()> {
        (self.f)(ctx, record)
    }
}

/// Boxes a closure as a node.
pub(crate) fn fn_node<K: 'static, V: 'static>(
    f: impl FnMut(&mut TaskContext, StreamRecord<K, V>) -> Result<()> + Send + 'static,
) -> Box<dyn Node<K, V>> {
    Box::new(FnNode {
        f,
        _types: std::marker::PhantomData,
    })
}
