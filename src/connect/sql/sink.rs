//! The SQL sink (Confluent's `JdbcSinkTask`): each record becomes a row of the table its topic
//! names — inserted, upserted by key, or (a tombstone, with `delete.enabled`) deleted by key.
//!
//! A record's value must be a JSON object (the JSON converter's, or text holding one): its
//! fields are the columns. With `pk.mode=record_key` the key gives the key columns (a JSON
//! object's fields, or one column `pk.fields`, default `id`); with `record_value` the key
//! columns are fields of the value. Records that do not fit (no object, no key) are reported
//! as errant records (`errors.tolerance` decides); errors of the database fail the task.
//!
//! Invariants:
//! 1. Rows are written inside a transaction that the end of each `put` commits (as Confluent's
//!    `JdbcDbWriter` does; earlier after `batch.size` rows): when `put`, and so `flush`,
//!    returns, every row put before is committed, so the runtime may commit the records'
//!    offsets. No transaction stays open between calls: several tasks writing one `SQLite`
//!    file take its single write lock in turn, each for one `put`, instead of one holding it
//!    until its next flush while the others time out with "database is locked".
//! 2. Records are applied in the order given, so an update after an insert, or a delete after
//!    an upsert, of one key ends as the last record says.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

use super::settings::{InsertMode, PkMode, SinkSettings};
use super::{quote, Database};
use crate::connect::api::{SinkTask, SinkTaskContext};
use crate::connect::config::ConnectorConfig;
use crate::connect::data::{ConnectData, SinkRecord};
use crate::error::{Error, Result};

/// A sink connector over database `D`.
pub(crate) struct SqlSinkConnector<D> {
    config: Option<ConnectorConfig>,
    db: PhantomData<fn() -> D>,
}

impl<D> Default for SqlSinkConnector<D> {
    fn default() -> Self {
        SqlSinkConnector {
            config: None,
            db: PhantomData,
        }
    }
}

impl<D: Database> SqlSinkConnector<D> {
    pub fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        SinkSettings::from_config(config)?;
        // Fails early, naming the key, when the database cannot be reached.
        D::connect(config)?;
        self.config = Some(config.clone());
        Ok(())
    }

    pub fn task_configs(&self, max_tasks: usize) -> Vec<ConnectorConfig> {
        // The group shares the partitions out among the tasks.
        self.config
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.clone(), max_tasks))
            .collect()
    }

    pub fn task() -> Box<dyn SinkTask> {
        Box::new(SqlSinkTask::<D> {
            db: None,
            settings: None,
            context: None,
            tables: HashMap::new(),
            in_transaction: false,
            rows: 0,
            last: None,
        })
    }
}

struct SqlSinkTask<D> {
    db: Option<D>,
    settings: Option<SinkSettings>,
    context: Option<SinkTaskContext>,
    /// Known tables: column name to type.
    tables: HashMap<String, HashMap<String, String>>,
    in_transaction: bool,
    /// Rows written in the open transaction.
    rows: usize,
    /// The last statement built, reused while the shape of the rows stays the same.
    last: Option<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Delete,
}

/// A statement built, with everything its SQL depends on: the table, the kind, the columns in
/// order and the key columns (an upsert's conflict target and the columns it leaves alone).
struct Statement {
    table: String,
    kind: Kind,
    columns: Vec<String>,
    keys: Vec<String>,
    sql: Arc<str>,
}

/// What to do with one record.
enum Op {
    /// Insert or upsert `columns`; the first `keys` of them are the key columns.
    Write {
        columns: Vec<(String, Value)>,
        keys: Vec<String>,
    },
    Delete {
        keys: Vec<(String, Value)>,
    },
    Skip,
}

/// What to do with `record`, whose value it takes (the record stays for error reports).
fn op(settings: &SinkSettings, record: &mut SinkRecord) -> Result<Op, String> {
    let key_columns = match settings.pk_mode {
        PkMode::RecordKey => Some(key_columns(settings, record.key())?),
        _ => None,
    };
    let Some(value) = record.record.value.take() else {
        return Ok(match key_columns {
            Some(keys) if settings.delete_enabled => Op::Delete { keys },
            _ => Op::Skip,
        });
    };
    // Sorted by name (serde_json's map is a BTreeMap).
    let mut columns = match value {
        ConnectData::Json(Value::Object(fields)) => fields,
        other => match other.to_json()?.into_owned() {
            Value::Object(fields) => fields,
            _ => return Err("the value is not a JSON object (set value.converter=json)".into()),
        },
    };
    let keys = match (settings.pk_mode, key_columns) {
        (PkMode::RecordKey, Some(keys)) => {
            let names = keys.iter().map(|(k, _)| k.clone()).collect();
            columns.extend(keys);
            names
        }
        (PkMode::RecordValue, _) => {
            for k in &settings.pk_fields {
                if columns.get(k).is_none_or(Value::is_null) {
                    return Err(format!("the value has no key field `{k}` (pk.fields)"));
                }
            }
            settings.pk_fields.clone()
        }
        _ => Vec::new(),
    };
    // Key columns first, then the others in name order.
    let mut ordered = Vec::with_capacity(columns.len());
    for k in &keys {
        if let Some(v) = columns.remove(k) {
            ordered.push((k.clone(), v));
        }
    }
    ordered.extend(columns);
    // SQL integers are 64-bit signed: a larger one would be stored as a lossy float (or
    // refused by the database, failing the task); it is the record that is wrong.
    if let Some((name, n)) = ordered
        .iter()
        .find(|(_, v)| matches!(v, Value::Number(n) if n.is_u64() && !n.is_i64()))
    {
        return Err(format!(
            "field `{name}` holds {n}, larger than the 64-bit signed integers SQL databases store"
        ));
    }
    Ok(Op::Write {
        columns: ordered,
        keys,
    })
}

