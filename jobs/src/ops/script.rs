//! Scripted changes to the booking service's table: `INSERT`, `UPDATE` and `DELETE` statements
//! in plain SQL, as a Snowflake worksheet would hold them, each applied as one Delta commit (or
//! one commit per row changed, to replay a change stream at its finest grain).
//!
//! The statements are parsed by DataFusion's SQL parser; `INSERT ... VALUES` rows are evaluated
//! by DataFusion and cast to the table's types, `UPDATE` and `DELETE` run as delta-rs operations
//! with the statement's own SQL expressions, so every change lands in the change data feed
//! exactly as the booking service would have written it.

use std::collections::HashMap;
use std::sync::Arc;

use boxoffice_lake::Lake;
use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch, new_null_array};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, FromTable, SetExpr, TableObject,
};
use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use deltalake::protocol::SaveMode;
use serde_json::json;

use super::RAW_MOVIE_BOOKINGS;
use crate::JobError;

/// One change to the table, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `INSERT INTO raw_movie_bookings [(columns)] VALUES (...), ...`.
    Insert {
        /// Columns named (all of the table's, in order, when the statement names none).
        columns: Vec<String>,
        /// Each row's SQL, with its parentheses.
        rows: Vec<String>,
    },
    /// `UPDATE raw_movie_bookings SET column = expression, ... [WHERE predicate]`.
    Update {
        /// Column and SQL expression pairs.
        set: Vec<(String, String)>,
        /// The `WHERE` clause, if any.
        predicate: Option<String>,
    },
    /// `DELETE FROM raw_movie_bookings [WHERE predicate]`.
    Delete {
        /// The `WHERE` clause, if any.
        predicate: Option<String>,
    },
}

/// A statement of a script and the line it starts on (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// 1-based line of the script.
    pub line: u64,
    /// What it changes.
    pub change: Change,
}

/// Parses a script; the error names the line of the statement it refuses.
pub fn parse(text: &str) -> Result<Vec<Statement>, JobError> {
    let bad = |line: u64, detail: String| JobError::Script { line, detail };
    let mut out = Vec::new();
    for (line, sql) in split(text) {
        let parsed =
            Parser::parse_sql(&GenericDialect {}, &sql).map_err(|e| bad(line, e.to_string()))?;
        for statement in parsed {
            let change = change_of(statement).map_err(|detail| bad(line, detail))?;
            out.push(Statement { line, change });
        }
    }
    Ok(out)
}

/// Cuts a script into statements at semicolons outside quotes and comments, each with the line
/// its first word is on (comment-only pieces are dropped).
fn split(text: &str) -> Vec<(u64, String)> {
    let mut pieces = Vec::new();
    let (mut current, mut start, mut line) = (String::new(), None, 1u64);
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        line += 1;
                        current.push('\n');
                        break;
                    }
                }
                continue;
            }
            (None, ';') => {
                if let Some(at) = start.take() {
                    pieces.push((at, std::mem::take(&mut current)));
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        if start.is_none() && !c.is_whitespace() {
            start = Some(line);
        }
        if c == '\n' {
            line += 1;
        }
        current.push(c);
    }
    if let Some(at) = start {
        pieces.push((at, current));
    }
    pieces
}

