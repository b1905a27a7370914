//! Inputs the fuzz targets (`fuzz/fuzz_targets/`) found, rebuilt as directories: opening them must
//! give `Ok` or a typed error, never a panic, a hang or a huge allocation.

use std::path::Path;

use tidelog::{Broker, Error};

/// A broker directory with topic `t` (2 partitions), as a real broker leaves it.
fn real_directory(dir: &Path) {
    let broker = Broker::open(dir).unwrap();
    broker.create_topic("t", 2).unwrap();
}

/// Replaces `meta/topics` with `payload`, sealed as `src/topic.rs` lays it out ("TLMT", version
/// 1, payload length, CRC-32 of the payload), so that it reaches the decoder.
fn write_metadata(dir: &Path, payload: &[u8]) {
    let mut bytes = b"TLMT\x01".to_vec();
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(dir.join("meta").join("topics"), bytes).unwrap();
}

fn assert_corrupt_metadata(dir: &Path) {
    match Broker::open(dir) {
        Err(Error::Corrupt { path, .. }) => assert!(path.ends_with("meta/topics"), "{path:?}"),
        other => panic!("expected Error::Corrupt for meta/topics, got {other:?}"),
    }
}

/// `open_broker`: a sealed `meta/topics` whose topic name has a length prefix of 2^60 bytes made
/// bincode allocate that much for the name (the process aborted) before it found the payload
/// too short.
#[test]
fn metadata_string_length_past_the_payload_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    real_directory(dir.path());
    // One topic, whose name's length is a u64 (bincode's varint marker 0xfd) of 2^60.
    let mut payload = vec![1, 0xfd];
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    payload.extend_from_slice(b"t");
    write_metadata(dir.path(), &payload);
    assert_corrupt_metadata(dir.path());
}

/// A sealed `meta/topics` that lists topic `t` with 2^32 - 1 partitions made `Broker::open`
/// reserve a vector of that many partition handles (32 GiB; the process aborted) before opening
/// the first one. Now the listing is refused (`Error::Corrupt`: above `MAX_PARTITIONS`) or, were
/// it accepted, opening would go partition by partition and fail with the first error, such as
/// running out of file descriptors (the test lowers the limit so that this would come early).
#[test]
fn metadata_with_u32_max_partitions_does_not_abort() {
    let dir = tempfile::tempdir().unwrap();
    real_directory(dir.path());
    let good = std::fs::read(dir.path().join("meta").join("topics")).unwrap();
    // Payload: one topic, name "t", partitions 2, then the config.
    let payload = &good[13..];
    assert_eq!(&payload[..4], &[1, 1, b't', 2]);
    let mut damaged = vec![1, 1, b't', 0xfc]; // a u32 (bincode's varint marker 0xfc) follows
    damaged.extend_from_slice(&u32::MAX.to_le_bytes());
    damaged.extend_from_slice(&payload[4..]);
    write_metadata(dir.path(), &damaged);
    lower_open_files_limit(256);
    match Broker::open(dir.path()) {
        Err(Error::Corrupt { .. } | Error::Io { .. }) => {}
        other => panic!("expected Error::Corrupt or an I/O error, got {other:?}"),
    }
}

/// Lowers this process's soft limit of open files to at most `limit`.
fn lower_open_files_limit(limit: libc::rlim_t) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
        let lowered = libc::rlimit {
            rlim_cur: current.rlim_cur.min(limit),
            rlim_max: current.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lowered), 0);
    }
}
