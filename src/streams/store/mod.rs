//! State stores: the memory of stateful operators, kept across restarts.
//!
//! A store lives in memory, in one instance per task. Every change is also written to the
//! store's **changelog**, a compacted topic `<application id>-<store>-changelog` with one
//! partition per task, so that the store can be rebuilt anywhere. To avoid replaying the
//! whole changelog on every start, a task writes a **snapshot** of its store to the state
//! directory now and then; restoring is "load the snapshot, then replay the changelog from the
//! offset the snapshot names to the end". See [`snapshot`] for the file and its invariants.
//!
//! Changes are written to the changelog per key, not per update: a store remembers which keys
//! changed since the last flush and, at the next flush (every commit, or when that set gets
//! large), writes each such key's current value or a tombstone. So a key updated a thousand
//! times between two commits costs one changelog record (Kafka's record cache does the same).

pub(crate) mod kv;
pub(crate) mod session;
pub(crate) mod snapshot;
pub(crate) mod window;

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::streams::codec::{codec_ref, Codec, CodecRef};
use crate::streams::node::Data;

pub use self::kv::{KeyValueStore, ReadOnlyKeyValueStore};

/// A store as its task sees it, whatever its kind and types: what the changelog, snapshots and
/// restoration need. Keys and values here are the changelog's bytes.
pub(crate) trait StateStore: Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &str;
    /// Whether the store writes a changelog.
    fn logged(&self) -> bool;
    /// For typed access (`Arc::downcast`).
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// How many keys changed since the last [`take_changes`](Self::take_changes) (an upper bound).
    fn pending_changes(&self) -> usize;
    /// Moves the changes since the last call into `out` as changelog records (key, value or
    /// `None` for a deletion), one per changed key.
    fn take_changes(&self, out: &mut Vec<(Bytes, Option<Bytes>)>);
    /// Applies one changelog record (restoration); does not count as a change.
    fn restore(&self, key: Bytes, value: Option<Bytes>) -> Result<()>;
    /// Applies a snapshot's entries (distinct keys, in the order the snapshot lists them); a
    /// store may build its map in one go instead of entry by entry.
    fn load_entries(&self, entries: Vec<(Bytes, Bytes)>) -> Result<()> {
        for (key, value) in entries {
            self.restore(key, Some(value))?;
        }
        Ok(())
    }
    /// Calls `f` with every entry in changelog form (for a snapshot).
    #[allow(clippy::type_complexity)]
    fn for_each_entry(&self, f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()>;
    /// Number of entries.
    fn len(&self) -> usize;
}

/// The local instances of store `name` (an interactive query's view) as their concrete type
/// `S`; an error if they are of another kind or other key and value types.
pub(crate) fn instances_as<S: StateStore>(
    stores: &[Arc<dyn StateStore>],
    name: &str,
) -> Result<Vec<Arc<S>>> {
    stores
        .iter()
        .map(|store| {
            Arc::clone(store).as_any().downcast::<S>().map_err(|_| {
                crate::Error::InvalidArgument(format!(
                    "state store `{name}` is not a store of the requested kind and types"
                ))
            })
        })
        .collect()
}

/// Kinds of stores a topology can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// Key-value.
    KeyValue,
    /// Windowed (time windows and sliding windows).
    Window,
    /// Session windows.
    Session,
}

/// Makes a task's instance of a store.
pub(crate) type StoreFactory = Arc<dyn Fn(&str, bool) -> Arc<dyn StateStore> + Send + Sync>;

/// A store to add to a topology for processors of your own
/// ([`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)), Kafka's
/// `StoreBuilder`. Logged (backed by a changelog topic) unless
/// [`with_logging_disabled`](Self::with_logging_disabled).
#[derive(Clone)]
pub struct StoreBuilder {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) logged: bool,
    pub(crate) factory: StoreFactory,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("name", &self.name)
            .field("logged", &self.logged)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// A key-value store called `name`, keys and values encoded with the given codecs (in the
    /// changelog, the snapshot, and for ordering: entries are sorted by their encoded key).
    pub fn key_value<K: Data, V: Data>(
        name: impl Into<String>,
        keys: impl Codec<K> + 'static,
        values: impl Codec<V> + 'static,
    ) -> StoreBuilder {
        Self::key_value_with(name.into(), codec_ref(keys), codec_ref(values))
    }

    pub(crate) fn key_value_with<K: Data, V: Data>(
        name: String,
        keys: CodecRef<K>,
        values: CodecRef<V>,
    ) -> StoreBuilder {
        StoreBuilder {
            name,
            kind: StoreKind::KeyValue,
            logged: true,
            factory: Arc::new(move |name, logged| {
                Arc::new(kv::KvStore::new(
                    name,
                    logged,
                    Arc::clone(&keys),
                    Arc::clone(&values),
                ))
            }),
        }
    }

    /// No changelog: the store starts empty after every restart or move to another thread.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logged = false;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
