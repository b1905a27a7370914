//! `ConsumerIter`: a consumer's records as a blocking iterator.

use std::sync::Arc;
use std::time::Duration;

use super::records::ConsumerRecord;
use super::Consumer;
use crate::error::Result;

/// Records of a [`Consumer`], polled as needed: see [`Consumer::iter`].
#[derive(Debug)]
pub struct ConsumerIter<'a> {
    consumer: &'a mut Consumer,
    timeout: Duration,
    buffered: std::vec::IntoIter<ConsumerRecord>,
    done: bool,
}

impl<'a> ConsumerIter<'a> {
    pub(super) fn new(consumer: &'a mut Consumer, timeout: Duration) -> Self {
        ConsumerIter {
            consumer,
            timeout,
            buffered: Vec::new().into_iter(),
            done: false,
        }
    }
}

impl Iterator for ConsumerIter<'_> {
    type Item = Result<ConsumerRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.buffered.next() {
            return Some(Ok(record));
        }
        if self.done {
            return None;
        }
        match self.consumer.poll(self.timeout) {
            Ok(records) if records.is_empty() => {
                self.done = true;
                None
            }
            Ok(records) => {
                self.buffered = records.into_vec().into_iter();
                self.buffered.next().map(Ok)
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl Drop for ConsumerIter<'_> {
    fn drop(&mut self) {
        // Each partition's records form one run in offset order: its first is where to go back.
        let mut last: Option<(Arc<str>, u32)> = None;
        for record in self.buffered.by_ref() {
            if last
                .as_ref()
                .is_some_and(|(t, p)| Arc::ptr_eq(t, &record.topic) && *p == record.partition)
            {
                continue;
            }
            let tp = record.topic_partition();
            if let Ok(i) = self.consumer.index_of(&tp) {
                self.consumer.assigned[i].seek(record.offset);
            }
            last = Some((record.topic, record.partition));
        }
    }
}
