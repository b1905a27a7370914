//! Which connector and transform a config's class names mean: the built-ins, and what the
//! application registered (Kafka Connect's plugin path, without class loading).
//!
//! A name matches a registered name exactly, or by its last `.`-separated part, so
//! `org.apache.kafka.connect.file.FileStreamSourceConnector` and `FileStreamSourceConnector`
//! both find the file source.

use std::collections::HashMap;
use std::sync::Arc;

use super::api::{SinkConnector, SourceConnector};
use super::config::ConnectorConfig;
use super::file_sink::FileStreamSinkConnector;
use super::file_source::FileStreamSourceConnector;
use super::transform::{self, simple_name, Transform};
use crate::error::Result;

pub(crate) type SourceFactory = Arc<dyn Fn() -> Box<dyn SourceConnector> + Send + Sync>;
pub(crate) type SinkFactory = Arc<dyn Fn() -> Box<dyn SinkConnector> + Send + Sync>;
/// Makes a transform from the connector's config and the transform's key prefix
/// (`transforms.<name>.`).
pub(crate) type TransformFactory =
    Arc<dyn Fn(&ConnectorConfig, &str) -> Result<Box<dyn Transform>> + Send + Sync>;

/// A connector made from a class name.
pub(crate) enum Made {
    Source(Box<dyn SourceConnector>),
    Sink(Box<dyn SinkConnector>),
}

#[derive(Clone, Default)]
pub(crate) struct Plugins {
    sources: HashMap<String, SourceFactory>,
    sinks: HashMap<String, SinkFactory>,
    transforms: HashMap<String, TransformFactory>,
}

impl Plugins {
    /// The built-in connectors, under Kafka's names and short ones.
    pub fn builtin() -> Plugins {
        let mut p = Plugins::default();
        let file_source: SourceFactory =
            Arc::new(|| Box::new(FileStreamSourceConnector::default()));
        for name in ["FileStreamSourceConnector", "FileStreamSource"] {
            p.sources.insert(name.into(), Arc::clone(&file_source));
        }
        let file_sink: SinkFactory = Arc::new(|| Box::new(FileStreamSinkConnector::default()));
        for name in ["FileStreamSinkConnector", "FileStreamSink"] {
            p.sinks.insert(name.into(), Arc::clone(&file_sink));
        }
        #[cfg(feature = "sqlite")]
        {
            use super::sql::sqlite::{SqliteSinkConnector, SqliteSourceConnector};
            let source: SourceFactory = Arc::new(|| Box::new(SqliteSourceConnector::default()));
            let sink: SinkFactory = Arc::new(|| Box::new(SqliteSinkConnector::default()));
            for name in ["SqliteSourceConnector", "SqliteSource"] {
                p.sources.insert(name.into(), Arc::clone(&source));
            }
            for name in ["SqliteSinkConnector", "SqliteSink"] {
                p.sinks.insert(name.into(), Arc::clone(&sink));
            }
        }
        #[cfg(feature = "postgres")]
        {
            use super::sql::postgres::{PostgresSinkConnector, PostgresSourceConnector};
            let source: SourceFactory = Arc::new(|| Box::new(PostgresSourceConnector::default()));
            let sink: SinkFactory = Arc::new(|| Box::new(PostgresSinkConnector::default()));
            for name in ["PostgresSourceConnector", "PostgresSource"] {
                p.sources.insert(name.into(), Arc::clone(&source));
            }
            for name in ["PostgresSinkConnector", "PostgresSink"] {
                p.sinks.insert(name.into(), Arc::clone(&sink));
            }
        }
        p
    }

    pub fn add_source(&mut self, name: &str, factory: SourceFactory) {
        self.sources.insert(name.to_string(), factory);
    }

    pub fn add_sink(&mut self, name: &str, factory: SinkFactory) {
        self.sinks.insert(name.to_string(), factory);
    }

