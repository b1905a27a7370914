//! The file sink (Kafka's `FileStreamSinkConnector`): appends each record's value to a file,
//! one line per record.
//!
//! Config: `file` (required), `topics` or `topics.regex`. One task (two tasks appending to one
//! file would interleave).
//!
//! Values are written as their text ([`ConnectData::to_text`]: text, JSON, UTF-8 bytes; other bytes as
//! they are); tombstones are skipped. Invariants:
//! 1. The file only ever receives whole lines: records are gathered in a buffer and written
//!    with whole-buffer writes at record boundaries, and `flush` fsyncs the file.
//! 2. A file that does not end with `\n` when the task starts ends in a line torn by a crash:
//!    that partial line is cut off (its record is delivered again, since its offset was not
//!    committed after a flush).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::api::{SinkConnector, SinkTask, SinkTaskContext};
use super::config::ConnectorConfig;
use super::data::{ConnectData, SinkRecord};
use crate::error::{IoContext, Result};

/// Bytes gathered before they are written (invariant 1).
const BUFFER: usize = 256 << 10;

/// The file sink connector (`FileStreamSink`); see the module docs for its config.
#[derive(Debug, Default)]
pub struct FileStreamSinkConnector {
    config: Option<ConnectorConfig>,
}

impl SinkConnector for FileStreamSinkConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        config.required("file")?;
        self.config = Some(config.clone());
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        Ok(self.config.iter().cloned().collect())
    }

    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(FileStreamSinkTask::default())
    }
}

/// The file sink's task.
#[derive(Debug, Default)]
pub struct FileStreamSinkTask {
    path: PathBuf,
    file: Option<File>,
    buffer: Vec<u8>,
}

impl FileStreamSinkTask {
    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Some(file) = &mut self.file {
            file.write_all(&self.buffer)
                .ctx(|| format!("writing {}", self.path.display()))?;
        }
        self.buffer.clear();
        Ok(())
    }
}

/// Cuts a torn last line off (invariant 2).
fn repair_tail(file: &mut File, path: &std::path::Path) -> Result<()> {
    let len = file
        .metadata()
        .ctx(|| format!("reading the size of {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(());
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .ctx(|| format!("seeking in {}", path.display()))?;
        file.read_exact(part)
            .ctx(|| format!("reading {}", path.display()))?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)
                    .ctx(|| format!("cutting the torn last line of {}", path.display()))?;
            }
            return Ok(());
        }
        end = start;
    }
    file.set_len(0)
        .ctx(|| format!("cutting the torn line of {}", path.display()))
}

impl SinkTask for FileStreamSinkTask {
    fn start(&mut self, config: &ConnectorConfig, _context: &SinkTaskContext) -> Result<()> {
        self.path = PathBuf::from(config.required("file")?);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .ctx(|| format!("opening {}", self.path.display()))?;
        repair_tail(&mut file, &self.path)?;
        self.file = Some(file);
        Ok(())
    }

    fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        for r in records {
            match r.record.value {
                None => continue,
                Some(ConnectData::Bytes(b)) => self.buffer.extend_from_slice(&b),
                Some(ConnectData::String(s)) => self.buffer.extend_from_slice(s.as_bytes()),
                Some(d) => {
                    if let Some(text) = d.to_text() {
                        self.buffer.extend_from_slice(text.as_bytes());
                    }
                }
            }
            self.buffer.push(b'\n');
            if self.buffer.len() >= BUFFER {
                self.write_buffer()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.write_buffer()?;
        if let Some(file) = &self.file {
            file.sync_data()
                .ctx(|| format!("fsyncing {}", self.path.display()))?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        // Unflushed lines are delivered again to the next task; writing them now could only
        // duplicate them.
        self.buffer.clear();
        self.file = None;
    }
}
