//! One assigned partition's fetch state, and the decoding of fetched batches into records.

use std::sync::Arc;

use bytes::Bytes;

use super::config::OffsetReset;
use super::records::ConsumerRecord;
use crate::batch::{RecordBatch, RecordCursor};
use crate::error::{Error, Result};
use crate::partition::{Partition, TopicPartition};

/// How often a fetch resets and reads again when retention moves the log start under it.
const OUT_OF_RANGE_RETRIES: usize = 3;

/// What one poll's round over the partitions shares.
pub(super) struct FetchContext {
    pub out: Vec<ConsumerRecord>,
    pub max_records: usize,
    /// What is left of `fetch_max_bytes` for this poll.
    pub bytes_left: usize,
    pub partition_bytes: usize,
    pub reset: OffsetReset,
}

/// An assigned partition (see the invariants in `mod.rs`).
pub(super) struct Assigned {
    pub tp: TopicPartition,
    /// The topic's name, shared by the records returned.
    pub topic: Arc<str>,
    pub partition: Partition,
    /// The next offset to return; `None` until `auto_offset_reset` or a seek sets it.
    pub position: Option<u64>,
    pub paused: bool,
    /// The batch a poll returned part of, and where its next record is (invariant 3).
    partial: Option<(RecordBatch, RecordCursor)>,
    /// Whole batches fetched and not yet returned, after `partial` (invariant 3).
    buffer: Bytes,
    /// The whole buffer of the last read; once the records returned from it are dropped, the
    /// next read reuses its allocation instead of faulting in a new one.
    last_read: Bytes,
}

impl Assigned {
    pub fn new(tp: TopicPartition, partition: Partition) -> Self {
        Assigned {
            topic: Arc::from(tp.topic.as_str()),
            tp,
            partition,
            position: None,
            paused: false,
            partial: None,
            buffer: Bytes::new(),
            last_read: Bytes::new(),
        }
    }

    pub fn seek(&mut self, offset: u64) {
        self.position = Some(offset);
        self.partial = None;
        self.buffer = Bytes::new();
    }

    /// Whether a fetch could return something (or must reset); only atomics are read, so a
    /// spinning poll can call it in a tight loop.
    pub fn may_have_data(&self) -> bool {
        !self.paused
            && (self.partial.is_some()
                || !self.buffer.is_empty()
                || self.position != Some(self.partition.log.log_end_offset()))
    }

    /// Sets the position by `policy`: the first one of a partition (`out_of_range` is `None`)
    /// or after the log moved out from under it.
    pub fn reset(
        &mut self,
        policy: OffsetReset,
        out_of_range: Option<(u64, u64, u64)>,
    ) -> Result<u64> {
        let log = &self.partition.log;
        let position = match policy {
            OffsetReset::Earliest => log.log_start_offset(),
            OffsetReset::Latest => log.log_end_offset(),
            OffsetReset::None => {
                return Err(match out_of_range {
                    None => Error::NoOffsetForPartition {
                        topic: self.tp.topic.clone(),
                        partition: self.tp.partition,
                    },
                    Some((offset, log_start_offset, log_end_offset)) => Error::PositionOutOfRange {
                        topic: self.tp.topic.clone(),
                        partition: self.tp.partition,
                        offset,
                        log_start_offset,
                        log_end_offset,
                    },
                })
            }
        };
        self.seek(position);
        Ok(position)
    }

