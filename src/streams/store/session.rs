//! The session store: one value per (key, session), in memory, ordered by key, then session
//! end, then start, with sessions older than the store's retention dropped (Kafka's in-memory
//! `SessionStore`).
//!
//! # Changelog records
//!
//! The changelog key is Kafka's `SessionKeySchema` key:
//!
//! ```text
//! key:   | key bytes (n) | session end (i64 BE, 8) | session start (i64 BE, 8) |
//! value: | aggregate bytes |
//! ```
//!
//! # Invariants
//!
//! 1. `entries` and `by_end` hold the same (key, end, start) triples.
//! 2. `observed` is the largest session end ever put or restored; sessions with
//!    `end < observed - retention` are removed at the next put, with a changelog tombstone
//!    when logged, and are invisible to reads before that.
//! 3. Every (key, end, start) changed since the last flush is in `dirty`.

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

/// (key bytes, session end, session start).
type SessionKey = (Bytes, i64, i64);

#[derive(Default)]
struct SessionData {
    entries: BTreeMap<SessionKey, Bytes>,
    by_end: BTreeSet<(i64, Bytes, i64)>,
    dirty: Vec<SessionKey>,
    observed: Option<i64>,
}

impl SessionData {
    fn insert(&mut self, key: SessionKey, value: Bytes) {
        self.by_end.insert((key.1, key.0.clone(), key.2));
        self.entries.insert(key, value);
    }

    fn remove(&mut self, key: &SessionKey) -> bool {
        let removed = self.entries.remove(key).is_some();
        if removed {
            self.by_end.remove(&(key.1, key.0.clone(), key.2));
        }
        removed
    }

    fn horizon(&self, retention_ms: i64) -> i64 {
        self.observed
            .map_or(i64::MIN, |o| o.saturating_sub(retention_ms))
    }
}

fn changelog_key(key: &[u8], end: i64, start: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 16);
    buf.put_slice(key);
    buf.put_i64(end);
    buf.put_i64(start);
    buf.freeze()
}

/// A task's session store.
pub(crate) struct SessStore<K, V> {
    name: String,
    logged: bool,
    retention_ms: i64,
    keys: CodecRef<K>,
    values: CodecRef<V>,
    data: RwLock<SessionData>,
}

/// A session as the aggregation sees it: encoded key, window, value.
pub(crate) type Session<V> = (Bytes, Window, V);

impl<K: Data, V: Data> SessStore<K, V> {
    pub(crate) fn new(
        name: &str,
        logged: bool,
        retention_ms: i64,
        keys: CodecRef<K>,
        values: CodecRef<V>,
    ) -> Self {
        SessStore {
            name: name.to_owned(),
            logged,
            retention_ms,
            keys,
            values,
            data: RwLock::new(SessionData::default()),
        }
    }

    pub(crate) fn encode_key(&self, key: &K) -> Result<Bytes> {
        Ok(self.keys.encode(key)?)
    }

    pub(crate) fn decode_key(&self, key: &Bytes) -> Result<K> {
        Ok(self.keys.decode(key)?)
    }