fn change_of(statement: ast::Statement) -> Result<Change, String> {
    match statement {
        ast::Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Err("INSERT into a table function is not supported".into());
            };
            check_table(&name.to_string())?;
            let Some(SetExpr::Values(values)) = insert.source.as_ref().map(|q| q.body.as_ref())
            else {
                return Err("only INSERT ... VALUES is supported".into());
            };
            Ok(Change::Insert {
                columns: insert
                    .columns
                    .iter()
                    .map(|c| unquote(&c.to_string()))
                    .collect(),
                rows: values
                    .rows
                    .iter()
                    .map(|row| {
                        let items: Vec<String> =
                            row.content.iter().map(|e| e.to_string()).collect();
                        format!("({})", items.join(", "))
                    })
                    .collect(),
            })
        }
        ast::Statement::Update(update) => {
            check_table(&update.table.relation.to_string())?;
            let set = update
                .assignments
                .iter()
                .map(|a| match &a.target {
                    AssignmentTarget::ColumnName(column) => {
                        Ok((unquote(&column.to_string()), a.value.to_string()))
                    }
                    AssignmentTarget::Tuple(_) => Err("SET (a, b) = ... is not supported".into()),
                })
                .collect::<Result<_, String>>()?;
            Ok(Change::Update {
                set,
                predicate: update.selection.map(|e| e.to_string()),
            })
        }
        ast::Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            let [table] = from.as_slice() else {
                return Err("DELETE takes exactly one table".into());
            };
            check_table(&table.relation.to_string())?;
            Ok(Change::Delete {
                predicate: delete.selection.map(|e| e.to_string()),
            })
        }
        other => Err(format!(
            "only INSERT, UPDATE and DELETE are supported, not `{}`",
            first_words(&other.to_string())
        )),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn unquote(name: &str) -> String {
    name.trim_matches('"').to_ascii_lowercase()
}