    /// Appends this partition's next records to `ctx.out` (up to `ctx.max_records` in all),
    /// reading from the log if nothing is buffered, and moves the position past them.
    pub fn fetch_into(&mut self, ctx: &mut FetchContext) -> Result<()> {
        // Fails once the topic is deleted.
        self.partition.log()?;
        let mut position = match self.position {
            Some(position) => position,
            None => self.reset(ctx.reset, None)?,
        };
        if self.partial.is_none() && self.buffer.is_empty() {
            if ctx.bytes_left == 0 {
                return Ok(());
            }
            let max_bytes = ctx.partition_bytes.min(ctx.bytes_left);
            let mut tries = 0;
            let mut spare = std::mem::take(&mut self.last_read).try_into_mut().ok();
            let data = loop {
                match self
                    .partition
                    .log
                    .read_reusing(position, max_bytes, &mut spare)
                {
                    Ok(data) => break data,
                    Err(Error::OffsetOutOfRange {
                        offset,
                        log_start_offset,
                        log_end_offset,
                    }) if tries < OUT_OF_RANGE_RETRIES => {
                        tries += 1;
                        position = self
                            .reset(ctx.reset, Some((offset, log_start_offset, log_end_offset)))?;
                    }
                    Err(e) => return Err(e),
                }
            };
            ctx.bytes_left = ctx.bytes_left.saturating_sub(data.bytes.len());
            if data.bytes.is_empty() {
                // Compaction emptied everything from here to the end: move there.
                position = position.max(data.next_offset());
            }
            self.last_read = data.bytes.clone();
            self.buffer = data.bytes;
        }
        let mut rest = std::mem::take(&mut self.buffer);
        let result = self.drain(&mut rest, &mut position, ctx);
        self.position = Some(position);
        if result.is_ok() {
            self.buffer = rest;
        } else {
            // The next poll reads the log again from the position, and meets the error again.
            self.partial = None;
        }
        result
    }

    /// Decodes records at or after `position`, from `partial` and then from the front of
    /// `rest`; leaves in `partial` the batch a full poll stopped in, and in `rest` the batches
    /// not reached.
    fn drain(
        &mut self,
        rest: &mut Bytes,
        position: &mut u64,
        ctx: &mut FetchContext,
    ) -> Result<()> {
        if let Some((batch, cursor)) = self.partial.take() {
            self.drain_batch(&batch, cursor, position, ctx)?;
        }
        while self.partial.is_none() && !rest.is_empty() && ctx.out.len() < ctx.max_records {
            let (batch, len) = RecordBatch::decode_first(rest)?;
            *rest = rest.slice(len..);
            self.drain_batch(&batch, RecordCursor::START, position, ctx)?;
        }
        Ok(())
    }

    /// Appends the records of `batch` from `cursor` on that are at or after `position`; if the
    /// poll fills up first, keeps the batch and where it stopped in `partial`.
    fn drain_batch(
        &mut self,
        batch: &RecordBatch,
        cursor: RecordCursor,
        position: &mut u64,
        ctx: &mut FetchContext,
    ) -> Result<()> {
        let last_offset = batch.header().last_offset();
        if last_offset >= *position {
            let timestamp_type = batch.header().timestamp_type();
            let mut records = batch.records_from(cursor);
            let out = &mut ctx.out;
            if out.capacity() == 0 {
                out.reserve(ctx.max_records.min(1024));
            }
            // Room for the batch's records (or as many as the poll takes) at once.
            out.reserve(
                records
                    .max_left()
                    .min(ctx.max_records.saturating_sub(out.len())),
            );
            loop {
                if out.len() >= ctx.max_records {
                    if records.is_done() {
                        break;
                    }
                    // Full: the rest of this batch waits for the next poll.
                    self.partial = Some((batch.clone(), records.cursor()));
                    return Ok(());
                }
                let mut headers = Vec::new();
                let Some(fields) = records.next_fields(&mut headers) else {
                    break;
                };
                let fields = fields?;
                if fields.offset < *position {
                    continue;
                }
                *position = fields.offset + 1;
                out.push(ConsumerRecord {
                    topic: Arc::clone(&self.topic),
                    partition: self.tp.partition,
                    offset: fields.offset,
                    timestamp: fields.timestamp,
                    timestamp_type,
                    key: batch.field(fields.key),
                    value: batch.field(fields.value),
                    headers,
                });
            }
        }
        // Compaction can leave a batch's last offsets (or all of them) without records.
        *position = (*position).max(last_offset + 1);
        Ok(())
    }
}
