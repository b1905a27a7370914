//! `ConnectorConfig`: a connector's settings as Kafka Connect writes them, a map of string keys
//! to string values (`name`, `connector.class`, `tasks.max`, `topics`, `file`, ...), set in
//! code or loaded from a JSON file of Kafka Connect's shape.
//!
//! Typed getters report a bad value as [`Error::ConnectorConfig`] naming the connector and the
//! key, so a user can fix the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// `name`: the connector's name, unique in a runtime.
pub const NAME: &str = "name";
/// `connector.class`: which connector (a built-in or a registered one).
pub const CONNECTOR_CLASS: &str = "connector.class";
/// `tasks.max`: the most tasks the connector's work is split into.
pub const TASKS_MAX: &str = "tasks.max";
/// The most tasks a connector may have (`tasks.max`): each task is a thread of this process.
pub const MAX_TASKS: usize = 1024;

/// Longest connector name accepted (it becomes part of a consumer group id and thread names).
const MAX_NAME_LEN: usize = 249;

/// A connector's configuration: string keys to string values, as in Kafka Connect.
///
/// Keys every connector understands (the runtime reads them): `name`, `connector.class`,
/// `tasks.max` (default 1), `key.converter` and `value.converter` (`string`, the default,
/// `json`, `bytes` or Kafka's class names), `transforms` and `predicates` (see
/// [`Transform`](crate::Transform)), `errors.tolerance` (`none`, the default, or `all`),
/// `errors.deadletterqueue.topic.name` and `errors.deadletterqueue.context.headers.enable`
/// (default `true`); for sinks `topics` (comma-separated) or `topics.regex`; for sources
/// `topic.creation.default.partitions` (default 1: topics a source writes to are created when
/// missing). Each connector documents its own keys.
///
/// ```
/// use tidelog::ConnectorConfig;
///
/// let config = ConnectorConfig::new("local-file-source", "FileStreamSource")
///     .set("tasks.max", "1")
///     .set("file", "/var/log/app.log")
///     .set("topic", "logs");
/// assert_eq!(config.name(), "local-file-source");
/// assert_eq!(config.get("topic"), Some("logs"));
///
/// // The same, as a Kafka Connect JSON file.
/// let json = r#"{"name": "local-file-source",
///                "config": {"connector.class": "FileStreamSource", "tasks.max": 1,
///                           "file": "/var/log/app.log", "topic": "logs"}}"#;
/// assert_eq!(ConnectorConfig::from_json(json)?, config);
///
/// let bad = ConnectorConfig::new("x", "FileStreamSource").set("tasks.max", "many");
/// assert!(bad.tasks_max().unwrap_err().to_string().contains("tasks.max"));
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    props: BTreeMap<String, String>,
}

impl ConnectorConfig {
    /// A configuration with `name` and `connector.class` set.
    pub fn new(name: impl Into<String>, class: impl Into<String>) -> Self {
        let mut props = BTreeMap::new();
        props.insert(NAME.to_string(), name.into());
        props.insert(CONNECTOR_CLASS.to_string(), class.into());
        ConnectorConfig { props }
    }

    /// A configuration of exactly these entries (for example a task's configuration).
    pub fn from_map(props: BTreeMap<String, String>) -> Self {
        ConnectorConfig { props }
    }

