//! Single-record transforms (Kafka Connect's SMTs): the [`Transform`] trait, the built-ins
//! [`InsertField`], [`ReplaceField`], [`RegexRouter`] and [`Filter`], and [`Predicate`]s that
//! make a transform apply only to some records.
//!
//! In a config, as in Kafka Connect:
//!
//! ```text
//! "transforms": "addSource,route,dropDebug",
//! "transforms.addSource.type": "org.apache.kafka.connect.transforms.InsertField$Value",
//! "transforms.addSource.static.field": "source",
//! "transforms.addSource.static.value": "app-log",
//! "transforms.route.type": "RegexRouter",
//! "transforms.route.regex": "(.*)-raw",
//! "transforms.route.replacement": "$1-clean",
//! "transforms.dropDebug.type": "Filter",
//! "transforms.dropDebug.predicate": "isDebug",
//! "predicates": "isDebug",
//! "predicates.isDebug.type": "FieldMatches",
//! "predicates.isDebug.field": "level",
//! "predicates.isDebug.pattern": "DEBUG"
//! ```
//!
//! Types may be named by Kafka's class name or its last part (`InsertField$Value`,
//! `RegexRouter`). Transforms run in the order listed; one that drops a record ends the chain
//! for it. A sink's transforms run after its converters, a source's before them.

use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use super::config::ConnectorConfig;
use super::data::{ConnectData, ConnectRecord};
use crate::error::{Error, Result};

/// Changes, replaces or drops one record (Kafka Connect's `Transformation`).
///
/// Each task has its own instances, so `apply` may keep state. Return `Ok(None)` to drop the
/// record, an error for a record that cannot be transformed: the connector's
/// `errors.tolerance` decides whether that fails the task or skips the record (into the
/// dead-letter topic of a sink).
///
/// ```
/// use tidelog::{ConnectRecord, ConnectData, Transform};
///
/// /// Upper-cases text values.
/// struct Shout;
///
/// impl Transform for Shout {
///     fn apply(&mut self, mut record: ConnectRecord) -> tidelog::Result<Option<ConnectRecord>> {
///         if let Some(ConnectData::String(s)) = &mut record.value {
///             *s = s.to_uppercase();
///         }
///         Ok(Some(record))
///     }
/// }
///
/// let out = Shout.apply(ConnectRecord::new("t", "hi"))?.unwrap();
/// assert_eq!(out.value, Some(ConnectData::String("HI".into())));
/// # Ok::<(), tidelog::Error>(())
/// ```
pub trait Transform: Send {
    /// The transformed record, or `None` to drop it.
    fn apply(&mut self, record: ConnectRecord) -> Result<Option<ConnectRecord>>;

    /// A name for error reports (the dead-letter topic's `__connect.errors.class.name`).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

/// Which part of a record a field transform works on (Kafka's `$Key` and `$Value` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldTarget {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl FieldTarget {
    fn part(self, record: &mut ConnectRecord) -> &mut Option<ConnectData> {
        match self {
            FieldTarget::Key => &mut record.key,
            FieldTarget::Value => &mut record.value,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            FieldTarget::Key => "$Key",
            FieldTarget::Value => "$Value",
        }
    }
}

/// The JSON object of a record's key or value; `None` for a missing key or a tombstone.
fn object_of<'a>(
    target: FieldTarget,
    transform: &str,
    record: &'a mut ConnectRecord,
) -> Result<Option<&'a mut Map<String, Value>>> {
    match target.part(record) {
        None => Ok(None),
        Some(ConnectData::Json(Value::Object(map))) => Ok(Some(map)),
        Some(other) => Err(Error::InvalidArgument(format!(
            "{transform}{} needs a JSON object (set the converter to json), got {}",
            target.suffix(),
            match other {
                ConnectData::Bytes(_) => "bytes",
                ConnectData::String(_) => "text",
                ConnectData::Json(_) => "JSON that is not an object",
            }
        ))),
    }
}

