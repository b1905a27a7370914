//! The key-value store: a hash map from encoded key to encoded value, in memory, with the set
//! of keys changed since the last changelog flush.
//!
//! Updates are the hot path (an aggregation reads and writes its key for every record), so
//! the map is hashed, not ordered: one hash instead of a dozen key comparisons per update.
//! Queries that promise key order (`range`, `all`) sort what they return.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::error::Result;
use crate::streams::codec::CodecRef;
use crate::streams::node::Data;
use crate::streams::store::{instances_as, StateStore};

#[derive(Default)]
struct KvData {
    map: HashMap<Bytes, Bytes>,
    /// Keys changed since the last `take_changes` (a set: its size is the number of
    /// changelog records the next flush writes).
    dirty: HashSet<Bytes>,
}

/// A task's key-value store. Readers (interactive queries) and the task's thread share it
/// through a read-write lock, taken for one operation at a time.
pub(crate) struct KvStore<K, V> {
    name: String,
    logged: bool,
    keys: CodecRef<K>,
    values: CodecRef<V>,
    data: RwLock<KvData>,
}

impl<K: Data, V: Data> KvStore<K, V> {
    pub(crate) fn new(name: &str, logged: bool, keys: CodecRef<K>, values: CodecRef<V>) -> Self {
        KvStore {
            name: name.to_owned(),
            logged,
            keys,
            values,
            data: RwLock::new(KvData::default()),
        }
    }

    fn decode_entry(&self, key: &Bytes, value: &Bytes) -> Result<(K, V)> {
        Ok((self.keys.decode(key)?, self.values.decode(value)?))
    }
}

impl<K: Data, V: Data> StateStore for KvStore<K, V> {
    fn name(&self) -> &str {
        &self.name
    }

