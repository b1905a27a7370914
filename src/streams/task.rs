//! A task: one sub-topology instantiated for one partition number, with its stores and
//! punctuations. Used by the stream threads and by the test driver alike.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::streams::config::StreamsConfig;
use crate::streams::context::{OutRecord, RecordMetadata, TaskContext, TaskId, TaskMetrics};
use crate::streams::processor::PunctuationType;
use crate::streams::store::StateStore;
use crate::streams::topology::{
    Flush, Instantiator, Punctuator, RawRecord, SourceNode, TopologyInner,
};

/// A store's changes are flushed to its changelog at least this often (in changed keys), not
/// only at commits, so memory for the changed-key set stays bounded.
const MAX_PENDING_CHANGES: usize = 10_000;

pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) ctx: TaskContext,
    sources: Vec<Box<dyn SourceNode>>,
    by_topic: HashMap<String, usize>,
    punctuators: Vec<Punctuator>,
    /// Caching nodes, parents before children.
    flushers: Vec<Arc<parking_lot::Mutex<dyn Flush>>>,
    /// Logged stores with their changelog topic.
    changelogs: Vec<(Arc<dyn StateStore>, Arc<str>)>,
    pub(crate) stores: Vec<Arc<dyn StateStore>>,
    scratch: Vec<(Bytes, Option<Bytes>)>,
}

impl Task {
    pub(crate) fn new(
        topology: &TopologyInner,
        id: TaskId,
        application_id: &Arc<str>,
        wall_clock: i64,
        config: &StreamsConfig,
    ) -> Result<Task> {
        let mut ctx = TaskContext::new(id, Arc::clone(application_id), wall_clock);
        ctx.skip_undecodable = config.skip_undecodable_records;
        ctx.cache_max_bytes = config.cache_max_bytes;
        let (made, punctuators, mut flushers, stores) = {
            let mut inst = Instantiator::new(topology, &mut ctx);
            let made = inst.sources(id.subtopology)?;
            (
                made,
                std::mem::take(&mut inst.punctuators),
                std::mem::take(&mut inst.flushers),
                std::mem::take(&mut inst.stores),
            )
        };
        // Flushed parents first: a parent's flush forwards into its descendants' caches.
        flushers.reverse();
        let mut sources = Vec::new();
        let mut by_topic = HashMap::new();
        for (topics, node) in made {
            for topic in topics {
                by_topic.insert(topic, sources.len());
            }
            sources.push(node);
        }
        let changelogs = stores
            .iter()
            .filter(|s| s.logged())
            .map(|s| {
                let topic: Arc<str> = Arc::from(changelog_topic(application_id, s.name()));
                (Arc::clone(s), topic)
            })
            .collect();
        let mut task = Task {
            id,
            ctx,
            sources,
            by_topic,
            punctuators,
            flushers,
            changelogs,
            stores,
            scratch: Vec::new(),
        };
        for p in &mut task.punctuators {
            if p.schedule.kind == PunctuationType::WallClockTime {
                p.next = Some(wall_clock.saturating_add(p.schedule.interval_ms));
            }
        }
        Ok(task)
    }

    /// The resolved topics this task reads.
    pub(crate) fn reads(&self, topic: &str) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// Processes one record of `topic`.
    pub(crate) fn process(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        offset: u64,
        record: RawRecord,
    ) -> Result<()> {
        let source = *self.by_topic.get(&**topic).ok_or_else(|| {
            Error::InvalidArgument(format!("task {} does not read topic `{topic}`", self.id))
        })?;
        self.ctx.record = Some(RecordMetadata {
            topic: Arc::clone(topic),
            partition,
            offset,
        });
        self.ctx.stream_time = self.ctx.stream_time.max(record.timestamp);
        self.ctx.metrics.processed += 1;
        let result = self.sources[source].process_raw(&mut self.ctx, record);
        self.ctx.record = None;
        result?;
        self.punctuate(PunctuationType::StreamTime, self.ctx.stream_time)?;
        if self
            .changelogs
            .iter()
            .any(|(s, _)| s.pending_changes() >= MAX_PENDING_CHANGES)
        {
            self.flush_stores()?;
        }
        Ok(())
    }

    /// Fires wall-clock punctuations due at `now`.
    pub(crate) fn punctuate_wall_clock(&mut self, now: i64) -> Result<()> {
        self.ctx.wall_clock = now;
        self.punctuate(PunctuationType::WallClockTime, now)
    }

    /// Fires the punctuations of `kind` that are due at `now`: each at most once per call; the
    /// next one is the first multiple of the interval (from the first firing) after `now`.
    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<()> {
        if now == i64::MIN {
            return Ok(());
        }
        self.punctuators.retain(|p| !p.schedule.is_cancelled());
        for p in &mut self.punctuators {
            if p.schedule.kind != kind {
                continue;
            }
            let next = *p.next.get_or_insert(now);
            if now < next {
                continue;
            }
            // In i128: timestamps may span the whole i64 range.
            let interval = i128::from(p.schedule.interval_ms);
            let behind = (i128::from(now) - i128::from(next)) / interval;
            let after = i128::from(next) + (behind + 1) * interval;
            p.next = Some(i64::try_from(after).unwrap_or(i64::MAX));
            p.node.lock().punctuate(&mut self.ctx, kind, now)?;
        }
        Ok(())
    }

    /// Moves every store's changes to the outbox as changelog records, stamped with wall-clock
    /// time (the driver's clock under test): compaction keeps a tombstone for
    /// `delete_retention` after its timestamp, and restoring relies on that being real time
    /// (see `runtime::restore`). Caching operators forward what they hold first, so their
    /// stores' last changes go too.
    pub(crate) fn flush_stores(&mut self) -> Result<()> {
        for flusher in &self.flushers {
            flusher.lock().flush(&mut self.ctx)?;
        }
        let timestamp = self.ctx.wall_clock;
        for (store, topic) in &self.changelogs {
            store.take_changes(&mut self.scratch);
            for (key, value) in self.scratch.drain(..) {
                self.ctx.outbox.push(OutRecord {
                    topic: Arc::clone(topic),
                    partition: Some(self.id.partition),
                    key: Some(key),
                    value,
                    timestamp,
                    headers: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// The logged stores and their changelog topics.
    pub(crate) fn changelogs(&self) -> &[(Arc<dyn StateStore>, Arc<str>)] {
        &self.changelogs
    }

    pub(crate) fn take_outbox(&mut self) -> Vec<OutRecord> {
        std::mem::take(&mut self.ctx.outbox)
    }

    pub(crate) fn metrics(&self) -> TaskMetrics {
        self.ctx.metrics
    }
}

/// The changelog topic of `store`.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}
