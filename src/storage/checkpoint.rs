//! `tidelog.checkpoint`: the partition's recovery point, log start offset, cleaner position and the
//! clean-shutdown mark, in one small file replaced atomically.
//!
//! ```text
//! byte  0        4    5      6        8                16                24               32              40       44
//!       +--------+----+------+--------+----------------+-----------------+----------------+---------------+--------+
//!       | "TLCK" | v1 | flags| 0 0    | recovery point | log start offset| cleaner offset | log end offset| CRC-32 |
//!       +--------+----+------+--------+----------------+-----------------+----------------+---------------+--------+
//!       flags bit 0: closed cleanly.  Integers big-endian u64.  CRC-32 (IEEE, crc32fast) of bytes 0..40.
//! ```
//!
//! Invariants:
//! 1. Every offset below `recovery point` was fsynced before the file claiming it was written.
//! 2. The clean flag is set only by a close that fsynced the whole log and its indexes first, and
//!    is cleared (the file rewritten) when the log is opened, before anything is appended.
//! 3. A file that fails its CRC, or is missing, is treated as "unclean, recovery point 0".

use std::path::Path;

use crate::error::{IoContext, Result};

use super::fsutil;

/// The checkpoint's file name inside a partition folder.
pub(crate) const FILE_NAME: &str = "tidelog.checkpoint";
const MAGIC: &[u8; 4] = b"TLCK";
const VERSION: u8 = 1;
const LEN: usize = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Checkpoint {
    pub clean: bool,
    pub recovery_point: u64,
    pub log_start_offset: u64,
    pub cleaner_offset: u64,
    pub log_end_offset: u64,
}

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = VERSION;
        b[5] = u8::from(self.clean);
        b[8..16].copy_from_slice(&self.recovery_point.to_be_bytes());
        b[16..24].copy_from_slice(&self.log_start_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.cleaner_offset.to_be_bytes());
        b[32..40].copy_from_slice(&self.log_end_offset.to_be_bytes());
        let crc = crc32fast::hash(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Checkpoint> {
        if b.len() != LEN || &b[0..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let crc = u32::from_be_bytes(b[40..44].try_into().unwrap_or_default());
        if crc32fast::hash(&b[..40]) != crc {
            return None;
        }
        let checkpoint = Checkpoint {
            clean: b[5] & 1 == 1,
            recovery_point: u64_at(8),
            log_start_offset: u64_at(16),
            cleaner_offset: u64_at(24),
            log_end_offset: u64_at(32),
        };
        // Kafka offsets are signed 64-bit: anything larger was not written by us.
        let offsets = [
            checkpoint.recovery_point,
            checkpoint.log_start_offset,
            checkpoint.cleaner_offset,
            checkpoint.log_end_offset,
        ];
        offsets
            .iter()
            .all(|&o| i64::try_from(o).is_ok())
            .then_some(checkpoint)
    }

    /// Reads the checkpoint of `dir`; `None` if missing or damaged.
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Checkpoint::decode(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the checkpoint of `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<()> {
        fsutil::write_atomically(&dir.join(FILE_NAME), &self.encode(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        let c = Checkpoint {
            clean: true,
            recovery_point: 7,
            log_start_offset: 3,
            cleaner_offset: 5,
            log_end_offset: 9,
        };
        c.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), Some(c));
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
    }
}
