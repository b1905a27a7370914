//! Helpers shared by the crash tests: a tiny deterministic PRNG, a child process that re-runs one
//! test of the current test binary (so it can be killed with `SIGKILL` mid-write), reading a
//! whole log, and walking the batches of a `.log` file.
//!
//! Each test binary uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidelog::{OffsetRecord, PartitionLog, RecordBatch};

/// Environment variable that turns a `child_*` test into the child: the folder it writes to.
pub const DIR_ENV: &str = "TIDELOG_CRASH_DIR";
/// Environment variable with the child's PRNG seed.
pub const SEED_ENV: &str = "TIDELOG_CRASH_SEED";

/// The folder to write to when this process is a crash-test child, `None` in a normal test run.
pub fn child_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(DIR_ENV).map(Into::into)
}

/// The child's seed (0 if unset).
pub fn child_seed() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// SplitMix64: deterministic, good enough to pick delays and sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// A child process running one test of this binary, with its stdout delivered line by line.
pub struct Child {
    child: std::process::Child,
    lines: Receiver<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
}

/// Starts this test binary again, running only `test_name`, with `DIR_ENV=dir`.
pub fn spawn_child(test_name: &str, dir: &Path, seed: u64) -> Child {
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (tx, lines) = mpsc::channel();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Child {
        child,
        lines,
        stdout_reader: Some(stdout_reader),
        stderr_reader: Some(stderr_reader),
        seen: Vec::new(),
    }
}

impl Child {
    /// Waits until `deadline` for the next stdout line; `None` on timeout or end of output.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits until a line satisfying `pred` arrives (true) or `timeout` passes (false).
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_line(deadline) {
            if pred(&line) {
                return true;
            }
        }
        false
    }

    /// Panics with the child's stderr if it already exited on its own (it must run until killed).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let stderr = self
                .stderr_reader
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default();
            panic!("child exited by itself with {status}; stderr:\n{stderr}");
        }
    }

    /// Kills the child with `SIGKILL`, reaps it and returns every stdout line it wrote.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let status = self.child.wait().expect("waiting for the child");
        if let Some(h) = self.stdout_reader.take() {
            h.join().expect("stdout reader");
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let stderr = self
            .stderr_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            status.signal(),
            Some(9),
            "the child did not die by SIGKILL ({status}); stderr:\n{stderr}"
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A failing parent must not leave a child writing forever.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record from the log start offset to the log end offset, reading whole batches in a loop
/// and moving on after the last batch returned, as a Kafka consumer does: in a compacted log a
/// batch may have lost its last records, so the offset after the last record read can still lie
/// inside that batch.
pub fn read_all(log: &PartitionLog) -> Vec<OffsetRecord> {
    let mut out: Vec<OffsetRecord> = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let data = log
            .read(next, 64 << 10)
            .unwrap_or_else(|e| panic!("reading at offset {next}: {e}"));
        if data.is_empty() {
            // Compaction removed every record from `next` to the end (for example tombstones at
            // the tail of a rolled log): the read says where the next records would start.
            assert!(
                data.next_offset() > next,
                "nothing returned at offset {next}, below the log end {end}, and no way on"
            );
            next = data.next_offset();
            continue;
        }
        let mut after = next;
        for batch in data.batches() {
            let batch = batch.unwrap_or_else(|e| panic!("a batch read at offset {next}: {e}"));
            for record in batch.records() {
                let record =
                    record.unwrap_or_else(|e| panic!("a record read at offset {next}: {e}"));
                if record.offset >= next {
                    out.push(record);
                }
            }
            after = after.max(batch.header().last_offset() + 1);
        }
        assert!(after > next, "no progress at offset {next}");
        next = after;
    }
    out
}

/// Names in `dir` that look like the leftovers of an interrupted compaction or file write.
pub fn junk_files(dir: &Path) -> Vec<String> {
    let mut junk = Vec::new();
    for entry in std::fs::read_dir(dir).expect("listing the log folder") {
        let name = entry
            .expect("listing the log folder")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".cleaned")
            || name.ends_with(".swap")
            || name.ends_with(".tmp")
            || name.ends_with(".deleted")
        {
            junk.push(name);
        }
    }
    junk.sort();
    junk
}

/// A batch found by walking a `.log` file.
#[derive(Debug, Clone, Copy)]
pub struct BatchAt {
    pub position: u64,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// The batches of a `.log` file, back to back from its start, up to the first invalid one.
pub fn batches_in(path: &Path) -> Vec<BatchAt> {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let mut out = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let Ok((batch, len)) = RecordBatch::decode_first(&bytes.slice(position..)) else {
            break;
        };
        out.push(BatchAt {
            position: position as u64,
            base_offset: batch.header().base_offset,
            last_offset: batch.header().last_offset(),
        });
        position += len;
    }
    out
}
