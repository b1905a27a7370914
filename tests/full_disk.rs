//! A full disk: the append fails with an I/O error, the log stays consistent, and appends work
//! again once there is room. Needs root to mount a small tmpfs; skipped (with a message) otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use tidelog::{Durability, Error, LogConfig, PartitionLog, Record};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().ok()?.keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Mount(dir))
        } else {
            eprintln!("skipping: cannot mount a tmpfs here (needs root)");
            None
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut written = 0;
    while let Ok(n) = f.write(&chunk) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

#[test]
fn appends_fail_cleanly_on_a_full_disk_and_resume_when_space_returns() {
    let Some(mount) = Mount::tmpfs("2M") else {
        return;
    };
    let dir = mount.0.join("t-0");
    let config = LogConfig::default()
        .segment_bytes(256 << 10)
        .index_interval_bytes(1024)
        .durability(Durability::Always);
    let log = PartitionLog::open(&dir, config.clone()).unwrap();
    let filler = mount.0.join("filler");
    fill(&filler);

    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..100_000u64 {
        match log.append(&[Record::new(format!("k{i}"), vec![b'x'; 500])]) {
            Ok(info) => acked.push(info.base_offset),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("the disk never filled up");
    assert!(
        matches!(failure, Error::Io { .. }),
        "expected an I/O error, got {failure:?}"
    );
    let end = log.log_end_offset();
    assert_eq!(end, acked.len() as u64, "a failed append assigns no offset");
    // Everything acknowledged is readable.
    let mut next = 0;
    while next < end {
        let got = log.read_records(next, 1 << 20).unwrap();
        next = got.last().unwrap().offset + 1;
    }
    // Still failing while full, without damage.
    assert!(log.append(&[Record::new("k", vec![b'y'; 500])]).is_err());
    assert_eq!(log.log_end_offset(), end);

    std::fs::remove_file(&filler).unwrap();
    let info = log
        .append(&[Record::new("after", "space is back")])
        .unwrap();
    assert_eq!(info.base_offset, end);
    log.close().unwrap();

    let log = PartitionLog::open(&dir, config).unwrap();
    assert_eq!(log.log_end_offset(), end + 1);
    let last = log.read_records(end, 1 << 20).unwrap();
    assert_eq!(last[0].record.value.as_deref(), Some(&b"space is back"[..]));
}
