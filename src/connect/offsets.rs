//! Source offsets in the internal compacted topic `__connect_offsets`, in Kafka Connect's own
//! layout (its `KafkaOffsetBackingStore` with the JSON converter):
//!
//! ```text
//! key:   ["<connector name>", <source partition as JSON>]    e.g. ["logs",{"filename":"/var/log/app"}]
//! value: <source offset as JSON>                             e.g. {"position":8812}
//!        or no value (a tombstone): the offset is forgotten
//! ```
//!
//! Invariants:
//! 1. An offset is written only after every record before it was acknowledged by its topic
//!    (the runtime flushes the producer first), and it is durable when `write` returns (the
//!    topic's durability is `Always`): a restarted source never skips a record whose offset
//!    was not stored, and repeats at most the records after the last stored offset.
//! 2. The in-memory map reflects the log up to `next`; reads catch up with the log first, so a
//!    second runtime on the same directory sees what the first one wrote.
//! 3. Keys are serialized by `serde_json` from maps that keep keys sorted, so the same source
//!    partition always has the same key bytes and compaction keeps only its newest offset.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::broker::{Broker, CONNECT_OFFSETS_TOPIC};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::storage::{CleanupPolicy, LogConfig, PartitionLog};

/// The offsets of every connector's source partitions.
pub(crate) struct OffsetStore {
    log: Arc<PartitionLog>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Key bytes (`[connector, partition]`) to the newest offset.
    offsets: HashMap<Vec<u8>, Value>,
    /// The offset of the next record of the log to read into `offsets`.
    next: u64,
}

impl OffsetStore {
    /// Opens `__connect_offsets` of `broker` (creating it: one partition, compacted, durable on
    /// every write) and reads it.
    pub fn open(broker: &Broker) -> Result<OffsetStore> {
        let topic = broker.internal_topic(
            CONNECT_OFFSETS_TOPIC,
            1,
            LogConfig::default()
                .cleanup_policy(CleanupPolicy::Compact)
                .segment_bytes(16 << 20),
        )?;
        let log = Arc::clone(&topic.partition(0)?.log);
        let store = OffsetStore {
            log,
            state: Mutex::new(State::default()),
        };
        store.catch_up(&mut store.state.lock())?;
        Ok(store)
    }

    /// The stored offset of `connector`'s source `partition`.
    pub fn get(&self, connector: &str, partition: &Value) -> Result<Option<Value>> {
        let key = key_bytes(connector, partition)?;
        let mut state = self.state.lock();
        self.catch_up(&mut state)?;
        Ok(state.offsets.get(&key).cloned())
    }

    /// Every stored (source partition, offset) of `connector`.
    pub fn all(&self, connector: &str) -> Result<Vec<(Value, Value)>> {
        let mut state = self.state.lock();
        self.catch_up(&mut state)?;
        let mut out = Vec::new();
        for (key, offset) in &state.offsets {
            if let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(key) {
                if let [Value::String(name), partition] = parts.as_slice() {
                    if name == connector {
                        out.push((partition.clone(), offset.clone()));
                    }
                }
            }
        }
        out.sort_by_key(|(p, _)| p.to_string());
        Ok(out)
    }

    /// Stores these offsets of `connector` in one batch, durably (invariant 1).
    pub fn write(&self, connector: &str, offsets: &[(Arc<Value>, Value)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(offsets.len());
        let mut keys = Vec::with_capacity(offsets.len());
        for (partition, offset) in offsets {
            let key = key_bytes(connector, partition)?;
            let value = serde_json::to_vec(offset)
                .map_err(|e| Error::InvalidArgument(format!("source offset {offset}: {e}")))?;
            records.push(Record::new(key.clone(), value));
            keys.push((key, offset.clone()));
        }
        // The lock orders writers, so the map and the log agree on which offset is newest.
        let mut state = self.state.lock();
        self.catch_up(&mut state)?;
        let appended = self.log.append(&records)?;
        self.log.flush_until(appended.last_offset + 1)?;
        for (key, offset) in keys {
            state.offsets.insert(key, offset);
        }
        state.next = appended.last_offset + 1;
        Ok(())
    }

    /// Reads the log from `state.next` to its end into the map (invariant 2).
    fn catch_up(&self, state: &mut State) -> Result<()> {
        let end = self.log.log_end_offset();
        let mut next = state.next.max(self.log.log_start_offset());
        while next < end {
            let data = self.log.read(next, 1 << 20)?;
            if data.is_empty() {
                // Compaction removed everything from `next` on; the read says where to go on.
                if data.next_offset() <= next {
                    break;
                }
                next = data.next_offset();
                continue;
            }
            let mut after = next;
            for batch in data.batches() {
                let batch = batch?;
                for record in batch.records() {
                    let record = record?;
                    if record.offset < next {
                        continue;
                    }
                    let Some(key) = record.record.key else {
                        continue;
                    };
                    match record.record.value {
                        None => {
                            state.offsets.remove(&key[..]);
                        }
                        Some(value) => {
                            // A value that is not JSON was not written by a runtime: skip it
                            // rather than refuse to start every connector.
                            if let Ok(offset) = serde_json::from_slice(&value) {
                                state.offsets.insert(key.to_vec(), offset);
                            }
                        }
                    }
                }
                after = after.max(batch.header().last_offset() + 1);
            }
            if after <= next {
                break;
            }
            next = after;
        }
        state.next = next.max(state.next);
        Ok(())
    }
}

fn key_bytes(connector: &str, partition: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::json!([connector, partition]))
        .map_err(|e| Error::InvalidArgument(format!("source partition {partition}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_reopen_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let broker = Broker::open(dir.path()).unwrap();
            let store = OffsetStore::open(&broker).unwrap();
            let p = Arc::new(json!({"filename": "/a"}));
            store
                .write("c", &[(Arc::clone(&p), json!({"position": 5}))])
                .unwrap();
            store.write("c", &[(p, json!({"position": 9}))]).unwrap();
            assert!(!broker.topics().contains(&CONNECT_OFFSETS_TOPIC.to_string()));
        }
        let broker = Broker::open(dir.path()).unwrap();
        let store = OffsetStore::open(&broker).unwrap();
        assert_eq!(
            store.get("c", &json!({"filename": "/a"})).unwrap(),
            Some(json!({"position": 9}))
        );
        assert_eq!(
            store.get("other", &json!({"filename": "/a"})).unwrap(),
            None
        );
        assert_eq!(store.all("c").unwrap().len(), 1);
        // Kafka Connect's key layout.
        let log = broker.partition(CONNECT_OFFSETS_TOPIC, 0).unwrap();
        let first = log.log().unwrap().read_records(0, 1 << 20).unwrap();
        assert_eq!(
            first[0].record.key.as_deref(),
            Some(&br#"["c",{"filename":"/a"}]"#[..])
        );
    }
}