/// Adds fields to a JSON object key or value (Kafka's `InsertField`): a constant, and the
/// record's topic, partition, offset (sink records only) and timestamp. Tombstones pass as they
/// are.
///
/// Config keys: `static.field` with `static.value`, `topic.field`, `partition.field`,
/// `offset.field`, `timestamp.field`.
///
/// ```
/// use serde_json::json;
/// use tidelog::{ConnectRecord, InsertField, Transform};
///
/// let mut t = InsertField::value().static_field("source", "app").topic_field("topic");
/// let out = t.apply(ConnectRecord::new("orders", json!({"id": 1})))?.unwrap();
/// assert_eq!(out.value, Some(json!({"id": 1, "source": "app", "topic": "orders"}).into()));
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InsertField {
    target: FieldTarget,
    static_field: Option<(String, Value)>,
    topic_field: Option<String>,
    partition_field: Option<String>,
    offset_field: Option<String>,
    timestamp_field: Option<String>,
}

impl InsertField {
    /// Inserts into values (`InsertField$Value`); nothing to insert yet.
    pub fn value() -> Self {
        InsertField::new(FieldTarget::Value)
    }

    /// Inserts into keys (`InsertField$Key`); nothing to insert yet.
    pub fn key() -> Self {
        InsertField::new(FieldTarget::Key)
    }

    fn new(target: FieldTarget) -> Self {
        InsertField {
            target,
            static_field: None,
            topic_field: None,
            partition_field: None,
            offset_field: None,
            timestamp_field: None,
        }
    }

    /// Inserts the constant `value` as `field`. Default: none.
    #[must_use]
    pub fn static_field(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.static_field = Some((field.into(), value.into()));
        self
    }

    /// Inserts the topic's name as `field`. Default: none.
    #[must_use]
    pub fn topic_field(mut self, field: impl Into<String>) -> Self {
        self.topic_field = Some(field.into());
        self
    }

    /// Inserts the partition (when known) as `field`. Default: none.
    #[must_use]
    pub fn partition_field(mut self, field: impl Into<String>) -> Self {
        self.partition_field = Some(field.into());
        self
    }

    /// Inserts a sink record's offset as `field`. Default: none.
    #[must_use]
    pub fn offset_field(mut self, field: impl Into<String>) -> Self {
        self.offset_field = Some(field.into());
        self
    }

    /// Inserts the timestamp (milliseconds since the epoch, when known) as `field`.
    /// Default: none.
    #[must_use]
    pub fn timestamp_field(mut self, field: impl Into<String>) -> Self {
        self.timestamp_field = Some(field.into());
        self
    }

    fn from_config(target: FieldTarget, c: &ConnectorConfig, prefix: &str) -> Result<Self> {
        let key = |k: &str| format!("{prefix}{k}");
        let mut t = InsertField::new(target);
        if let Some(field) = c.get(&key("static.field")) {
            let value = c.get(&key("static.value")).unwrap_or_default();
            t.static_field = Some((field.to_string(), Value::String(value.to_string())));
        } else if c.get(&key("static.value")).is_some() {
            return Err(c.error(&key("static.field"), "is required with static.value"));
        }
        t.topic_field = c.get(&key("topic.field")).map(str::to_string);
        t.partition_field = c.get(&key("partition.field")).map(str::to_string);
        t.offset_field = c.get(&key("offset.field")).map(str::to_string);
        t.timestamp_field = c.get(&key("timestamp.field")).map(str::to_string);
        if t == InsertField::new(target) {
            return Err(c.error(
                &key("static.field"),
                "InsertField needs at least one of static.field, topic.field, partition.field, \
                 offset.field, timestamp.field",
            ));
        }
        Ok(t)
    }
}