    /// Sets `key` to `value`, replacing an earlier value.
    #[must_use]
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.props.insert(key.into(), value.into());
        self
    }

    /// Sets `key` to `value` in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.props.insert(key.into(), value.into());
    }

    /// Parses a Kafka Connect JSON configuration: either the REST API's shape
    /// `{"name": ..., "config": {...}}` or a flat object with `name` among the keys (the shape
    /// of a standalone worker's properties). Numbers and booleans are taken as their text,
    /// arrays of strings are joined with commas, `null` leaves a key unset.
    ///
    /// Errors: [`Error::ConnectorConfig`] for text that is not such an object, naming the key
    /// at fault (an object as a value, a missing `name` or `connector.class`).
    pub fn from_json(text: &str) -> Result<ConnectorConfig> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::ConnectorConfig {
            connector: String::new(),
            key: String::new(),
            reason: format!("the configuration is not valid JSON: {e}"),
        })?;
        let Value::Object(mut top) = value else {
            return Err(Error::ConnectorConfig {
                connector: String::new(),
                key: String::new(),
                reason: "the configuration must be a JSON object".into(),
            });
        };
        let name_hint = top
            .get(NAME)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut props = BTreeMap::new();
        let nested = match top.remove("config") {
            Some(Value::Object(config)) => Some(config),
            Some(_) => {
                return Err(Error::ConnectorConfig {
                    connector: name_hint,
                    key: "config".into(),
                    reason: "must be a JSON object of settings".into(),
                })
            }
            None => None,
        };
        for (key, value) in top.into_iter().chain(nested.into_iter().flatten()) {
            if let Some(text) = json_setting(&name_hint, &key, value)? {
                props.insert(key, text);
            }
        }
        let config = ConnectorConfig { props };
        config.check_identity()?;
        Ok(config)
    }

    /// Reads and parses a JSON configuration file (see [`from_json`](Self::from_json)).
    ///
    /// Errors: [`Error::Io`] if it cannot be read; as `from_json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<ConnectorConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
        ConnectorConfig::from_json(&text)
    }

    /// The connector's name (`name`; empty if unset).
    pub fn name(&self) -> &str {
        self.get(NAME).unwrap_or_default()
    }

    /// The connector's class (`connector.class`; empty if unset).
    pub fn class(&self) -> &str {
        self.get(CONNECTOR_CLASS).unwrap_or_default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    /// The value of `key`, which must be set and not empty.
    ///
    /// Errors: [`Error::ConnectorConfig`] naming `key`.
    pub fn required(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.error(key, "is required")),
        }
    }

    /// The value of `key` parsed as a `T`, or `default` if unset.
    ///
    /// Errors: [`Error::ConnectorConfig`] naming `key` when the value does not parse.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| self.error(key, &format!("`{v}` does not parse: {e}"))),
        }
    }

    /// The value of `key` as a boolean (`true` or `false`, any case), or `default` if unset.
    ///
    /// Errors: [`Error::ConnectorConfig`] naming `key` for other values.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.error(key, &format!("`{v}` is not `true` or `false`"))),
        }
    }

    /// The value of `key` as a comma-separated list, trimmed, without empty items; empty if
    /// unset.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `tasks.max`: at least 1; default 1.
    ///
    /// Errors: [`Error::ConnectorConfig`] naming `tasks.max`.
    pub fn tasks_max(&self) -> Result<usize> {
        let n: usize = self.parse_or(TASKS_MAX, 1)?;
        if n == 0 {
            return Err(self.error(TASKS_MAX, "must be at least 1"));
        }
        // Each task is a thread of this process.
        if n > MAX_TASKS {
            return Err(self.error(
                TASKS_MAX,
                &format!("must be at most {MAX_TASKS} (each task is a thread)"),
            ));
        }
        Ok(n)
    }

    /// Every entry, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.props.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A copy of the entries, for a connector that builds its tasks' configurations from its
    /// own.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.props.clone()
    }

    /// An [`Error::ConnectorConfig`] for this connector naming `key`, for connectors that
    /// check their own settings.
    pub fn error(&self, key: &str, reason: &str) -> Error {
        Error::ConnectorConfig {
            connector: self.name().to_string(),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Checks `name` and `connector.class`.
    pub(crate) fn check_identity(&self) -> Result<()> {
        let name = self.required(NAME)?;
        if name.len() > MAX_NAME_LEN {
            return Err(self.error(NAME, "can have at most 249 characters"));
        }
        if name.chars().any(char::is_control) || name.contains('/') {
            return Err(self.error(NAME, "cannot contain control characters or `/`"));
        }
        self.required(CONNECTOR_CLASS)?;
        Ok(())
    }
}

/// A JSON setting's value as text; `None` for `null`.
fn json_setting(connector: &str, key: &str, value: Value) -> Result<Option<String>> {
    let bad = |reason: &str| Error::ConnectorConfig {
        connector: connector.to_string(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    Ok(match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => parts.push(s),
                    Value::Number(n) => parts.push(n.to_string()),
                    _ => return Err(bad("a list may only hold strings and numbers")),
                }
            }
            Some(parts.join(","))
        }
        Value::Object(_) => return Err(bad("must be a string, number, boolean or list")),
    })
}

/// What the runtime does with a record whose conversion or transformation fails, or that a
/// sink task reports as bad (Kafka Connect's `errors.tolerance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorTolerance {
    /// The task fails at the first bad record (`none`, the default).
    #[default]
    None,
    /// Bad records are skipped, and a sink sends them to its dead-letter topic if it has one
    /// (`all`).
    All,
}

impl ErrorTolerance {
    /// `errors.tolerance` of `config`.
    pub(crate) fn from_config(config: &ConnectorConfig) -> Result<Self> {
        match config.get("errors.tolerance").map(str::trim) {
            None => Ok(ErrorTolerance::None),
            Some(v) if v.eq_ignore_ascii_case("none") => Ok(ErrorTolerance::None),
            Some(v) if v.eq_ignore_ascii_case("all") => Ok(ErrorTolerance::All),
            Some(v) => {
                Err(config.error("errors.tolerance", &format!("`{v}` is not `none` or `all`")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_json_and_lists() {
        let c = ConnectorConfig::from_json(
            r#"{"name": "s", "connector.class": "FileStreamSink", "topics": ["a", "b"],
                "tasks.max": 2, "x": null, "flag": true}"#,
        )
        .unwrap();
        assert_eq!(c.list("topics"), ["a", "b"]);
        assert_eq!(c.tasks_max().unwrap(), 2);
        assert_eq!(c.get("x"), None);
        assert!(c.bool_or("flag", false).unwrap());
    }

    #[test]
    fn bad_json_names_the_key() {
        let e = ConnectorConfig::from_json(r#"{"name": "s", "connector.class": "C", "k": {}}"#)
            .unwrap_err();
        assert!(
            matches!(e, Error::ConnectorConfig { ref key, .. } if key == "k"),
            "{e}"
        );
        let e = ConnectorConfig::from_json(r#"{"config": {"connector.class": "C"}}"#).unwrap_err();
        assert!(
            matches!(e, Error::ConnectorConfig { ref key, .. } if key == "name"),
            "{e}"
        );
        assert!(ConnectorConfig::from_json("[1]").is_err());
        assert!(ConnectorConfig::from_json("{").is_err());
    }

    #[test]
    fn tolerance() {
        let c = ConnectorConfig::new("n", "c").set("errors.tolerance", "ALL");
        assert_eq!(
            ErrorTolerance::from_config(&c).unwrap(),
            ErrorTolerance::All
        );
        let c = c.set("errors.tolerance", "some");
        assert!(ErrorTolerance::from_config(&c).is_err());
    }
}
