//! `FetchData`: what a read of a partition log returns.

use bytes::Bytes;

use crate::batch::{BatchHeader, RecordBatch};
use crate::error::Result;
use crate::record::OffsetRecord;

/// The answer to a read: whole batches, exactly as stored (Kafka's bytes), and the log's bounds at
/// the time of the read.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Record batches back to back; may start before the requested offset (a batch is never
    /// split) and is empty when there is nothing at or after it yet.
    pub bytes: Bytes,
    /// The offset that was asked for.
    pub fetch_offset: u64,
    /// The log end offset (high watermark of an unreplicated log) when the read began.
    pub high_watermark: u64,
    /// The log start offset when the read began.
    pub log_start_offset: u64,
    pub(crate) next_offset: u64,
}

impl FetchData {
    /// The batches, each validated (CRC included) as it is reached.
    pub fn batches(&self) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
        let mut rest = self.bytes.clone();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            match RecordBatch::decode_first(&rest) {
                Ok((batch, len)) => {
                    rest = rest.slice(len..);
                    Some(Ok(batch))
                }
                Err(e) => {
                    rest = Bytes::new();
                    Some(Err(e))
                }
            }
        })
    }

    /// The records at or after `fetch_offset`, decoded.
    pub fn records(&self) -> Result<Vec<OffsetRecord>> {
        let mut out = Vec::new();
        for batch in self.batches() {
            for record in batch?.records() {
                let record = record?;
                if record.offset >= self.fetch_offset {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// Where the next read should start: one past the last offset of the last batch returned,
    /// or, when none was, the log end offset if compaction left nothing from `fetch_offset` to
    /// it. After compaction a batch can end in offsets whose records were removed, so this can
    /// be past the last record returned; a reader that moves on from here never stalls on such a
    /// gap (Kafka's consumer does the same).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub(crate) fn offset_after_batches(&self) -> u64 {
        let mut next = self.fetch_offset;
        let mut rest = &self.bytes[..];
        while let Ok(header) = BatchHeader::parse(rest) {
            if header.total_len() > rest.len() {
                break;
            }
            next = next.max(header.last_offset() + 1);
            rest = &rest[header.total_len()..];
        }
        next
    }

    /// True when no batch was returned.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