impl Transform for InsertField {
    fn apply(&mut self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let topic = Arc::clone(&record.topic);
        let (partition, offset, timestamp) = (record.partition, record.offset, record.timestamp);
        let Some(map) = object_of(self.target, "InsertField", &mut record)? else {
            return Ok(Some(record));
        };
        if let Some((field, value)) = &self.static_field {
            map.insert(field.clone(), value.clone());
        }
        if let Some(field) = &self.topic_field {
            map.insert(field.clone(), Value::String(topic.to_string()));
        }
        let optional = |v: Option<u64>| v.map_or(Value::Null, Value::from);
        if let Some(field) = &self.partition_field {
            map.insert(field.clone(), optional(partition.map(u64::from)));
        }
        if let Some(field) = &self.offset_field {
            map.insert(field.clone(), optional(offset));
        }
        if let Some(field) = &self.timestamp_field {
            map.insert(field.clone(), timestamp.map_or(Value::Null, Value::from));
        }
        Ok(Some(record))
    }

    fn name(&self) -> &str {
        match self.target {
            FieldTarget::Key => "InsertField$Key",
            FieldTarget::Value => "InsertField$Value",
        }
    }
}

/// Keeps, drops and renames fields of a JSON object key or value (Kafka's `ReplaceField`):
/// `include` keeps only the listed fields (all when empty), `exclude` drops the listed ones,
/// then `renames` renames (`old:new,...`). Tombstones pass as they are.
///
/// ```
/// use serde_json::json;
/// use tidelog::{ConnectRecord, ReplaceField, Transform};
///
/// let mut t = ReplaceField::value().exclude(["secret"]).rename("qty", "quantity");
/// let out = t.apply(ConnectRecord::new("t", json!({"qty": 2, "secret": "x"})))?.unwrap();
/// assert_eq!(out.value, Some(json!({"quantity": 2}).into()));
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceField {
    target: FieldTarget,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: Vec<(String, String)>,
}

impl ReplaceField {
    /// Works on values (`ReplaceField$Value`); changes nothing yet.
    pub fn value() -> Self {
        ReplaceField::new(FieldTarget::Value)
    }

    /// Works on keys (`ReplaceField$Key`); changes nothing yet.
    pub fn key() -> Self {
        ReplaceField::new(FieldTarget::Key)
    }

    fn new(target: FieldTarget) -> Self {
        ReplaceField {
            target,
            include: Vec::new(),
            exclude: Vec::new(),
            renames: Vec::new(),
        }
    }

    /// Keeps only these fields (Kafka's `include`). Default: every field.
    #[must_use]
    pub fn include<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.include = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Drops these fields (Kafka's `exclude`). Default: none.
    #[must_use]
    pub fn exclude<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.exclude = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Renames field `from` to `to` (one entry of Kafka's `renames`). Default: none.
    #[must_use]
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.push((from.into(), to.into()));
        self
    }

    fn from_config(target: FieldTarget, c: &ConnectorConfig, prefix: &str) -> Result<Self> {
        let key = |k: &str| format!("{prefix}{k}");
        let mut t = ReplaceField::new(target);
        t.include = c.list(&key("include"));
        t.include.extend(c.list(&key("whitelist")));
        t.exclude = c.list(&key("exclude"));
        t.exclude.extend(c.list(&key("blacklist")));
        for pair in c.list(&key("renames")) {
            let Some((from, to)) = pair.split_once(':') else {
                return Err(c.error(&key("renames"), &format!("`{pair}` is not `old:new`")));
            };
            t.renames
                .push((from.trim().to_string(), to.trim().to_string()));
        }
        Ok(t)
    }
}

impl Transform for ReplaceField {
    fn apply(&mut self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let Some(map) = object_of(self.target, "ReplaceField", &mut record)? else {
            return Ok(Some(record));
        };
        if !self.include.is_empty() {
            map.retain(|k, _| self.include.iter().any(|i| i == k));
        }
        for field in &self.exclude {
            map.remove(field);
        }
        for (from, to) in &self.renames {
            if let Some(v) = map.remove(from) {
                map.insert(to.clone(), v);
            }
        }
        Ok(Some(record))
    }

