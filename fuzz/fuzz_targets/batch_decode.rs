//! Any byte string given to the batch decoder yields a batch or a typed error, never a panic; a
//! batch that decodes and that tidelog could have written re-encodes to the same records.
#![no_main]

mod common;

use bytes::Bytes;
use common::{crc, CASTAGNOLI};
use libfuzzer_sys::fuzz_target;
use tidelog::{BatchHeader, Compression, Error, Record, RecordBatch, TimestampType};

fuzz_target!(|data: &[u8]| {
    check(data);
    // Most mutations break the CRC and stop at it; seal the batch again so that they reach the
    // record decoder too.
    if let Ok(h) = BatchHeader::parse(data) {
        if h.total_len() <= data.len() {
            let mut sealed = data.to_vec();
            let crc = crc(&sealed[21..h.total_len()], CASTAGNOLI);
            sealed[17..21].copy_from_slice(&crc.to_be_bytes());
            check(&sealed);
        }
    }
});

fn check(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let _ = RecordBatch::from_bytes(buf.clone()).map(|b| b.records().count());
    let Ok((batch, used)) = RecordBatch::decode_first(&buf) else {
        return;
    };
    let h = *batch.header();
    assert_eq!(used, h.total_len());
    assert_eq!(batch.as_bytes().len(), used);
    assert!(used <= data.len());

    let mut decoded = Vec::new();
    for r in batch.records() {
        match r {
            Ok(r) => decoded.push(r),
            Err(_) => return,
        }
    }
    assert_eq!(decoded.len(), h.record_count as usize);
    assert!(decoded
        .iter()
        .all(|r| r.offset >= h.base_offset && r.offset <= h.last_offset()));

    // Round trip, where tidelog's encoder could have written this batch.
    let default_fields = h.compression().ok() == Some(Compression::None)
        && h.timestamp_type() == TimestampType::CreateTime
        && h.attributes == 0
        && (h.producer_id, h.producer_epoch, h.base_sequence) == (-1, -1, -1);
    if !default_fields || decoded.is_empty() {
        return;
    }
    let records: Vec<Record> = decoded.iter().map(|r| r.record.clone()).collect();
    let again = match RecordBatch::encode(h.base_offset, &records) {
        Ok(b) => b,
        // Timestamps whose distance does not fit an i64 cannot be written (Kafka's Java client
        // would wrap them around).
        Err(Error::InvalidArgument(_)) => {
            let min = records.iter().map(|r| r.timestamp).min().unwrap();
            let max = records.iter().map(|r| r.timestamp).max().unwrap();
            assert!(max.checked_sub(min).is_none() || min.checked_sub(max).is_none());
            return;
        }
        Err(e) => panic!("re-encoding failed: {e}"),
    };
    let redecoded: Vec<_> = again
        .records()
        .collect::<Result<_, _>>()
        .expect("own batch decodes");
    assert_eq!(redecoded.len(), decoded.len());
    let contiguous = decoded
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == h.base_offset + i as u64);
    for (i, (a, b)) in decoded.iter().zip(&redecoded).enumerate() {
        assert_eq!(a.record, b.record);
        assert_eq!(b.offset, h.base_offset + i as u64);
        if contiguous {
            assert_eq!(a.offset, b.offset);
        }
    }
}
