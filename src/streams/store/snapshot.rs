//! Store snapshots: a task's store as of a changelog offset, so that restoring replays only the
//! changelog's tail.
//!
//! One file per store, `<state dir>/<application id>/<task id>/<store>.snapshot`:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "TLSS"
//! 4       1     version (1)
//! 5       8     changelog offset (u64 BE): the snapshot holds every changelog record below it
//! 13      8     entry count n (u64 BE)
//! 21      ...   n entries: key length (u32 BE), key, value length (u32 BE), value
//!                 (key and value in the changelog's encoding)
//! end-4   4     CRC-32 (crc32fast) of every byte before it
//! ```
//!
//! Invariants:
//! 1. A snapshot is written only after the store's changes were flushed to the changelog and
//!    the producer's flush returned, so the changelog up to `changelog offset` replays to
//!    exactly the snapshot's content.
//! 2. The file is replaced atomically (temp file, fsync, rename); a reader sees the old or the
//!    new snapshot, never a mix.
//! 3. A snapshot that fails its checks, or names an offset beyond the changelog's end (the
//!    changelog was deleted and recreated), is ignored: the store is rebuilt from the whole
//!    changelog instead. A snapshot never makes a store wrong, only its restore faster.

use std::path::Path;

use bytes::Bytes;

use crate::error::{IoContext, Result};
use crate::storage::fsutil::write_atomically;
use crate::streams::store::StateStore;

const MAGIC: &[u8; 4] = b"TLSS";
const VERSION: u8 = 1;
const HEADER: usize = 21;

/// Writes `store`'s snapshot at `changelog_offset` to `path`.
pub(crate) fn write(path: &Path, store: &dyn StateStore, changelog_offset: u64) -> Result<()> {
    let mut buf = Vec::with_capacity(HEADER + store.len() * 32 + 4);
    buf.extend_from_slice(MAGIC);
    buf.push(VERSION);
    buf.extend_from_slice(&changelog_offset.to_be_bytes());
    buf.extend_from_slice(&[0; 8]);
    let mut count = 0u64;
    store.for_each_entry(&mut |key, value| {
        for part in [key, value] {
            let len = u32::try_from(part.len()).map_err(|_| {
                crate::Error::InvalidArgument("a store entry is larger than 4 GiB".into())
            })?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(part);
        }
        count += 1;
        Ok(())
    })?;
    buf[13..21].copy_from_slice(&count.to_be_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    write_atomically(path, &buf, true)
}

/// Loads the snapshot at `path` into `store` (which must be empty) and returns its changelog
/// offset; `None` when there is no usable snapshot (missing, damaged, or from another format),
/// in which case `store` is left empty.
pub(crate) fn load(path: &Path, store: &dyn StateStore) -> Result<Option<u64>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    };
    let Some((offset, entries)) = parse(&bytes) else {
        return Ok(None);
    };
    store.load_entries(entries)?;
    Ok(Some(offset))
}

/// Checks and splits a snapshot; `None` if anything is off.
fn parse(bytes: &Bytes) -> Option<(u64, Vec<(Bytes, Bytes)>)> {
    if bytes.len() < HEADER + 4 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return None;
    }
    let body_end = bytes.len() - 4;
    let stored = u32::from_be_bytes(bytes[body_end..].try_into().ok()?);
    if crc32fast::hash(&bytes[..body_end]) != stored {
        return None;
    }
    let offset = u64::from_be_bytes(bytes[5..13].try_into().ok()?);
    let count = u64::from_be_bytes(bytes[13..21].try_into().ok()?);
    let mut pos = HEADER;
    let take = |pos: &mut usize| -> Option<Bytes> {
        let len = u32::from_be_bytes(bytes.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
        let start = *pos + 4;
        let end = start.checked_add(len).filter(|&end| end <= body_end)?;
        *pos = end;
        Some(bytes.slice(start..end))
    };
    let mut entries = Vec::with_capacity(usize::try_from(count).ok()?.min(body_end / 8));
    for _ in 0..count {
        let key = take(&mut pos)?;
        let value = take(&mut pos)?;
        entries.push((key, value));
    }
    (pos == body_end).then_some((offset, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::StringCodec;
    use crate::streams::codec::codec_ref;
    use crate::streams::store::kv::KvStore;

    fn store() -> KvStore<String, String> {
        KvStore::new("s", true, codec_ref(StringCodec), codec_ref(StringCodec))
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t/s.snapshot");
        let original = store();
        for i in 0..100 {
            original
                .restore(
                    Bytes::from(format!("k{i}")),
                    Some(Bytes::from(format!("v{i}"))),
                )
                .unwrap();
        }
        write(&path, &original, 42).unwrap();
        let loaded = store();
        assert_eq!(load(&path, &loaded).unwrap(), Some(42));
        assert_eq!(loaded.len(), 100);

        // Every single-byte change and every truncation is detected.
        let good = std::fs::read(&path).unwrap();
        for cut in [0, 3, 20, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert_eq!(load(&path, &store()).unwrap(), None, "cut at {cut}");
        }
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(load(&path, &store()).unwrap(), None);
        assert_eq!(load(&dir.path().join("missing"), &store()).unwrap(), None);
    }
}
