//! Error tolerance and the dead-letter topic (Kafka Connect's `RetryWithToleranceOperator` and
//! `DeadLetterQueueReporter`, without retries).
//!
//! Under `errors.tolerance=none` the first bad record fails the task. Under `all` it is skipped;
//! a sink with `errors.deadletterqueue.topic.name` sends the record as it was read (key, value,
//! headers) to that topic, with Kafka's `__connect.errors.*` headers saying where it came from
//! and why it failed (unless `errors.deadletterqueue.context.headers.enable=false`). The
//! dead-letter record is acknowledged before the handler returns, so it is durable before the
//! offset that skips the bad record is committed.

use std::sync::Arc;

use bytes::Bytes;

use super::config::{ConnectorConfig, ErrorTolerance};
use super::control::TaskControl;
use crate::broker::Broker;
use crate::consumer::ConsumerRecord;
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerRecord};
use crate::record::Header;

/// Kafka's header names.
pub const ERROR_HEADER_TOPIC: &str = "__connect.errors.topic";
/// Partition the failed record was read from.
pub const ERROR_HEADER_PARTITION: &str = "__connect.errors.partition";
/// Offset the failed record was read at.
pub const ERROR_HEADER_OFFSET: &str = "__connect.errors.offset";
/// The connector's name.
pub const ERROR_HEADER_CONNECTOR: &str = "__connect.errors.connector.name";
/// The task's number.
pub const ERROR_HEADER_TASK: &str = "__connect.errors.task.id";
/// The stage that failed (`KEY_CONVERTER`, `VALUE_CONVERTER`, `TRANSFORMATION`, `TASK_PUT`).
pub const ERROR_HEADER_STAGE: &str = "__connect.errors.stage";
/// The converter, transform or task that failed.
pub const ERROR_HEADER_CLASS: &str = "__connect.errors.class.name";
/// The kind of error (`tidelog::Error::Codec`, ...).
pub const ERROR_HEADER_EXCEPTION: &str = "__connect.errors.exception.class.name";
/// The error's message.
pub const ERROR_HEADER_MESSAGE: &str = "__connect.errors.exception.message";
/// The error's details (its debug form; Rust has no stack trace to give).
pub const ERROR_HEADER_STACKTRACE: &str = "__connect.errors.exception.stacktrace";

/// Where in the pipeline a record failed (Kafka Connect's `Stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    TaskPut,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// A task's error handling.
pub(crate) struct ErrorHandler {
    connector: Arc<str>,
    task: usize,
    tolerance: ErrorTolerance,
    dead_letter: Option<DeadLetter>,
    control: Arc<TaskControl>,
}

struct DeadLetter {
    topic: String,
    context_headers: bool,
    producer: Producer,
}

impl ErrorHandler {
    /// The handler `config` asks for. A dead-letter topic is only for sinks (as in Kafka
    /// Connect); it is created with one partition when missing.
    pub fn new(
        broker: &Broker,
        config: &ConnectorConfig,
        task: usize,
        sink: bool,
        control: Arc<TaskControl>,
    ) -> Result<ErrorHandler> {
        let tolerance = ErrorTolerance::from_config(config)?;
        let key = "errors.deadletterqueue.topic.name";
        let dead_letter =
            match config.get(key).map(str::trim).filter(|t| !t.is_empty()) {
                None => None,
                Some(_) if !sink => return Err(config.error(
                    key,
                    "a dead-letter topic is for sink connectors (as in Kafka Connect); a source \
                     skips bad records under errors.tolerance=all",
                )),
                Some(topic) => {
                    match broker.create_topic(topic, 1) {
                        Ok(_) | Err(Error::TopicExists(_)) => {}
                        Err(e) => return Err(config.error(key, &e.to_string())),
                    }
                    Some(DeadLetter {
                        topic: topic.to_string(),
                        context_headers: config
                            .bool_or("errors.deadletterqueue.context.headers.enable", true)?,
                        producer: broker.producer()?,
                    })
                }
            };
        Ok(ErrorHandler {
            connector: config.name().into(),
            task,
            tolerance,
            dead_letter,
            control,
        })
    }

    /// Handles `error` of `stage` (in `class`) on `raw`, the record as read (sinks). Returns the
    /// error back under `errors.tolerance=none`; skips the record otherwise.
    pub fn tolerate(
        &self,
        stage: Stage,
        class: &str,
        raw: Option<&ConsumerRecord>,
        error: Error,
    ) -> Result<()> {
        if self.tolerance == ErrorTolerance::None {
            return Err(error);
        }
        TaskControl::count(&self.control.skipped, 1);
        if let (Some(dlq), Some(raw)) = (&self.dead_letter, raw) {
            self.send(dlq, stage, class, raw, &error)?;
            TaskControl::count(&self.control.dead_lettered, 1);
        }
        Ok(())
    }

    fn send(
        &self,
        dlq: &DeadLetter,
        stage: Stage,
        class: &str,
        raw: &ConsumerRecord,
        error: &Error,
    ) -> Result<()> {
        let mut headers = raw.headers.clone();
        if dlq.context_headers {
            let debug = format!("{error:?}");
            let kind = debug
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or("Error");
            for (name, value) in [
                (ERROR_HEADER_TOPIC, raw.topic.to_string()),
                (ERROR_HEADER_PARTITION, raw.partition.to_string()),
                (ERROR_HEADER_OFFSET, raw.offset.to_string()),
                (ERROR_HEADER_CONNECTOR, self.connector.to_string()),
                (ERROR_HEADER_TASK, self.task.to_string()),
                (ERROR_HEADER_STAGE, stage.as_str().to_string()),
                (ERROR_HEADER_CLASS, class.to_string()),
                (ERROR_HEADER_EXCEPTION, format!("tidelog::Error::{kind}")),
                (ERROR_HEADER_MESSAGE, error.to_string()),
                (ERROR_HEADER_STACKTRACE, debug.clone()),
            ] {
                headers.push(Header::new(name, Bytes::from(value.into_bytes())));
            }
        }
        let mut record = ProducerRecord::new(dlq.topic.clone(), Bytes::new())
            .value(raw.value.clone())
            .timestamp(raw.timestamp)
            .headers(headers);
        if let Some(key) = &raw.key {
            record = record.key(key.clone());
        }
        dlq.producer.send(record)?;
        Ok(())
    }
}