    fn name(&self) -> &str {
        match self.target {
            FieldTarget::Key => "ReplaceField$Key",
            FieldTarget::Value => "ReplaceField$Value",
        }
    }
}

/// Sends records to another topic, computed from their topic by a regular expression (Kafka's
/// `RegexRouter`): when `regex` matches the whole topic name, the topic becomes `replacement`,
/// in which `$1`, `$2`, ... are the groups (Java's syntax, as in Kafka's configs). Topics that
/// do not match stay.
///
/// ```
/// use tidelog::{ConnectRecord, RegexRouter, Transform};
///
/// let mut t = RegexRouter::new("(.*)-raw", "$1-clean")?;
/// assert_eq!(&*t.apply(ConnectRecord::new("orders-raw", "x"))?.unwrap().topic, "orders-clean");
/// assert_eq!(&*t.apply(ConnectRecord::new("other", "x"))?.unwrap().topic, "other");
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegexRouter {
    regex: Regex,
    replacement: String,
}

impl RegexRouter {
    /// A router from topics matching `regex` to `replacement`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an invalid regular expression.
    pub fn new(regex: &str, replacement: &str) -> Result<Self> {
        let anchored = Regex::new(&format!("^(?:{regex})$"))
            .map_err(|e| Error::InvalidArgument(format!("invalid regex `{regex}`: {e}")))?;
        Ok(RegexRouter {
            regex: anchored,
            replacement: java_replacement(replacement),
        })
    }
}

/// Java's `$1abc` (group 1, then `abc`) in Rust's syntax (`${1}abc`); `\$` is a literal `$`.
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

impl Transform for RegexRouter {
    fn apply(&mut self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        if self.regex.is_match(&record.topic) {
            let topic = self
                .regex
                .replace(&record.topic, self.replacement.as_str())
                .into_owned();
            record.topic = topic.into();
        }
        Ok(Some(record))
    }

    fn name(&self) -> &'static str {
        "RegexRouter"
    }
}

/// Drops every record it is applied to (Kafka's `Filter`); give it a [`Predicate`] (in code
/// with [`Conditional`], in a config with `transforms.<name>.predicate`) to drop only the
/// records that match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter;

impl Transform for Filter {
    fn apply(&mut self, _record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        Ok(None)
    }

    fn name(&self) -> &'static str {
        "Filter"
    }
}

/// A condition on a record (Kafka Connect's predicates, plus `FieldMatches`).
///
/// Config types and keys: `TopicNameMatches` (`pattern`), `HasHeaderKey` (`name`),
/// `RecordIsTombstone`, `FieldMatches` (`pattern`, and `field` of a JSON object value; without
/// `field` the whole value's text).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Predicate {
    /// The topic's whole name matches the regular expression.
    TopicNameMatches(Regex),
    /// The record has a header of this name.
    HasHeaderKey(String),
    /// The record is a tombstone (no value).
    RecordIsTombstone,
    /// The value's text, or the text of one field of a JSON object value, contains a match of
    /// the regular expression (records without that field or value do not match).
    FieldMatches {
        /// The field of a JSON object value; `None` for the whole value.
        field: Option<String>,
        /// The pattern.
        pattern: Regex,
    },
}

impl Predicate {
    /// [`Predicate::TopicNameMatches`] of `pattern` (matched against the whole name).
    ///
    /// Errors: [`Error::InvalidArgument`] for an invalid regular expression.
    pub fn topic_name_matches(pattern: &str) -> Result<Self> {
        Ok(Predicate::TopicNameMatches(regex(&format!(
            "^(?:{pattern})$"
        ))?))
    }

    /// [`Predicate::FieldMatches`]: `field` of the value (the whole value for `None`) contains
    /// a match of `pattern`.
    ///
    /// Errors: [`Error::InvalidArgument`] for an invalid regular expression.
    pub fn field_matches(field: Option<&str>, pattern: &str) -> Result<Self> {
        Ok(Predicate::FieldMatches {
            field: field.map(str::to_string),
            pattern: regex(pattern)?,
        })
    }

