//! The window store: values per (key, window start), in memory, ordered by key then time, with
//! entries older than the store's retention dropped (Kafka's in-memory `WindowStore`).
//!
//! Windowed aggregations keep their windows here, and stream-stream joins keep each side's
//! recent records (with duplicates: several records of one key at one timestamp).
//!
//! # Changelog records
//!
//! The changelog key is Kafka's `WindowKeySchema` key; the value is the value's bytes (for an
//! aggregation: Kafka's `ValueAndTimestamp`, the result's timestamp then the aggregate):
//!
//! ```text
//! key:   | key bytes (n) | window start (i64 BE, 8) | sequence number (u32 BE, 4) |
//! value: | value bytes |                     (aggregations: | timestamp (i64 BE, 8) | aggregate |)
//! ```
//!
//! The sequence number is 0 unless the store keeps duplicates; then each put gets the next one.
//!
//! # Invariants
//!
//! 1. `entries` and `by_time` hold the same (key, start, seq) triples.
//! 2. `observed` is the largest start ever put or restored; entries with
//!    `start < observed - retention` are removed at the next put (and, when logged, their
//!    removal is written to the changelog as a tombstone, so the compacted changelog does not
//!    grow without bound). Readers never see them: fetches skip expired entries.
//! 3. Every (key, start, seq) changed since the last flush is in `dirty`; the flush writes its
//!    current value, or a tombstone if it is gone.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::streams::codec::CodecRef;
use crate::streams::node::Data;
use crate::streams::store::{instances_as, StateStore};
use crate::streams::window::{Window, Windowed};

/// (key bytes, window start, sequence number).
type EntryKey = (Bytes, i64, u32);

/// An entry as a fetch over all keys returns it: (key bytes, start, sequence, timestamp, value).
pub(crate) type FetchedEntry<V> = (Bytes, i64, u32, i64, V);

#[derive(Default)]
pub(crate) struct WindowData {
    entries: BTreeMap<EntryKey, Bytes>,
    by_time: BTreeSet<(i64, Bytes, u32)>,
    dirty: Vec<EntryKey>,
    observed: Option<i64>,
    next_seq: u32,
}

impl WindowData {
    fn insert(&mut self, key: EntryKey, value: Bytes) {
        self.by_time.insert((key.1, key.0.clone(), key.2));
        self.entries.insert(key, value);
    }

    fn remove(&mut self, key: &EntryKey) -> Option<Bytes> {
        let old = self.entries.remove(key);
        if old.is_some() {
            self.by_time.remove(&(key.1, key.0.clone(), key.2));
        }
        old
    }

    fn observe(&mut self, time: i64) {
        self.observed = Some(self.observed.map_or(time, |o| o.max(time)));
    }
}

/// The changelog key of an entry.
pub(crate) fn changelog_key(key: &[u8], start: i64, seq: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 12);
    buf.put_slice(key);
    buf.put_i64(start);
    buf.put_u32(seq);
    buf.freeze()
}

fn parse_changelog_key(store: &str, bytes: &Bytes) -> Result<EntryKey> {
    if bytes.len() < 12 {
        return Err(Error::StreamsFailed(format!(
            "window store `{store}`: a changelog key of {} bytes is too short (key, 8-byte \
             start and 4-byte sequence number expected); is the changelog another store's?",
            bytes.len()
        )));
    }
    let at = bytes.len() - 12;
    let mut start = [0u8; 8];
    start.copy_from_slice(&bytes[at..at + 8]);
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&bytes[at + 8..]);
    Ok((
        bytes.slice(..at),
        i64::from_be_bytes(start),
        u32::from_be_bytes(seq),
    ))
}

/// A task's window store.
pub(crate) struct WinStore<K, V> {
    name: String,
    logged: bool,
    retention_ms: i64,
    window_size_ms: i64,
    retain_duplicates: bool,
    /// Values are Kafka's `ValueAndTimestamp`: an 8-byte timestamp before the value.
    timestamped: bool,
    keys: CodecRef<K>,
    values: CodecRef<V>,
    data: RwLock<WindowData>,
}

/// How a window store is made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowStoreSpec {
    pub(crate) retention_ms: i64,
    pub(crate) window_size_ms: i64,
    pub(crate) retain_duplicates: bool,
    pub(crate) timestamped: bool,
}

