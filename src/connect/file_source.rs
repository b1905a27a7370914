//! The file source (Kafka's `FileStreamSourceConnector`): tails a file and writes one record
//! per line to a topic.
//!
//! Config: `file` (required), `topic` (required), `batch.size` (most lines per poll, default
//! 2000, Kafka's default), `poll.interval.ms` (how long a poll at the end of the file waits
//! for more, default 100). One task.
//!
//! Source partition `{"filename": <file>}`, offset `{"position": <byte after the line>}`, as in
//! Kafka. Invariants:
//! 1. A line is emitted only once its `\n` is in the file; a partial last line waits, and its
//!    bytes are not counted in the position until it is complete. `\r\n` loses its `\r`.
//! 2. The position of every record is the byte just after its line, so resuming at a stored
//!    position starts exactly at the next line.
//! 3. A file shorter than the stored position was replaced or truncated: it is read from the
//!    start again.
//!
//! Lines that are UTF-8 become text ([`ConnectData::String`]); other lines are passed on as bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{SourceConnector, SourceTask, SourceTaskContext};
use super::config::ConnectorConfig;
use super::data::{ConnectData, SourceRecord};
use crate::error::{Error, IoContext, Result};
use crate::topic::validate_topic_name;

/// The file source connector (`FileStreamSource`); see the module docs for its config.
#[derive(Debug, Default)]
pub struct FileStreamSourceConnector {
    config: Option<ConnectorConfig>,
}

impl SourceConnector for FileStreamSourceConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        FileSettings::from_config(config)?;
        self.config = Some(config.clone());
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        // One file, one reader: a second task would only repeat the lines.
        Ok(self.config.iter().cloned().collect())
    }

    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FileStreamSourceTask::default())
    }
}

struct FileSettings {
    file: PathBuf,
    topic: Arc<str>,
    batch_size: usize,
    poll_interval: Duration,
}

impl FileSettings {
    fn from_config(c: &ConnectorConfig) -> Result<Self> {
        let file = PathBuf::from(c.required("file")?);
        let topic = c.required("topic")?;
        validate_topic_name(topic).map_err(|e| c.error("topic", &e.to_string()))?;
        let batch_size: usize = c.parse_or("batch.size", 2000)?;
        if batch_size == 0 {
            return Err(c.error("batch.size", "must be at least 1"));
        }
        let poll_ms: u64 = c.parse_or("poll.interval.ms", 100)?;
        Ok(FileSettings {
            file,
            topic: topic.into(),
            batch_size,
            poll_interval: Duration::from_millis(poll_ms),
        })
    }
}

/// The file source's task.
#[derive(Default)]
pub struct FileStreamSourceTask {
    settings: Option<FileSettings>,
    context: Option<SourceTaskContext>,
    partition: Arc<Value>,
    reader: Option<BufReader<File>>,
    /// The byte after the last complete line read (invariant 2).
    position: u64,
    /// A partial last line, waiting for its `\n` (invariant 1).
    partial: Vec<u8>,
}

impl std::fmt::Debug for FileStreamSourceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStreamSourceTask")
            .field("file", &self.settings.as_ref().map(|s| &s.file))
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl FileStreamSourceTask {
    /// Opens the file at the stored position, if it exists yet.
    fn open(&mut self) -> Result<bool> {
        let Some(settings) = &self.settings else {
            return Ok(false);
        };
        let file = match File::open(&settings.file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("opening {}", settings.file.display()), e)),
        };
        let len = file
            .metadata()
            .ctx(|| format!("reading the size of {}", settings.file.display()))?
            .len();
        if len < self.position {
            // Invariant 3.
            self.position = 0;
        }
        let mut reader = BufReader::with_capacity(256 << 10, file);
        reader
            .seek(SeekFrom::Start(self.position))
            .ctx(|| format!("seeking in {}", settings.file.display()))?;
        self.partial.clear();
        self.reader = Some(reader);
        Ok(true)
    }
}

impl FileStreamSourceTask {
    /// At the end of the open file: whether the name now holds a shorter file (truncated) or
    /// another file (rotated by rename; the open one has been read to its end). A missing name
    /// is not a replacement: the old file may come back, or a new one appear later.
    fn replaced(&self) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let (Some(settings), Some(reader)) = (&self.settings, &self.reader) else {
            return Ok(false);
        };
        let now = match std::fs::metadata(&settings.file) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("reading {}", settings.file.display()), e)),
        };
        let open = reader
            .get_ref()
            .metadata()
            .ctx(|| format!("reading the size of {}", settings.file.display()))?;
        let read = self.position + self.partial.len() as u64;
        Ok(now.len() < read || now.ino() != open.ino() || now.dev() != open.dev())
    }
}

impl SourceTask for FileStreamSourceTask {
    fn start(&mut self, config: &ConnectorConfig, context: &SourceTaskContext) -> Result<()> {
        let settings = FileSettings::from_config(config)?;
        let partition = Arc::new(json!({"filename": settings.file.to_string_lossy()}));
        self.position = match context.offset(&partition)? {
            Some(offset) => offset
                .get("position")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    config.error(
                        "file",
                        &format!("the stored offset {offset} has no numeric `position`"),
                    )
                })?,
            None => 0,
        };
        self.partition = partition;
        self.settings = Some(settings);
        self.context = Some(context.clone());
        self.open()?;
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Some(settings) = &self.settings else {
            return Ok(Vec::new());
        };
        let (batch_size, poll_interval) = (settings.batch_size, settings.poll_interval);
        if self.reader.is_none() && !self.open()? {
            if let Some(context) = &self.context {
                context.idle(poll_interval);
            }
            return Ok(Vec::new());
        }
        let (Some(settings), Some(reader)) = (&self.settings, &mut self.reader) else {
            return Ok(Vec::new());
        };
        let mut records = Vec::with_capacity(batch_size.min(4096));
        while records.len() < batch_size {
            let mut line = std::mem::take(&mut self.partial);
            let n = reader
                .read_until(b'\n', &mut line)
                .ctx(|| format!("reading {}", settings.file.display()))?;
            if n == 0 || line.last() != Some(&b'\n') {
                // The end of the file, possibly inside a line (invariant 1).
                self.partial = line;
                break;
            }
            self.position += line.len() as u64;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let data = match String::from_utf8(line) {
                Ok(text) => ConnectData::String(text),
                Err(e) => ConnectData::from(e.into_bytes()),
            };
            records.push(SourceRecord::new(
                Arc::clone(&self.partition),
                json!({"position": self.position}),
                Arc::clone(&settings.topic),
                data,
            ));
        }
        if records.is_empty() {
            if self.replaced()? {
                // Truncated, or rotated (a new file under the name): read it from the start.
                self.reader = None;
                self.position = 0;
                self.partial.clear();
                return Ok(Vec::new());
            }
            if let Some(context) = &self.context {
                context.idle(poll_interval);
            }
        }
        Ok(records)
    }
}