    /// Sessions of encoded `key` with `end >= earliest_end` and `start <= latest_start`,
    /// ordered by end.
    pub(crate) fn find_raw(
        &self,
        key: &Bytes,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<Session<V>>> {
        let data = self.data.read();
        let from = earliest_end.max(data.horizon(self.retention_ms));
        let found: Vec<(Window, Bytes)> = data
            .entries
            .range((key.clone(), from, i64::MIN)..=(key.clone(), i64::MAX, i64::MAX))
            .filter(|((_, _, start), _)| *start <= latest_start)
            .map(|((_, end, start), v)| (Window::new(*start, *end), v.clone()))
            .collect();
        drop(data);
        found
            .into_iter()
            .map(|(w, v)| Ok((key.clone(), w, self.values.decode(&v)?)))
            .collect()
    }

    /// Sessions of every key with `from <= end <= to`, ordered by end, then key bytes.
    pub(crate) fn by_end_raw(&self, from: i64, to: i64) -> Result<Vec<Session<V>>> {
        let data = self.data.read();
        let from = from.max(data.horizon(self.retention_ms));
        if from > to {
            return Ok(Vec::new());
        }
        let found: Vec<(Bytes, Window, Bytes)> = data
            .by_end
            .range((from, Bytes::new(), i64::MIN)..)
            .take_while(|(end, _, _)| *end <= to)
            .filter_map(|(end, key, start)| {
                let v = data.entries.get(&(key.clone(), *end, *start))?;
                Some((key.clone(), Window::new(*start, *end), v.clone()))
            })
            .collect();
        drop(data);
        found
            .into_iter()
            .map(|(k, w, v)| Ok((k, w, self.values.decode(&v)?)))
            .collect()
    }

    pub(crate) fn put_raw(&self, key: Bytes, window: Window, value: &V) -> Result<()> {
        let value = self.values.encode(value)?;
        let mut data = self.data.write();
        data.observed = Some(data.observed.map_or(window.end, |o| o.max(window.end)));
        let horizon = data.horizon(self.retention_ms);
        if window.end < horizon {
            return Ok(());
        }
        let entry = (key, window.end, window.start);
        if self.logged {
            data.dirty.push(entry.clone());
        }
        data.insert(entry, value);
        while let Some((end, _, _)) = data.by_end.first() {
            if *end >= horizon {
                break;
            }
            let Some((end, key, start)) = data.by_end.pop_first() else {
                break;
            };
            let entry = (key, end, start);
            data.entries.remove(&entry);
            if self.logged {
                data.dirty.push(entry);
            }
        }
        Ok(())
    }

    pub(crate) fn remove_raw(&self, key: Bytes, window: Window) {
        let mut data = self.data.write();
        let entry = (key, window.end, window.start);
        if data.remove(&entry) && self.logged {
            data.dirty.push(entry);
        }
    }

    /// The value of exactly this session.
    pub(crate) fn get_raw(&self, key: Bytes, window: Window) -> Result<Option<V>> {
        let data = self.data.read();
        if window.end < data.horizon(self.retention_ms) {
            return Ok(None);
        }
        let found = data.entries.get(&(key, window.end, window.start)).cloned();
        drop(data);
        Ok(found.map(|v| self.values.decode(&v)).transpose()?)
    }
}

impl<K: Data, V: Data> StateStore for SessStore<K, V> {
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
        if key.len() < 16 {
            return Err(Error::StreamsFailed(format!(
                "session store `{}`: a changelog key of {} bytes is too short (key, 8-byte end \
                 and 8-byte start expected); is the changelog another store's?",
                self.name,
                key.len()
            )));
        }
        let at = key.len() - 16;
        let mut end = [0u8; 8];
        end.copy_from_slice(&key[at..at + 8]);
        let mut start = [0u8; 8];
        start.copy_from_slice(&key[at + 8..]);
        let entry = (
            key.slice(..at),
            i64::from_be_bytes(end),
            i64::from_be_bytes(start),
        );
        let mut data = self.data.write();
        data.observed = Some(data.observed.map_or(entry.1, |o| o.max(entry.1)));
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
        for ((key, end, start), value) in &data.entries {
            f(&changelog_key(key, *end, *start), value)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.data.read().entries.len()
    }
}

/// A session store for reading and writing (Kafka's `SessionStore<K, V>`): one value per key
/// and session window. Cloning gives another handle on the same store.
pub struct SessionStore<K, V> {
    inner: Arc<SessStore<K, V>>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        SessionStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Data, V: Data> SessionStore<K, V> {
    pub(crate) fn from_inner(inner: Arc<SessStore<K, V>>) -> Self {
        SessionStore { inner }
    }

    fn typed(&self, sessions: Vec<Session<V>>) -> Result<Vec<(Windowed<K>, V)>> {
        sessions
            .into_iter()
            .map(|(k, w, v)| Ok((Windowed::new(self.inner.decode_key(&k)?, w), v)))
            .collect()
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Every session of `key`, ordered by end.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Windowed<K>, V)>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// Sessions of `key` that end at or after `earliest_end` and start at or before
    /// `latest_start` (Kafka's `findSessions`).
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(Windowed<K>, V)>> {
        let key = self.inner.encode_key(key)?;
        let found = self.inner.find_raw(&key, earliest_end, latest_start)?;
        self.typed(found)
    }

    /// The value of exactly this session.
    pub fn fetch_session(&self, session: &Windowed<K>) -> Result<Option<V>> {
        let key = self.inner.encode_key(&session.key)?;
        self.inner.get_raw(key, session.window)
    }

    /// Every session of every key, ordered by end, then encoded key.
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        let found = self.inner.by_end_raw(i64::MIN, i64::MAX)?;
        self.typed(found)
    }