impl<K: Data, V: Data> WinStore<K, V> {
    pub(crate) fn new(
        name: &str,
        logged: bool,
        spec: WindowStoreSpec,
        keys: CodecRef<K>,
        values: CodecRef<V>,
    ) -> Self {
        WinStore {
            name: name.to_owned(),
            logged,
            retention_ms: spec.retention_ms,
            window_size_ms: spec.window_size_ms,
            retain_duplicates: spec.retain_duplicates,
            timestamped: spec.timestamped,
            keys,
            values,
            data: RwLock::new(WindowData::default()),
        }
    }

    pub(crate) fn encode_key(&self, key: &K) -> Result<Bytes> {
        Ok(self.keys.encode(key)?)
    }

    pub(crate) fn decode_key(&self, key: &Bytes) -> Result<K> {
        Ok(self.keys.decode(key)?)
    }

    /// Oldest start still visible.
    fn horizon(data: &WindowData, retention_ms: i64) -> i64 {
        data.observed
            .map_or(i64::MIN, |o| o.saturating_sub(retention_ms))
    }

    fn decode_value(&self, bytes: &Bytes) -> Result<(i64, V)> {
        if self.timestamped {
            if bytes.len() < 8 {
                return Err(Error::StreamsFailed(format!(
                    "window store `{}`: a timestamped value of {} bytes has no timestamp",
                    self.name,
                    bytes.len()
                )));
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&bytes[..8]);
            Ok((
                i64::from_be_bytes(ts),
                self.values.decode(&bytes.slice(8..))?,
            ))
        } else {
            Ok((i64::MIN, self.values.decode(bytes)?))
        }
    }

    fn encode_value(&self, value: &V, timestamp: i64) -> Result<Bytes> {
        let encoded = self.values.encode(value)?;
        if !self.timestamped {
            return Ok(encoded);
        }
        let mut buf = BytesMut::with_capacity(encoded.len() + 8);
        buf.put_i64(timestamp);
        buf.put_slice(&encoded);
        Ok(buf.freeze())
    }

    /// Puts `value` for encoded `key` at window `start` (with its result `timestamp` if the
    /// store is timestamped); returns the sequence number used. Drops expired entries.
    pub(crate) fn put_raw(&self, key: Bytes, start: i64, value: &V, timestamp: i64) -> Result<u32> {
        let value = self.encode_value(value, timestamp)?;
        let mut data = self.data.write();
        let seq = if self.retain_duplicates {
            let seq = data.next_seq;
            data.next_seq = data.next_seq.wrapping_add(1);
            seq
        } else {
            0
        };
        data.observe(start);
        if start < Self::horizon(&data, self.retention_ms) {
            // Already expired: not stored (Kafka drops such puts too).
            return Ok(seq);
        }
        let entry = (key, start, seq);
        if self.logged {
            data.dirty.push(entry.clone());
        }
        data.insert(entry, value);
        self.expire(&mut data);
        Ok(seq)
    }

    /// Puts with an explicit sequence number (a store shadowing another's entries).
    pub(crate) fn put_seq(
        &self,
        key: Bytes,
        start: i64,
        seq: u32,
        value: &V,
        timestamp: i64,
    ) -> Result<()> {
        let value = self.encode_value(value, timestamp)?;
        let mut data = self.data.write();
        data.observe(start);
        if start < Self::horizon(&data, self.retention_ms) {
            return Ok(());
        }
        let entry = (key, start, seq);
        if self.logged {
            data.dirty.push(entry.clone());
        }
        data.insert(entry, value);
        self.expire(&mut data);
        Ok(())
    }

    /// Removes one entry.
    pub(crate) fn remove_raw(&self, key: Bytes, start: i64, seq: u32) {
        let mut data = self.data.write();
        let entry = (key, start, seq);
        if data.remove(&entry).is_some() && self.logged {
            data.dirty.push(entry);
        }
    }

    fn expire(&self, data: &mut WindowData) {
        let horizon = Self::horizon(data, self.retention_ms);
        while let Some(first) = data.by_time.first() {
            if first.0 >= horizon {
                break;
            }
            let Some((start, key, seq)) = data.by_time.pop_first() else {
                break;
            };
            let entry = (key, start, seq);
            data.entries.remove(&entry);
            if self.logged {
                data.dirty.push(entry);
            }
        }
    }