/// The key columns of `pk.mode=record_key`.
fn key_columns(
    settings: &SinkSettings,
    key: Option<&ConnectData>,
) -> Result<Vec<(String, Value)>, String> {
    let key = key.ok_or("pk.mode=record_key needs records with a key")?;
    let value = match key {
        ConnectData::Json(v) => v.clone(),
        ConnectData::String(s) => Value::String(s.clone()),
        ConnectData::Bytes(b) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| "the key is bytes that are not UTF-8")?
                .to_string(),
        ),
    };
    match value {
        Value::Object(map) => {
            let mut out = Vec::new();
            if settings.pk_fields.is_empty() {
                out.extend(map);
            } else {
                for k in &settings.pk_fields {
                    let v = map
                        .get(k)
                        .filter(|v| !v.is_null())
                        .ok_or_else(|| format!("the key has no field `{k}` (pk.fields)"))?;
                    out.push((k.clone(), v.clone()));
                }
            }
            if out.is_empty() {
                return Err("the key is an empty JSON object".into());
            }
            Ok(out)
        }
        Value::Null => Err("the key is null".into()),
        other => {
            let name = settings.pk_fields.first().map_or("id", String::as_str);
            Ok(vec![(name.to_string(), other)])
        }
    }
}

impl<D: Database> SqlSinkTask<D> {
    fn db(&mut self) -> Result<&mut D> {
        self.db
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("the SQL sink task was not started".into()))
    }

    /// The table's columns, creating the table or its missing columns as allowed.
    fn prepare_table(
        &mut self,
        table: &str,
        columns: &[(String, Value)],
        keys: &[String],
    ) -> Result<()> {
        if let Some(known) = self.tables.get(table) {
            if columns.iter().all(|(c, _)| known.contains_key(c)) {
                return Ok(());
            }
        }
        let settings = self.settings.clone().ok_or(Error::Closed)?;
        if !self.tables.contains_key(table) {
            let found = self.db()?.columns(table)?;
            let known = match found {
                Some(cols) => cols.into_iter().collect(),
                None if settings.auto_create && !columns.is_empty() => {
                    let mut defs: Vec<String> = columns
                        .iter()
                        .map(|(name, v)| {
                            let key = keys.contains(name);
                            let ty = D::sql_type(v, key);
                            let null = if key { " NOT NULL" } else { "" };
                            format!("{} {ty}{null}", quote(name))
                        })
                        .collect();
                    if !keys.is_empty() {
                        let pk: Vec<String> = keys.iter().map(|k| quote(k)).collect();
                        defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
                    }
                    let sql = format!(
                        "CREATE TABLE IF NOT EXISTS {} ({})",
                        quote(table),
                        defs.join(", ")
                    );
                    self.commit()?;
                    self.db()?.execute(&sql)?;
                    self.db()?
                        .columns(table)?
                        .unwrap_or_default()
                        .into_iter()
                        .collect()
                }
                None => {
                    return Err(Error::External {
                        system: D::SYSTEM,
                        reason: format!("table `{table}` does not exist and auto.create is false"),
                    })
                }
            };
            self.tables.insert(table.to_string(), known);
        }
        let missing: Vec<&(String, Value)> = columns
            .iter()
            .filter(|(c, _)| !self.tables.get(table).is_some_and(|t| t.contains_key(c)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !settings.auto_evolve {
            return Err(Error::External {
                system: D::SYSTEM,
                reason: format!(
                    "table `{table}` has no column `{}` (set auto.evolve=true to add it)",
                    missing[0].0
                ),
            });
        }
        let statements: Vec<String> = missing
            .iter()
            .map(|(c, v)| {
                format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    quote(table),
                    quote(c),
                    D::sql_type(v, false)
                )
            })
            .collect();
        self.commit()?;
        for sql in statements {
            self.db()?.execute(&sql)?;
        }
        let refreshed = self.db()?.columns(table)?.unwrap_or_default();
        self.tables
            .insert(table.to_string(), refreshed.into_iter().collect());
        Ok(())
    }

    /// The SQL for `kind` on `table` with these columns and key columns (reusing the last one
    /// when all of them match).
    fn statement(
        &mut self,
        table: &str,
        kind: Kind,
        columns: &[&str],
        keys: &[String],
    ) -> Result<Arc<str>> {
        if let Some(last) = &self.last {
            if last.table == table
                && last.kind == kind
                && last
                    .columns
                    .iter()
                    .map(String::as_str)
                    .eq(columns.iter().copied())
                && last.keys == keys
            {
                return Ok(last.sql.clone());
            }
        }
        let settings = self.settings.as_ref().ok_or(Error::Closed)?;
        let types = self.tables.get(table).ok_or_else(|| {
            Error::InvalidArgument(format!("table `{table}` was not prepared before writing"))
        })?;
        let ph = |i: usize, c: &str| D::placeholder(i + 1, types.get(c).map_or("", String::as_str));
        let sql = match kind {
            Kind::Delete => {
                let cond: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} = {}", quote(c), ph(i, c)))
                    .collect();
                format!("DELETE FROM {} WHERE {}", quote(table), cond.join(" AND "))
            }
            Kind::Write => {
                let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
                let values: Vec<String> =
                    columns.iter().enumerate().map(|(i, c)| ph(i, c)).collect();
                let mut sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(table),
                    names.join(", "),
                    values.join(", ")
                );
                if settings.insert_mode == InsertMode::Upsert {
                    let pk: Vec<String> = keys.iter().map(|k| quote(k)).collect();
                    let updates: Vec<String> = columns
                        .iter()
                        .filter(|c| !keys.iter().any(|k| k == *c))
                        .map(|c| format!("{0} = excluded.{0}", quote(c)))
                        .collect();
                    if updates.is_empty() {
                        let _ = write!(sql, " ON CONFLICT ({}) DO NOTHING", pk.join(", "));
                    } else {
                        let _ = write!(
                            sql,
                            " ON CONFLICT ({}) DO UPDATE SET {}",
                            pk.join(", "),
                            updates.join(", ")
                        );
                    }
                }
                sql
            }
        };
        let sql: Arc<str> = sql.into();
        self.last = Some(Statement {
            table: table.to_string(),
            kind,
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            keys: keys.to_vec(),
            sql: Arc::clone(&sql),
        });
        Ok(sql)
    }

    fn begin(&mut self) -> Result<()> {
        if !self.in_transaction {
            self.db()?.execute("BEGIN")?;
            self.in_transaction = true;
            self.rows = 0;
        }
        Ok(())
    }

    /// Invariant 1.
    fn commit(&mut self) -> Result<()> {
        if self.in_transaction {
            self.db()?.execute("COMMIT")?;
            self.in_transaction = false;
            self.rows = 0;
        }
        Ok(())
    }

    fn apply(&mut self, table: &str, op: Op) -> Result<()> {
        let (kind, columns, keys) = match op {
            Op::Skip => return Ok(()),
            Op::Write { columns, keys } => (Kind::Write, columns, keys),
            Op::Delete { keys } => {
                let names = keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
                (Kind::Delete, keys, names)
            }
        };
        if kind == Kind::Delete
            && !self.tables.contains_key(table)
            && self.db()?.columns(table)?.is_none()
        {
            // Nothing to delete from a table that was never created.
            return Ok(());
        }
        self.prepare_table(table, &columns, &keys)?;
        let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let sql = self.statement(table, kind, &names, &keys)?;
        self.begin()?;
        let params: Vec<&Value> = columns.iter().map(|(_, v)| v).collect();
        self.db()?.write(&sql, &params)?;
        self.rows += 1;
        let batch = self.settings.as_ref().map_or(1, |s| s.batch_size);
        if self.rows >= batch {
            self.commit()?;
        }
        Ok(())
    }
}

impl<D: Database> SinkTask for SqlSinkTask<D> {
    fn start(&mut self, config: &ConnectorConfig, context: &SinkTaskContext) -> Result<()> {
        self.settings = Some(SinkSettings::from_config(config)?);
        self.db = Some(D::connect(config)?);
        self.context = Some(context.clone());
        Ok(())
    }

    fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        let settings = self.settings.clone().ok_or(Error::Closed)?;
        for mut record in records {
            match op(&settings, &mut record) {
                Ok(op) => {
                    let table = settings.table(&record.record.topic);
                    self.apply(&table, op)?;
                }
                Err(reason) => {
                    let context = self.context.clone().ok_or(Error::Closed)?;
                    context.report(&record, Error::InvalidArgument(reason))?;
                }
            }
        }
        // Invariant 1.
        self.commit()
    }

    fn flush(&mut self) -> Result<()> {
        self.commit()
    }

    fn stop(&mut self) {
        // An open transaction holds rows whose offsets were not committed: they come again.
        if self.in_transaction {
            if let Some(db) = &mut self.db {
                let _ = db.execute("ROLLBACK");
            }
        }
        self.db = None;
    }
}