/// Accepts `raw_movie_bookings` under any database or schema prefix.
fn check_table(name: &str) -> Result<(), String> {
    let last = name.rsplit('.').next().unwrap_or(name);
    if unquote(last) == RAW_MOVIE_BOOKINGS.name {
        Ok(())
    } else {
        Err(format!(
            "statements change {}, not {name}",
            RAW_MOVIE_BOOKINGS.name
        ))
    }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Applies changes to `ops/raw_movie_bookings`, creating it (change data feed on) if needed.
pub struct Applier {
    table: DeltaTable,
}

impl Applier {
    /// Opens (or creates) the table.
    pub async fn open(lake: &Lake) -> Result<Applier, JobError> {
        let table = lake.ensure_table(&RAW_MOVIE_BOOKINGS).await?;
        Ok(Applier { table })
    }

    /// The table's current version.
    pub fn version(&self) -> Option<i64> {
        self.table.version().and_then(|v| i64::try_from(v).ok())
    }

    /// A change split into one change per row it affects (as it stands now): rows inserted
    /// one by one; an update or delete once per booking_id its predicate matches.
    pub async fn per_row(&self, change: &Change) -> Result<Vec<Change>, JobError> {
        match change {
            Change::Insert { columns, rows } => Ok(rows
                .iter()
                .map(|row| Change::Insert {
                    columns: columns.clone(),
                    rows: vec![row.clone()],
                })
                .collect()),
            Change::Update { set, predicate } => Ok(self
                .matching(predicate.as_deref())
                .await?
                .into_iter()
                .map(|p| Change::Update {
                    set: set.clone(),
                    predicate: Some(p),
                })
                .collect()),
            Change::Delete { predicate } => Ok(self
                .matching(predicate.as_deref())
                .await?
                .into_iter()
                .map(|p| Change::Delete { predicate: Some(p) })
                .collect()),
        }
    }

    /// One predicate per booking `predicate` matches now, in booking_id order.
    async fn matching(&self, predicate: Option<&str>) -> Result<Vec<String>, JobError> {
        let ctx = SessionContext::new();
        let error = |e: &dyn std::fmt::Display| self.error(e);
        if self
            .table
            .snapshot()
            .is_ok_and(|s| s.log_data().num_files() == 0)
        {
            return Ok(Vec::new());
        }
        self.table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| error(&e))?;
        let provider = self.table.table_provider().await.map_err(|e| error(&e))?;
        ctx.register_table("raw_movie_bookings", provider)
            .map_err(|e| error(&e))?;
        let condition = predicate.map_or(String::new(), |p| format!("WHERE {p}"));
        let batches = ctx
            .sql(&format!(
                "SELECT DISTINCT booking_id FROM raw_movie_bookings {condition} ORDER BY booking_id"
            ))
            .await
            .map_err(|e| error(&e))?
            .collect()
            .await
            .map_err(|e| error(&e))?;
        let mut out = Vec::new();
        for batch in batches {
            let ids = cast_with_options(
                batch.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
                &CastOptions::default(),
            )
            .map_err(|e| error(&e))?;
            for id in ids.as_string::<i32>().iter().flatten() {
                let only = format!("booking_id = {}", quote(id));
                out.push(match predicate {
                    Some(p) => format!("({p}) AND {only}"),
                    None => only,
                });
            }
        }
        Ok(out)
    }

    /// Applies one change as one commit; returns the new version (`None` when it changed
    /// nothing: an insert of no rows).
    pub async fn apply(&mut self, change: &Change) -> Result<Option<i64>, JobError> {
        let properties = boxoffice_lake::commit_properties().with_metadata(HashMap::from([(
            "operation".to_string(),
            json!("cdc apply"),
        )]));
        let table = self.table.clone();
        let error = |e: &dyn std::fmt::Display| self.error(e);
        self.table = match change {
            Change::Insert { columns, rows } => {
                let batch = self.insert_rows(columns, rows).await?;
                if batch.num_rows() == 0 {
                    return Ok(None);
                }
                table
                    .write(vec![batch])
                    .with_save_mode(SaveMode::Append)
                    .with_commit_properties(properties)
                    .await
                    .map_err(|e| error(&e))?
            }
            Change::Update { set, predicate } => {
                let mut builder = table.update().with_commit_properties(properties);
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p.as_str());
                }
                for (column, value) in set {
                    builder = builder.with_update(column.as_str(), value.as_str());
                }
                builder.await.map_err(|e| error(&e))?.0
            }
            Change::Delete { predicate } => {
                let mut builder = table.delete().with_commit_properties(properties);
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p.as_str());
                }
                builder.await.map_err(|e| error(&e))?.0
            }
        };
        Ok(self.version())
    }

    /// Evaluates `VALUES` rows with DataFusion and lays them out as the table's columns.
    async fn insert_rows(
        &self,
        columns: &[String],
        rows: &[String],
    ) -> Result<RecordBatch, JobError> {
        let schema = RAW_MOVIE_BOOKINGS.arrow_schema();
        let error = |e: &dyn std::fmt::Display| self.error(e);
        let columns: Vec<String> = if columns.is_empty() {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            columns.to_vec()
        };
        if let Some(unknown) = columns.iter().find(|c| schema.index_of(c).is_err()) {
            return Err(self.error(&format!("INSERT names an unknown column {unknown}")));
        }
        let ctx = SessionContext::new();
        let batches = ctx
            .sql(&format!("VALUES {}", rows.join(", ")))
            .await
            .map_err(|e| error(&e))?
            .collect()
            .await
            .map_err(|e| error(&e))?;
        let values = deltalake::arrow::compute::concat_batches(
            &batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(deltalake::arrow::datatypes::Schema::empty())),
            &batches,
        )
        .map_err(|e| error(&e))?;
        if values.num_columns() != columns.len() {
            return Err(self.error(&format!(
                "INSERT gives {} values per row for {} columns",
                values.num_columns(),
                columns.len()
            )));
        }
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut out: Vec<ArrayRef> = Vec::new();
        for field in schema.fields() {
            out.push(match columns.iter().position(|c| c == field.name()) {
                Some(i) => cast_with_options(values.column(i), field.data_type(), &strict)
                    .map_err(|e| self.error(&format!("column {}: {e}", field.name())))?,
                None => new_null_array(field.data_type(), values.num_rows()),
            });
        }
        RecordBatch::try_new(schema, out).map_err(|e| error(&e))
    }

    fn error(&self, e: &dyn std::fmt::Display) -> JobError {
        JobError::Ops(format!("{}: {e}", RAW_MOVIE_BOOKINGS.qualified_name()))
    }
}