    /// The value (and timestamp) at exactly (`key`, `start`), sequence 0.
    pub(crate) fn get_raw(&self, key: &Bytes, start: i64) -> Result<Option<(i64, V)>> {
        let data = self.data.read();
        if start < Self::horizon(&data, self.retention_ms) {
            return Ok(None);
        }
        let found = data.entries.get(&(key.clone(), start, 0)).cloned();
        drop(data);
        found.map(|v| self.decode_value(&v)).transpose()
    }

    /// Entries of encoded `key` with `from <= start <= to`, in time order (then sequence):
    /// (start, sequence, timestamp, value).
    pub(crate) fn fetch_raw(
        &self,
        key: &Bytes,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, u32, i64, V)>> {
        let data = self.data.read();
        let from = from.max(Self::horizon(&data, self.retention_ms));
        if from > to {
            return Ok(Vec::new());
        }
        let found: Vec<(i64, u32, Bytes)> = data
            .entries
            .range((key.clone(), from, 0)..=(key.clone(), to, u32::MAX))
            .map(|((_, start, seq), v)| (*start, *seq, v.clone()))
            .collect();
        drop(data);
        found
            .into_iter()
            .map(|(start, seq, v)| {
                let (ts, value) = self.decode_value(&v)?;
                Ok((start, seq, ts, value))
            })
            .collect()
    }

    /// Entries of every key with `from <= start <= to`, ordered by start, then key bytes,
    /// then sequence: (key bytes, start, sequence, timestamp, value).
    pub(crate) fn fetch_all_raw(&self, from: i64, to: i64) -> Result<Vec<FetchedEntry<V>>> {
        let data = self.data.read();
        let from = from.max(Self::horizon(&data, self.retention_ms));
        if from > to {
            return Ok(Vec::new());
        }
        let found: Vec<(Bytes, i64, u32, Bytes)> = data
            .by_time
            .range((from, Bytes::new(), 0)..)
            .take_while(|(start, _, _)| *start <= to)
            .filter_map(|(start, key, seq)| {
                let value = data.entries.get(&(key.clone(), *start, *seq))?.clone();
                Some((key.clone(), *start, *seq, value))
            })
            .collect();
        drop(data);
        found
            .into_iter()
            .map(|(key, start, seq, v)| {
                let (ts, value) = self.decode_value(&v)?;
                Ok((key, start, seq, ts, value))
            })
            .collect()
    }

    /// The largest window start put so far.
    pub(crate) fn observed(&self) -> Option<i64> {
        self.data.read().observed
    }
}

impl<K: Data, V: Data> StateStore for WinStore<K, V> {
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
        let mut dirty = std::mem::take(&mut data.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        out.extend(dirty.into_iter().map(|entry| {
            let value = data.entries.get(&entry).cloned();
            (changelog_key(&entry.0, entry.1, entry.2), value)
        }));
    }

    fn restore(&self, key: Bytes, value: Option<Bytes>) -> Result<()> {
        let entry = parse_changelog_key(&self.name, &key)?;
        let mut data = self.data.write();
        data.observe(entry.1);
        data.next_seq = data.next_seq.max(entry.2.wrapping_add(1));
        match value {
            Some(value) => data.insert(entry, value),
            None => {
                data.remove(&entry);
            }
        }
        Ok(())
    }