    pub fn add_transform(&mut self, name: &str, factory: TransformFactory) {
        self.transforms.insert(name.to_string(), factory);
    }

    /// The connector `config`'s `connector.class` names.
    pub fn connector(&self, config: &ConnectorConfig) -> Result<Made> {
        let class = config.required(super::config::CONNECTOR_CLASS)?.trim();
        let short = simple_name(class);
        if let Some(f) = self.sources.get(class).or_else(|| self.sources.get(short)) {
            return Ok(Made::Source(f()));
        }
        if let Some(f) = self.sinks.get(class).or_else(|| self.sinks.get(short)) {
            return Ok(Made::Sink(f()));
        }
        if let Some(made) = jdbc(config, short) {
            return made;
        }
        let mut known: Vec<&str> = self
            .sources
            .keys()
            .chain(self.sinks.keys())
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        Err(config.error(
            super::config::CONNECTOR_CLASS,
            &format!(
                "unknown connector class `{class}`; known: {}",
                known.join(", ")
            ),
        ))
    }

    /// The transforms `config` lists under `transforms`, in order, each under its predicate.
    pub fn transforms(&self, config: &ConnectorConfig) -> Result<Vec<Box<dyn Transform>>> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for name in config.list("transforms") {
            if seen.contains(&name) {
                return Err(config.error("transforms", &format!("`{name}` is listed twice")));
            }
            let prefix = format!("transforms.{name}.");
            let type_key = format!("{prefix}type");
            let kind = config.required(&type_key)?;
            let made = match transform::builtin(kind, config, &prefix) {
                Some(made) => made?,
                None => {
                    let factory = self
                        .transforms
                        .get(kind.trim())
                        .or_else(|| self.transforms.get(simple_name(kind)))
                        .ok_or_else(|| {
                            config.error(
                                &type_key,
                                &format!(
                                    "unknown transform `{kind}`: use InsertField$Value, \
                                     InsertField$Key, ReplaceField$Value, ReplaceField$Key, \
                                     RegexRouter, Filter or a registered one"
                                ),
                            )
                        })?;
                    factory(config, &prefix)?
                }
            };
            out.push(match transform::predicate_of(config, &prefix)? {
                Some((predicate, negate)) => transform::conditional(made, predicate, negate),
                None => made,
            });
            seen.push(name);
        }
        Ok(out)
    }
}

/// Confluent's JDBC connector classes, mapped by `connection.url` to the `SQLite` or `PostgreSQL`
/// connector of this build, so that JDBC configs carry over.
#[allow(clippy::unnecessary_wraps)]
fn jdbc(config: &ConnectorConfig, short: &str) -> Option<Result<Made>> {
    let source = match short {
        "JdbcSourceConnector" => true,
        "JdbcSinkConnector" => false,
        _ => return None,
    };
    let url = config.get("connection.url").unwrap_or_default();
    #[cfg(feature = "sqlite")]
    if url.starts_with("jdbc:sqlite:") || url.starts_with("sqlite:") {
        use super::sql::sqlite::{SqliteSinkConnector, SqliteSourceConnector};
        return Some(Ok(if source {
            Made::Source(Box::new(SqliteSourceConnector::default()))
        } else {
            Made::Sink(Box::new(SqliteSinkConnector::default()))
        }));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("jdbc:postgresql:") || url.starts_with("postgres") {
        use super::sql::postgres::{PostgresSinkConnector, PostgresSourceConnector};
        return Some(Ok(if source {
            Made::Source(Box::new(PostgresSourceConnector::default()))
        } else {
            Made::Sink(Box::new(PostgresSinkConnector::default()))
        }));
    }
    let _ = source;
    Some(Err(config.error(
        "connection.url",
        &format!(
            "`{url}` is not a database this build supports: jdbc:sqlite:<path> needs the \
             `sqlite` feature, jdbc:postgresql://... the `postgres` feature"
        ),
    )))
}
