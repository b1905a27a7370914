//! Helpers the fuzz targets share: temporary folders, file damage, checksums computed
//! independently of the code under test (bit by bit), and re-sealing batches' CRCs so that
//! mutations get past them.

#![allow(dead_code)] // each target uses a part

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// CRC-32C (Castagnoli): Kafka's batch checksum.
pub const CASTAGNOLI: u32 = 0x82f6_3b78;
/// CRC-32 (IEEE): tidelog's own files (checkpoints, topic metadata).
pub const IEEE: u32 = 0xedb8_8320;

/// Reflected CRC-32 with the given polynomial, bit by bit (independent of the code under test).
pub fn crc(data: &[u8], poly: u32) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn crc32_ieee(data: &[u8]) -> u32 {
    crc(data, IEEE)
}

/// Recomputes the CRC-32C of every batch of a `.log` file whose header and length hold up.
pub fn seal_crcs(path: &Path) {
    let Ok(mut content) = std::fs::read(path) else {
        return;
    };
    let mut pos = 0;
    while content.len() - pos >= 61 {
        let len = u32::from_be_bytes([
            content[pos + 8],
            content[pos + 9],
            content[pos + 10],
            content[pos + 11],
        ]) as usize;
        let total = len.saturating_add(12);
        if total < 61 || total > content.len() - pos {
            break;
        }
        let crc = crc(&content[pos + 21..pos + total], CASTAGNOLI);
        content[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos += total;
    }
    let _ = std::fs::write(path, content);
}

/// Cuts (or extends) the file at `path` to the length in the first two bytes of `bytes`
/// (big-endian; 0 if missing).
pub fn set_len(path: &Path, bytes: &[u8]) {
    let len = bytes
        .iter()
        .take(2)
        .fold(0u64, |a, &b| a << 8 | u64::from(b));
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(len);
    }
}

/// Patches the file at `path` at the offset in the first two bytes of `bytes` (big-endian,
/// modulo the file's length) with the rest: XOR for `Patch::Xor`, overwrite for the others,
/// and `Patch::Extend` appends what goes past the end.
pub fn patch(path: &Path, how: Patch, bytes: &[u8]) {
    let Ok(mut content) = std::fs::read(path) else {
        return;
    };
    if content.is_empty() || bytes.len() < 2 {
        return;
    }
    let at = usize::from(u16::from_be_bytes([bytes[0], bytes[1]])) % content.len();
    for (i, b) in bytes[2..].iter().enumerate() {
        match (content.get_mut(at + i), how) {
            (Some(c), Patch::Xor) => *c ^= b,
            (Some(c), _) => *c = *b,
            (None, Patch::Extend) => content.push(*b),
            (None, _) => break,
        }
    }
    let _ = std::fs::write(path, content);
}

/// How [`patch`] changes bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    Xor,
    Overwrite,
    Extend,
}

/// A fresh folder, in memory when `/dev/shm` exists, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new folder whose name starts with `tidelog-fuzz-<target>-`.
    pub fn new(target: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("tidelog-fuzz-{target}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fuzz folder");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