    fn for_each_entry(&self, f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let data = self.data.read();
        for ((key, start, seq), value) in &data.entries {
            f(&changelog_key(key, *start, *seq), value)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.data.read().entries.len()
    }
}

/// A window store for reading and writing, as a processor or the test driver holds it (Kafka's
/// `WindowStore<K, V>`): values per key and window start. For a windowed aggregation's store,
/// the values are the aggregates. Cloning gives another handle on the same store.
pub struct WindowStore<K, V> {
    inner: Arc<WinStore<K, V>>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Data, V: Data> WindowStore<K, V> {
    pub(crate) fn from_inner(inner: Arc<WinStore<K, V>>) -> Self {
        WindowStore { inner }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Puts `value` for `key` in the window starting at `window_start` (ms). A put older than
    /// the store's retention behind the newest window is dropped.
    pub fn put(&self, key: &K, value: &V, window_start: i64) -> Result<()> {
        let key = self.inner.encode_key(key)?;
        self.inner
            .put_raw(key, window_start, value, window_start)
            .map(|_| ())
    }

    /// The value of `key` in the window starting exactly at `window_start`.
    pub fn fetch_window(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        let key = self.inner.encode_key(key)?;
        Ok(self.inner.get_raw(&key, window_start)?.map(|(_, v)| v))
    }

    /// The values of `key` in windows starting in `[time_from, time_to]`, oldest first:
    /// (window start, value).
    pub fn fetch(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(i64, V)>> {
        let key = self.inner.encode_key(key)?;
        Ok(self
            .inner
            .fetch_raw(&key, time_from, time_to)?
            .into_iter()
            .map(|(start, _, _, v)| (start, v))
            .collect())
    }

    /// Every key's values in windows starting in `[time_from, time_to]`, ordered by window
    /// start, then encoded key.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let size = self.inner.window_size_ms;
        self.inner
            .fetch_all_raw(time_from, time_to)?
            .into_iter()
            .map(|(key, start, _, _, v)| {
                let key = self.inner.decode_key(&key)?;
                Ok((
                    Windowed::new(key, Window::new(start, start.saturating_add(size))),
                    v,
                ))
            })
            .collect()
    }

    /// Every entry, ordered by window start, then encoded key.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// Number of entries (expired ones not yet dropped included).
    pub fn approximate_num_entries(&self) -> u64 {
        self.inner.len() as u64
    }
}

/// Read-only access to a window store of a running application, across all of this instance's
/// tasks (Kafka's `ReadOnlyWindowStore`, for interactive queries). Each call looks at the tasks
/// the instance owns at that moment.
pub struct ReadOnlyWindowStore<K, V> {
    pub(crate) name: String,
    pub(crate) stores: Arc<dyn Fn() -> Vec<Arc<dyn StateStore>> + Send + Sync>,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> ReadOnlyWindowStore<K, V> {
    fn instances(&self) -> Result<Vec<WindowStore<K, V>>> {
        let stores = instances_as::<WinStore<K, V>>(&(self.stores)(), &self.name)?;
        Ok(stores.into_iter().map(WindowStore::from_inner).collect())
    }

    /// The value of `key` in the window starting at `window_start`, from whichever local task
    /// holds it.
    pub fn fetch_window(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        for store in self.instances()? {
            if let Some(value) = store.fetch_window(key, window_start)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The values of `key` in windows starting in `[time_from, time_to]`.
    pub fn fetch(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(i64, V)>> {
        let mut all = Vec::new();
        for store in self.instances()? {
            all.extend(store.fetch(key, time_from, time_to)?);
        }
        Ok(all)
    }

    /// Every key's values in windows starting in `[time_from, time_to]`.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let mut all = Vec::new();
        for store in self.instances()? {
            all.extend(store.fetch_all(time_from, time_to)?);
        }
        Ok(all)
    }
}

impl crate::streams::driver::TopologyTestDriver {
    /// The window store `name` (a windowed aggregation's, a join buffer, or one added with
    /// [`StoreBuilder::window`](crate::StoreBuilder::window)), with its key and value types.
    pub fn window_store<K: Data, V: Data>(&self, name: &str) -> Result<WindowStore<K, V>> {
        self.with_task_store(name, |ctx| {
            ctx.store::<WinStore<K, V>>(name)
                .map(WindowStore::from_inner)
        })
    }
}

impl<KOut: Data, VOut: Data> crate::streams::processor::ProcessorContext<'_, KOut, VOut> {
    /// The window store `name`, connected to this processor when it was added.
    pub fn window_store<K: Data, V: Data>(&self, name: &str) -> Result<WindowStore<K, V>> {
        self.task.store(name).map(WindowStore::from_inner)
    }
}

impl crate::streams::store::StoreBuilder {
    /// A window store called `name` for processors of your own (Kafka's
    /// `Stores.windowStoreBuilder`): values per key and window start, kept for `retention`
    /// behind the newest window start; `window_size` is the size reported in
    /// [`WindowStore::fetch_all`]'s windowed keys. With `retain_duplicates`, every put is kept
    /// (as a join's buffer does) instead of replacing the value of its key and window.
    pub fn window<K: Data, V: Data>(
        name: impl Into<String>,
        keys: impl crate::streams::codec::Codec<K> + 'static,
        values: impl crate::streams::codec::Codec<V> + 'static,
        retention: std::time::Duration,
        window_size: std::time::Duration,
        retain_duplicates: bool,
    ) -> Result<crate::streams::store::StoreBuilder> {
        let spec = WindowStoreSpec {
            retention_ms: crate::streams::window::millis("a retention", retention)?,
            window_size_ms: crate::streams::window::millis("a window size", window_size)?,
            retain_duplicates,
            timestamped: false,
        };
        Ok(crate::streams::windowed::window_store_builder(
            name.into(),
            true,
            spec,
            crate::streams::codec::codec_ref(keys),
            crate::streams::codec::codec_ref(values),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{LongCodec, StringCodec};
    use crate::streams::codec::codec_ref;
    use crate::streams::store::snapshot;

    fn store(duplicates: bool) -> WinStore<String, i64> {
        WinStore::new(
            "w",
            true,
            WindowStoreSpec {
                retention_ms: 100,
                window_size_ms: 10,
                retain_duplicates: duplicates,
                timestamped: true,
            },
            codec_ref(StringCodec),
            codec_ref(LongCodec),
        )
    }

    fn contents(s: &dyn StateStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        s.for_each_entry(&mut |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        all
    }

    #[test]
    fn ordering_retention_and_changelog() {
        let s = store(false);
        let h = WindowStore::from_inner(Arc::new(store(false)));
        for (k, t) in [("b", 20), ("a", 10), ("ab", 10), ("a", 0)] {
            h.put(&k.to_string(), &t, t).unwrap();
            s.put_raw(Bytes::from(k), t, &t, t + 1).unwrap();
        }
        let keys: Vec<(String, i64)> = h
            .all()
            .unwrap()
            .into_iter()
            .map(|(w, _)| (w.key, w.window.start))
            .collect();
        assert_eq!(
            keys,
            [
                ("a".into(), 0),
                ("a".into(), 10),
                ("ab".into(), 10),
                ("b".into(), 20)
            ]
        );
        assert_eq!(
            h.fetch(&"a".to_string(), 0, 10).unwrap(),
            [(0, 0), (10, 10)]
        );
        // The changelog: one record per entry, Kafka's WindowKeySchema.
        let mut out = Vec::new();
        s.take_changes(&mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].0, changelog_key(b"a", 0, 0));
        assert_eq!(
            &out[0].0[..],
            &[b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]
        );
        assert_eq!(out[0].1.as_ref().unwrap()[..8], 1i64.to_be_bytes());
        // Entries older than retention behind the newest start are dropped, with tombstones.
        s.put_raw(Bytes::from("c"), 115, &1, 115).unwrap();
        out.clear();
        s.take_changes(&mut out);
        let tombstones = out.iter().filter(|(_, v)| v.is_none()).count();
        assert_eq!(
            tombstones, 3,
            "starts 0 and 10 (twice) are older than 115 - 100"
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn duplicates_get_sequence_numbers() {
        let s = store(true);
        let k = Bytes::from("k");
        assert_eq!(s.put_raw(k.clone(), 5, &1, 5).unwrap(), 0);
        assert_eq!(s.put_raw(k.clone(), 5, &2, 5).unwrap(), 1);
        let found = s.fetch_raw(&k, 0, 10).unwrap();
        assert_eq!(found.iter().map(|e| e.3).collect::<Vec<_>>(), [1, 2]);
        s.remove_raw(k.clone(), 5, 0);
        assert_eq!(s.fetch_raw(&k, 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn snapshot_round_trip_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.snapshot");
        let original = store(true);
        for i in 0..50i64 {
            original
                .put_raw(Bytes::from(format!("k{}", i % 7)), i * 3, &i, i * 3 + 1)
                .unwrap();
        }
        snapshot::write(&path, &original, 9).unwrap();
        let loaded = store(true);
        assert_eq!(snapshot::load(&path, &loaded).unwrap(), Some(9));
        assert_eq!(contents(&loaded), contents(&original));
        assert_eq!(loaded.observed(), original.observed());
        // The loaded store continues sequence numbers after the restored ones.
        let seq = loaded.put_raw(Bytes::from("k1"), 200, &0, 200).unwrap();
        assert!(seq >= 50);

        // Replaying the changelog gives the same content too.
        let replayed = store(true);
        let mut changes = Vec::new();
        original.take_changes(&mut changes);
        for (k, v) in changes {
            replayed.restore(k, v).unwrap();
        }
        assert_eq!(contents(&replayed), contents(&original));
        assert!(replayed
            .restore(Bytes::from_static(b"short"), None)
            .is_err());
    }
}