    /// Sets the value of a session.
    pub fn put(&self, session: &Windowed<K>, value: &V) -> Result<()> {
        let key = self.inner.encode_key(&session.key)?;
        self.inner.put_raw(key, session.window, value)
    }

    /// Removes a session.
    pub fn remove(&self, session: &Windowed<K>) -> Result<()> {
        let key = self.inner.encode_key(&session.key)?;
        self.inner.remove_raw(key, session.window);
        Ok(())
    }
}

/// Read-only access to a session store of a running application, across this instance's tasks
/// (Kafka's `ReadOnlySessionStore`, for interactive queries).
pub struct ReadOnlySessionStore<K, V> {
    pub(crate) name: String,
    pub(crate) stores: Arc<dyn Fn() -> Vec<Arc<dyn StateStore>> + Send + Sync>,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> ReadOnlySessionStore<K, V> {
    /// Every session of `key` in whichever local tasks hold it.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Windowed<K>, V)>> {
        let mut all = Vec::new();
        for store in instances_as::<SessStore<K, V>>(&(self.stores)(), &self.name)? {
            all.extend(SessionStore::from_inner(store).fetch(key)?);
        }
        Ok(all)
    }
}

impl crate::streams::driver::TopologyTestDriver {
    /// The session store `name` of a session-windowed aggregation, with its key and value
    /// types.
    pub fn session_store<K: Data, V: Data>(&self, name: &str) -> Result<SessionStore<K, V>> {
        self.with_task_store(name, |ctx| {
            ctx.store::<SessStore<K, V>>(name)
                .map(SessionStore::from_inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{LongCodec, StringCodec};
    use crate::streams::codec::codec_ref;
    use crate::streams::store::snapshot;

    fn store() -> SessStore<String, i64> {
        SessStore::new("s", true, 50, codec_ref(StringCodec), codec_ref(LongCodec))
    }

    #[test]
    fn find_expire_snapshot() {
        let s = store();
        let h = SessionStore::from_inner(Arc::new(store()));
        let a = "a".to_string();
        h.put(&Windowed::new(a.clone(), Window::new(0, 10)), &1)
            .unwrap();
        h.put(&Windowed::new(a.clone(), Window::new(30, 40)), &2)
            .unwrap();
        assert_eq!(h.find_sessions(&a, 5, 25).unwrap().len(), 1);
        assert_eq!(h.find_sessions(&a, 5, 35).unwrap().len(), 2);
        h.remove(&Windowed::new(a.clone(), Window::new(0, 10)))
            .unwrap();
        assert_eq!(h.fetch(&a).unwrap().len(), 1);

        for i in 0..20 {
            s.put_raw(
                Bytes::from(format!("k{}", i % 3)),
                Window::new(i * 5, i * 5 + 2),
                &i,
            )
            .unwrap();
        }
        // Newest end 97: ends below 47 are gone.
        assert!(s
            .by_end_raw(i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .all(|(_, w, _)| w.end >= 47));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snapshot");
        snapshot::write(&path, &s, 3).unwrap();
        let loaded = store();
        snapshot::load(&path, &loaded).unwrap();
        assert_eq!(
            loaded.by_end_raw(i64::MIN, i64::MAX).unwrap(),
            s.by_end_raw(i64::MIN, i64::MAX).unwrap()
        );
        let mut changes = Vec::new();
        s.take_changes(&mut changes);
        assert_eq!(
            &changes[0].0[changes[0].0.len() - 16..changes[0].0.len() - 8],
            &2i64.to_be_bytes()
        );
    }
}
