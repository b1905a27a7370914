//! Choosing a partition: Kafka's murmur2 key hash, the sticky partitioner for keyless records,
//! and the [`Partitioner`] trait for users who choose themselves.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};

/// Chooses the partition of a record that names none (Kafka's `Partitioner`).
///
/// Without one, a producer uses Kafka's built-in partitioner: the murmur2 hash of the key
/// ([`partition_for_key`]), and for records without a key the *sticky* partitioner, which fills
/// a batch for one partition before moving to another, so keyless records still travel in full
/// batches.
///
/// ```
/// use tidelog::Partitioner;
///
/// /// Sends every record whose key starts with `vip-` to partition 0, the rest by value length.
/// struct VipFirst;
///
/// impl Partitioner for VipFirst {
///     fn partition(&self, _topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, partitions: u32) -> u32 {
///         match key {
///             Some(k) if k.starts_with(b"vip-") => 0,
///             _ => value.map_or(0, |v| v.len() as u32 % partitions),
///         }
///     }
/// }
/// assert_eq!(VipFirst.partition("orders", Some(b"vip-7"), Some(b"x"), 4), 0);
/// ```
pub trait Partitioner: Send + Sync {
    /// The partition, in `0..partitions`, of a record of `topic` with this key and value.
    /// `partitions` is the topic's current partition count (at least 1). A number out of range
    /// fails the send with [`Error::UnknownPartition`](crate::Error::UnknownPartition).
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: u32,
    ) -> u32;

    /// Called after the producer closed a batch for `prev_partition` of `topic` (it was full,
    /// its linger time passed, or it was flushed), before the next batch is opened. A sticky
    /// partitioner moves to another partition here (Kafka's `onNewBatch`). Default: nothing.
    fn on_new_batch(&self, topic: &str, partitions: u32, prev_partition: u32) {
        let _ = (topic, partitions, prev_partition);
    }
}

/// Kafka's `Utils.murmur2`: the 32-bit murmur2 hash (seed `0x9747b28c`) that Kafka's Java client
/// uses to place keyed records, bit for bit (Java's signed 32-bit arithmetic).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java computes `seed ^ length` on ints; a length past i32::MAX cannot be a Java array, and
    // wrapping keeps the function total.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(number: i32) -> i32 {
    number & 0x7fff_ffff
}

/// The partition Kafka's Java client picks for a record with this key:
/// `toPositive(murmur2(key)) % partitions`. Returns 0 when `partitions` is 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (to_positive(murmur2(key)) as u32) % partitions
}

/// The sticky partition of one topic for keyless records (Kafka's `StickyPartitionCache`).
pub(crate) struct Sticky {
    current: AtomicU32,
}

impl Sticky {
    pub(crate) fn new(partitions: u32) -> Sticky {
        Sticky {
            current: AtomicU32::new(random_u32() % partitions.max(1)),
        }
    }

    /// The partition keyless records go to now.
    pub(crate) fn partition(&self, partitions: u32) -> u32 {
        let p = self.current.load(Ordering::Relaxed);
        if p < partitions {
            return p;
        }
        let fresh = random_u32() % partitions.max(1);
        // Another thread may have moved it already; either choice is fine.
        let _ = self
            .current
            .compare_exchange(p, fresh, Ordering::Relaxed, Ordering::Relaxed);
        self.current.load(Ordering::Relaxed) % partitions.max(1)
    }

    /// A batch for `prev` was closed: if keyless records were sticking to it, move them to
    /// another partition, chosen at random.
    pub(crate) fn on_new_batch(&self, prev: u32, partitions: u32) {
        if partitions < 2 || self.current.load(Ordering::Relaxed) != prev {
            return;
        }
        let next = (prev % partitions + 1 + random_u32() % (partitions - 1)) % partitions;
        let _ = self
            .current
            .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A per-thread xorshift generator: the sticky partitioner needs spread, not secrecy, and must
/// not share a cache line between sending threads.
fn random_u32() -> u32 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 32) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_moves_to_another_partition() {
        let sticky = Sticky::new(4);
        for _ in 0..100 {
            let p = sticky.partition(4);
            sticky.on_new_batch(p, 4);
            assert_ne!(sticky.partition(4), p);
        }
        let one = Sticky::new(1);
        one.on_new_batch(0, 1);
        assert_eq!(one.partition(1), 0);
    }

    #[test]
    fn murmur2_tail_bytes_are_unsigned() {
        // Java masks each byte with 0xff; bytes >= 0x80 must not sign-extend. Value from an
        // independent port of the Java code.
        assert_eq!(murmur2(&[0xff, 0x80, 0x7f, 0x00, 0xfe]), -1_958_495_739);
        assert_eq!(murmur2(b""), 275_646_681);
    }
}