    fn logged(&self) -> bool {
        self.logged
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn pending_changes(&self) -> usize {
        self.data.read().dirty.len()
    }

    fn take_changes(&self, out: &mut Vec<(Bytes, Option<Bytes>)>) {
        let mut data = self.data.write();
        let mut dirty: Vec<Bytes> = std::mem::take(&mut data.dirty).into_iter().collect();
        dirty.sort_unstable();
        out.extend(dirty.into_iter().map(|key| {
            let value = data.map.get(&key).cloned();
            (key, value)
        }));
    }

    fn restore(&self, key: Bytes, value: Option<Bytes>) -> Result<()> {
        let mut data = self.data.write();
        match value {
            Some(value) => data.map.insert(key, value),
            None => data.map.remove(&key),
        };
        Ok(())
    }

    fn load_entries(&self, entries: Vec<(Bytes, Bytes)>) -> Result<()> {
        let mut data = self.data.write();
        data.map.reserve(entries.len());
        data.map.extend(entries);
        Ok(())
    }

    fn for_each_entry(&self, f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let data = self.data.read();
        for (key, value) in &data.map {
            f(key, value)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.data.read().map.len()
    }
}

/// A key-value store for reading and writing, as a processor holds it (Kafka's
/// `KeyValueStore<K, V>`). Entries are ordered by their encoded key, so ranges follow the byte
/// order of the key codec (for [`StringCodec`](crate::StringCodec), the strings' order).
/// Cloning gives another handle on the same store.
pub struct KeyValueStore<K, V> {
    inner: Arc<KvStore<K, V>>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        KeyValueStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Data, V: Data> KeyValueStore<K, V> {
    pub(crate) fn from_inner(inner: Arc<KvStore<K, V>>) -> Self {
        KeyValueStore { inner }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self.inner.keys.encode(key)?;
        let value = self.inner.data.read().map.get(&key).cloned();
        value
            .map(|v| self.inner.values.decode(&v).map_err(Into::into))
            .transpose()
    }

    /// Sets the value of `key`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let key = self.inner.keys.encode(key)?;
        let value = self.inner.values.encode(value)?;
        let mut data = self.inner.data.write();
        if self.inner.logged {
            data.dirty.insert(key.clone());
        }
        data.map.insert(key, value);
        Ok(())
    }

    /// The encoded form of `key` (for callers that use it more than once).
    pub(crate) fn encode_key(&self, key: &K) -> Result<Bytes> {
        Ok(self.inner.keys.encode(key)?)
    }

    /// [`get`](Self::get) by encoded key.
    pub(crate) fn get_encoded(&self, key: &Bytes) -> Result<Option<V>> {
        let value = self.inner.data.read().map.get(key).cloned();
        value
            .map(|v| self.inner.values.decode(&v).map_err(Into::into))
            .transpose()
    }

    /// Replaces the value of an encoded key with `update(current value)` in one search of the
    /// map; returns the new value.
    pub(crate) fn update_encoded(
        &self,
        key: Bytes,
        update: impl FnOnce(Option<V>) -> V,
    ) -> Result<V> {
        use std::collections::hash_map::Entry;
        let inner = &*self.inner;
        let mut data = inner.data.write();
        let data = &mut *data;
        let next = match data.map.entry(key) {
            Entry::Occupied(mut slot) => {
                let next = update(Some(inner.values.decode(slot.get())?));
                slot.insert(inner.values.encode(&next)?);
                if inner.logged {
                    data.dirty.insert(slot.key().clone());
                }
                next
            }
            Entry::Vacant(slot) => {
                let next = update(None);
                let encoded = inner.values.encode(&next)?;
                if inner.logged {
                    data.dirty.insert(slot.key().clone());
                }
                slot.insert(encoded);
                next
            }
        };
        Ok(next)
    }

    /// Sets the value of `key` unless it has one; returns the value it had.
    pub fn put_if_absent(&self, key: &K, value: &V) -> Result<Option<V>> {
        match self.get(key)? {
            Some(old) => Ok(Some(old)),
            None => self.put(key, value).map(|()| None),
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&self, key: &K) -> Result<Option<V>> {
        let key = self.inner.keys.encode(key)?;
        let old = {
            let mut data = self.inner.data.write();
            let old = data.map.remove(&key);
            if self.inner.logged && old.is_some() {
                data.dirty.insert(key);
            }
            old
        };
        old.map(|v| self.inner.values.decode(&v).map_err(Into::into))
            .transpose()
    }

    /// Entries with `from <= key <= to` (by encoded key), in order.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let from = self.inner.keys.encode(from)?;
        let to = self.inner.keys.encode(to)?;
        if from > to {
            return Ok(Vec::new());
        }
        let mut entries: Vec<(Bytes, Bytes)> = {
            let data = self.inner.data.read();
            data.map
                .iter()
                .filter(|(k, _)| **k >= from && **k <= to)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
            .iter()
            .map(|(k, v)| self.inner.decode_entry(k, v))
            .collect()
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let mut entries: Vec<(Bytes, Bytes)> = {
            let data = self.inner.data.read();
            data.map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
            .iter()
            .map(|(k, v)| self.inner.decode_entry(k, v))
            .collect()
    }

    /// Number of entries.
    pub fn approximate_num_entries(&self) -> u64 {
        self.inner.len() as u64
    }
}

/// Read-only access to a key-value store of a running application, across all of this
/// instance's tasks (Kafka's interactive queries, `ReadOnlyKeyValueStore`). Obtained from
/// [`Streams::store`](crate::Streams::store); it follows tasks as they move between threads and
/// instances: each call looks at the tasks this instance owns at that moment.
pub struct ReadOnlyKeyValueStore<K, V> {
    pub(crate) name: String,
    pub(crate) stores: Arc<dyn Fn() -> Vec<Arc<dyn StateStore>> + Send + Sync>,
    pub(crate) _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> ReadOnlyKeyValueStore<K, V> {
    fn instances(&self) -> Result<Vec<KeyValueStore<K, V>>> {
        let stores = instances_as::<KvStore<K, V>>(&(self.stores)(), &self.name)?;
        Ok(stores.into_iter().map(KeyValueStore::from_inner).collect())
    }

    /// The value of `key` in whichever local task holds it.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        for store in self.instances()? {
            if let Some(value) = store.get(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Every entry of every local task (each task's entries in key order).
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let mut all = Vec::new();
        for store in self.instances()? {
            all.extend(store.all()?);
        }
        Ok(all)
    }

    /// Entries with `from <= key <= to` from every local task.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let mut all = Vec::new();
        for store in self.instances()? {
            all.extend(store.range(from, to)?);
        }
        Ok(all)
    }

    /// Number of entries over the local tasks.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self
            .instances()?
            .iter()
            .map(KeyValueStore::approximate_num_entries)
            .sum())
    }
}