    /// Whether `record` satisfies the condition.
    pub fn test(&self, record: &ConnectRecord) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(&record.topic),
            Predicate::HasHeaderKey(name) => record.headers.iter().any(|h| &h.key == name),
            Predicate::RecordIsTombstone => record.value.is_none(),
            Predicate::FieldMatches { field, pattern } => {
                let Some(value) = &record.value else {
                    return false;
                };
                match field {
                    None => value.to_text().is_some_and(|t| pattern.is_match(&t)),
                    Some(field) => match value.as_object().and_then(|m| m.get(field)) {
                        Some(Value::String(s)) => pattern.is_match(s),
                        Some(Value::Null) | None => false,
                        Some(other) => pattern.is_match(&other.to_string()),
                    },
                }
            }
        }
    }

    fn from_config(c: &ConnectorConfig, name: &str) -> Result<Self> {
        let prefix = format!("predicates.{name}.");
        let key = |k: &str| format!("{prefix}{k}");
        let kind = c.required(&key("type"))?;
        let bad = |k: &str, e: Error| c.error(&key(k), &e.to_string());
        match simple_name(kind) {
            "TopicNameMatches" => Predicate::topic_name_matches(c.required(&key("pattern"))?)
                .map_err(|e| bad("pattern", e)),
            "HasHeaderKey" => Ok(Predicate::HasHeaderKey(
                c.required(&key("name"))?.to_string(),
            )),
            "RecordIsTombstone" => Ok(Predicate::RecordIsTombstone),
            "FieldMatches" => {
                Predicate::field_matches(c.get(&key("field")), c.required(&key("pattern"))?)
                    .map_err(|e| bad("pattern", e))
            }
            _ => Err(c.error(
                &key("type"),
                &format!(
                    "unknown predicate `{kind}`: use TopicNameMatches, HasHeaderKey, \
                     RecordIsTombstone or FieldMatches"
                ),
            )),
        }
    }
}

fn regex(pattern: &str) -> Result<Regex> {
    Regex::new(pattern)
        .map_err(|e| Error::InvalidArgument(format!("invalid regex `{pattern}`: {e}")))
}

/// A transform applied only to records for which a [`Predicate`] holds (or, negated, does not
/// hold); other records pass unchanged. Kafka's `transforms.<name>.predicate` and `.negate`.
///
/// ```
/// use tidelog::{Conditional, ConnectRecord, Filter, Predicate, Transform};
///
/// let mut drop_debug = Conditional::new(Filter, Predicate::field_matches(None, "^DEBUG")?, false);
/// assert!(drop_debug.apply(ConnectRecord::new("log", "DEBUG x"))?.is_none());
/// assert!(drop_debug.apply(ConnectRecord::new("log", "INFO y"))?.is_some());
/// # Ok::<(), tidelog::Error>(())
/// ```
pub struct Conditional {
    transform: Box<dyn Transform>,
    predicate: Predicate,
    negate: bool,
}

impl std::fmt::Debug for Conditional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conditional")
            .field("transform", &self.transform.name())
            .field("predicate", &self.predicate)
            .field("negate", &self.negate)
            .finish()
    }
}

impl Conditional {
    /// `transform` where `predicate` holds (`negate = false`) or where it does not (`true`).
    pub fn new(transform: impl Transform + 'static, predicate: Predicate, negate: bool) -> Self {
        Conditional {
            transform: Box::new(transform),
            predicate,
            negate,
        }
    }
}

impl Transform for Conditional {
    fn apply(&mut self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        if self.predicate.test(&record) == self.negate {
            return Ok(Some(record));
        }
        self.transform.apply(record)
    }

    fn name(&self) -> &str {
        self.transform.name()
    }
}

/// The part of a Java class name after its last `.`.
pub(crate) fn simple_name(class: &str) -> &str {
    let class = class.trim();
    class.rsplit('.').next().unwrap_or(class)
}

/// A built-in transform of type `kind`, configured from the keys under `prefix`
/// (`transforms.<name>.`); `None` if `kind` is not a built-in.
pub(crate) fn builtin(
    kind: &str,
    c: &ConnectorConfig,
    prefix: &str,
) -> Option<Result<Box<dyn Transform>>> {
    let key = |k: &str| format!("{prefix}{k}");
    let made: Result<Box<dyn Transform>> = match simple_name(kind) {
        "InsertField$Value" => InsertField::from_config(FieldTarget::Value, c, prefix)
            .map(|t| Box::new(t) as Box<dyn Transform>),
        "InsertField$Key" => InsertField::from_config(FieldTarget::Key, c, prefix)
            .map(|t| Box::new(t) as Box<dyn Transform>),
        "ReplaceField$Value" => ReplaceField::from_config(FieldTarget::Value, c, prefix)
            .map(|t| Box::new(t) as Box<dyn Transform>),
        "ReplaceField$Key" => ReplaceField::from_config(FieldTarget::Key, c, prefix)
            .map(|t| Box::new(t) as Box<dyn Transform>),
        "RegexRouter" => (|| {
            let regex = c.required(&key("regex"))?;
            let replacement = c.required(&key("replacement"))?;
            RegexRouter::new(regex, replacement)
                .map(|t| Box::new(t) as Box<dyn Transform>)
                .map_err(|e| c.error(&key("regex"), &e.to_string()))
        })(),
        "Filter" => Ok(Box::new(Filter)),
        _ => return None,
    };
    Some(made)
}

/// The predicate named by `transforms.<name>.predicate`, if any, with its `negate`.
pub(crate) fn predicate_of(c: &ConnectorConfig, prefix: &str) -> Result<Option<(Predicate, bool)>> {
    let key = |k: &str| format!("{prefix}{k}");
    let negate = c.bool_or(&key("negate"), false)?;
    let Some(name) = c.get(&key("predicate")).map(str::trim) else {
        return Ok(None);
    };
    if !c.list("predicates").iter().any(|p| p == name) {
        return Err(c.error(
            &key("predicate"),
            &format!("`{name}` is not listed in `predicates`"),
        ));
    }
    Ok(Some((Predicate::from_config(c, name)?, negate)))
}

/// A boxed transform applied under a predicate.
pub(crate) fn conditional(
    transform: Box<dyn Transform>,
    predicate: Predicate,
    negate: bool,
) -> Box<dyn Transform> {
    Box::new(Conditional {
        transform,
        predicate,
        negate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn java_replacements() {
        assert_eq!(java_replacement("$1abc"), "${1}abc");
        assert_eq!(java_replacement("a\\$b$"), "a$$b$$");
        let mut r = RegexRouter::new("(.*)-(\\d+)", "$2x$1").unwrap();
        let out = r
            .apply(ConnectRecord::new("orders-7", "v"))
            .unwrap()
            .unwrap();
        assert_eq!(&*out.topic, "7xorders");
    }

    #[test]
    fn insert_field_refuses_text_and_passes_tombstones() {
        let mut t = InsertField::value().static_field("a", 1);
        let e = t.apply(ConnectRecord::new("t", "text")).unwrap_err();
        assert!(e.to_string().contains("InsertField$Value"), "{e}");
        let mut tomb = ConnectRecord::new("t", "x");
        tomb.value = None;
        assert_eq!(t.apply(tomb.clone()).unwrap(), Some(tomb));
    }

    #[test]
    fn from_config() {
        let c = ConnectorConfig::new("n", "c")
            .set("transforms.r.renames", "a:b,c")
            .set("predicates", "p")
            .set(
                "predicates.p.type",
                "org.apache.kafka.connect.transforms.predicates.Nope",
            )
            .set("transforms.f.predicate", "p");
        let Some(Err(e)) = builtin("ReplaceField$Value", &c, "transforms.r.") else {
            panic!("expected an error");
        };
        assert!(e.to_string().contains("transforms.r.renames"), "{e}");
        let e = predicate_of(&c, "transforms.f.").unwrap_err();
        assert!(e.to_string().contains("predicates.p.type"), "{e}");
        assert!(builtin("Nope", &c, "transforms.x.").is_none());
        let p = Predicate::field_matches(Some("level"), "DEBUG").unwrap();
        assert!(p.test(&ConnectRecord::new("t", json!({"level": "DEBUG"}))));
        assert!(!p.test(&ConnectRecord::new("t", json!({"lvl": "DEBUG"}))));
    }
}
