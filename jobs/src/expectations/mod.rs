//! Data-quality expectations, declared per table as Databricks declarative pipelines declare
//! them: a name, a SQL condition over the table's columns, and an action.
//!
//! - `warn`: rows that break it are counted and written anyway;
//! - `drop`: they are counted and sent to `bronze/quarantine` with the expectation named;
//! - `fail`: the run stops, naming the expectation and a sample row, and commits nothing.
//!
//! Conditions are evaluated by DataFusion on each output batch; a condition that evaluates to
//! NULL for a row counts as broken (an expectation must hold, not merely not fail). Every run
//! records passed and failed counts per expectation in `_system/expectations`.

mod durations;

use std::collections::BTreeMap;
use std::sync::Arc;

use boxoffice_ingest::bronze::QuarantineRow;
use boxoffice_lake::{PartitionRows, TableDef};
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::{and_kleene, concat, filter_record_batch, is_not_null, not};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::physical_plan::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;
use serde::Deserialize;

use crate::JobError;
use crate::silver::tables::EXPECTATIONS;

/// What happens to rows that break an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Count them, keep them.
    Warn,
    /// Count them, quarantine them.
    Drop,
    /// Stop the run; commit nothing.
    Fail,
}

impl Action {
    /// As written in settings and `_system/expectations`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Drop => "drop",
            Action::Fail => "fail",
        }
    }
}

/// One expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Its name, e.g. `email_well_formed`.
    pub name: String,
    /// A SQL boolean expression over the table's columns.
    pub condition: String,
    /// What to do with rows that break it.
    pub action: Action,
}

/// A user's change to an expectation, or a new one (`[expectations.<table>.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationSetting {
    /// A new condition (required for a new expectation).
    pub condition: Option<String>,
    /// A new action.
    pub action: Option<Action>,
}

/// How one expectation fared in one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectationResult {
    /// `layer.table`.
    pub table: String,
    /// The expectation.
    pub name: String,
    /// Its condition.
    pub condition: String,
    /// Its action.
    pub action: Action,
    /// Rows that met it.
    pub passed: u64,
    /// Rows that broke it.
    pub failed: u64,
}

#[derive(Clone)]
struct Compiled {
    expectation: Expectation,
    expr: Arc<dyn PhysicalExpr>,
}

/// Every table's expectations, compiled against its schema.
#[derive(Clone)]
pub struct Expectations {
    by_table: BTreeMap<String, Vec<Compiled>>,
}

/// A batch after its expectations.
pub struct Checked {
    /// The rows kept (those no `drop` expectation refused).
    pub kept: Vec<PartitionRows>,
    /// How many.
    pub kept_rows: u64,
    /// Rows refused by `drop` expectations, for quarantine.
    pub dropped: Vec<QuarantineRow>,
    /// Counts per expectation.
    pub results: Vec<ExpectationResult>,
}

impl Expectations {
    /// Compiles `declared` (per table) with the user's `settings` applied on top; an unknown
    /// column or bad SQL is an error naming the expectation.
    pub fn compile(
        declared: &[(&TableDef, Vec<Expectation>)],
        settings: &BTreeMap<String, BTreeMap<String, ExpectationSetting>>,
    ) -> Result<Expectations, String> {
        let ctx = SessionContext::new();
        let mut by_table = BTreeMap::new();
        for (def, list) in declared {
            let mut list = list.clone();
            let key = def.name.to_string();
            for (name, setting) in settings.get(&key).into_iter().flatten() {
                match list.iter_mut().find(|e| &e.name == name) {
                    Some(e) => {
                        if let Some(c) = &setting.condition {
                            e.condition = c.clone();
                        }
                        if let Some(a) = setting.action {
                            e.action = a;
                        }
                    }
                    None => list.push(Expectation {
                        name: name.clone(),
                        condition: setting.condition.clone().ok_or_else(|| {
                            format!("expectation {key}.{name} is new but has no condition")
                        })?,
                        action: setting.action.unwrap_or(Action::Warn),
                    }),
                }
            }
            let schema = DFSchema::try_from(def.arrow_schema().as_ref().clone())
                .map_err(|e| e.to_string())?;
            let compiled = list
                .into_iter()
                .map(|expectation| {
                    let what = format!(
                        "expectation {key}.{} `{}`",
                        expectation.name, expectation.condition
                    );
                    let expr = ctx
                        .parse_sql_expr(&expectation.condition, &schema)
                        .and_then(|e| ctx.create_physical_expr(e, &schema))
                        .and_then(|e| durations::compared_as_durations(e, schema.as_arrow()))
                        .map_err(|e| format!("{what}: {e}"))?;
                    Ok(Compiled { expectation, expr })
                })
                .collect::<Result<Vec<_>, String>>()?;
            by_table.insert(def.qualified_name(), compiled);
        }
        for key in settings.keys() {
            if !declared.iter().any(|(d, _)| d.name == key) {
                let known: Vec<&str> = declared.iter().map(|(d, _)| d.name).collect();
                return Err(format!(
                    "[expectations.{key}]: no such table (tables with expectations: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(Expectations { by_table })
    }

    /// No expectations at all.
    pub fn none() -> Expectations {
        Expectations {
            by_table: BTreeMap::new(),
        }
    }

    /// The expectations of a table.
    pub fn of(&self, def: &TableDef) -> Vec<Expectation> {
        self.by_table
            .get(&def.qualified_name())
            .map(|l| l.iter().map(|c| c.expectation.clone()).collect())
            .unwrap_or_default()
    }

    /// Checks `rows` (bound for `def`) against its expectations.
    pub fn check(
        &self,
        def: &TableDef,
        rows: Vec<PartitionRows>,
        at: DateTime<Utc>,
    ) -> Result<Checked, JobError> {
        let table = def.qualified_name();
        let compiled = self.by_table.get(&table).map(Vec::as_slice).unwrap_or(&[]);
        let mut results: Vec<ExpectationResult> = compiled
            .iter()
            .map(|c| ExpectationResult {
                table: table.clone(),
                name: c.expectation.name.clone(),
                condition: c.expectation.condition.clone(),
                action: c.expectation.action,
                passed: 0,
                failed: 0,
            })
            .collect();
        let mut checked = Checked {
            kept: Vec::with_capacity(rows.len()),
            kept_rows: 0,
            dropped: Vec::new(),
            results: Vec::new(),
        };
        for part in rows {
            let batch = &part.batch;
            let mut keep: Option<BooleanArray> = None;
            let mut broken_by: Vec<(&str, BooleanArray)> = Vec::new();
            let verdicts = evaluate_all(compiled, batch).map_err(|e| arrow_error(&table, e))?;
            for ((c, result), holds) in compiled.iter().zip(results.iter_mut()).zip(verdicts) {
                let failed = (holds.len() - holds.true_count()) as u64;
                result.failed += failed;
                result.passed += holds.true_count() as u64;
                if failed == 0 {
                    continue;
                }
                match c.expectation.action {
                    Action::Warn => {}
                    Action::Fail => {
                        return Err(JobError::ExpectationFailed {
                            table: table.clone(),
                            expectation: c.expectation.name.clone(),
                            condition: c.expectation.condition.clone(),
                            failed,
                            sample: first_broken_row(batch, &holds),
                        });
                    }
                    Action::Drop => {
                        keep = Some(match keep {
                            Some(k) => {
                                and_kleene(&k, &holds).map_err(|e| arrow_error(&table, e))?
                            }
                            None => holds.clone(),
                        });
                        broken_by.push((&c.expectation.name, holds));
                    }
                }
            }
            let batch = match keep {
                None => part.batch,
                Some(keep) => {
                    let dropped = not(&keep).map_err(|e| arrow_error(&table, e))?;
                    checked.dropped.extend(quarantine_rows(
                        def,
                        &part.batch,
                        &dropped,
                        &broken_by,
                        at,
                    )?);
                    filter_record_batch(&part.batch, &keep).map_err(|e| arrow_error(&table, e))?
                }
            };
            checked.kept_rows += batch.num_rows() as u64;
            checked.kept.push(PartitionRows {
                batch,
                values: part.values,
            });
        }
        checked.results = results;
        Ok(checked)
    }
}

fn arrow_error(table: &str, source: ArrowError) -> JobError {
    JobError::Arrow {
        table: table.to_string(),
        source,
    }
}

/// Every expectation over `batch`, in slices on every core: a batch of fact rows is millions of
/// rows, and rows are checked independently.
fn evaluate_all(
    compiled: &[Compiled],
    batch: &RecordBatch,
) -> Result<Vec<BooleanArray>, ArrowError> {
    const SMALLEST_SLICE: usize = 100_000;
    let rows = batch.num_rows();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slices = threads.min(rows / SMALLEST_SLICE).max(1);
    if slices == 1 {
        return compiled.iter().map(|c| evaluate(c, batch)).collect();
    }
    let size = rows.div_ceil(slices);
    let parts: Vec<RecordBatch> = (0..slices)
        .map(|i| batch.slice(i * size, size.min(rows - i * size)))
        .collect();
    let verdicts = crate::shares::on_threads(&parts, |part| {
        compiled
            .iter()
            .map(|c| evaluate(c, part))
            .collect::<Result<Vec<BooleanArray>, ArrowError>>()
    });
    let verdicts = verdicts.into_iter().collect::<Result<Vec<_>, _>>()?;
    (0..compiled.len())
        .map(|i| {
            let pieces: Vec<&dyn Array> = verdicts.iter().map(|v| &v[i] as &dyn Array).collect();
            Ok(concat(&pieces)?.as_boolean().clone())
        })
        .collect()
}

/// Where the condition holds: true; where it is false or NULL: false.
fn evaluate(c: &Compiled, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
    let value = c
        .expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| ArrowError::ComputeError(format!("{}: {e}", c.expectation.name)))?;
    let holds = value
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            ArrowError::ComputeError(format!(
                "{}: the condition is not boolean",
                c.expectation.name
            ))
        })?;
    and_kleene(holds, &is_not_null(holds)?)
}

/// Rows as JSON objects, one string per row.
fn rows_as_json(batch: &RecordBatch) -> Vec<String> {
    let mut out = Vec::new();
    let mut writer = deltalake::arrow::json::LineDelimitedWriter::new(&mut out);
    if writer.write(batch).and_then(|()| writer.finish()).is_err() {
        return vec![String::from("{}"); batch.num_rows()];
    }
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

fn first_broken_row(batch: &RecordBatch, holds: &BooleanArray) -> String {
    let Some(i) = (0..holds.len()).find(|&i| !holds.value(i)) else {
        return String::from("{}");
    };
    rows_as_json(&batch.slice(i, 1))
        .pop()
        .unwrap_or_else(|| String::from("{}"))
}

fn quarantine_rows(
    def: &TableDef,
    batch: &RecordBatch,
    dropped: &BooleanArray,
    broken_by: &[(&str, BooleanArray)],
    at: DateTime<Utc>,
) -> Result<Vec<QuarantineRow>, JobError> {
    let table = def.qualified_name();
    let only = filter_record_batch(batch, dropped).map_err(|e| arrow_error(&table, e))?;
    let bodies = rows_as_json(&only);
    let indices: Vec<usize> = (0..dropped.len()).filter(|&i| dropped.value(i)).collect();
    Ok(indices
        .into_iter()
        .zip(bodies)
        .map(|(i, body)| {
            let names: Vec<&str> = broken_by
                .iter()
                .filter(|(_, holds)| !holds.value(i))
                .map(|(name, _)| *name)
                .collect();
            QuarantineRow {
                received_at: at,
                source: table.clone(),
                hub: None,
                reason: format!("expectation failed (drop): {}", names.join(", ")),
                body,
                stage: table.clone(),
                partition_id: None,
                sequence_number: None,
                event_uid: None,
                source_file: None,
                line: None,
            }
        })
        .collect())
}

/// `_system/expectations` rows for one batch's results.
pub fn result_rows(
    job: &str,
    batch: u64,
    results: &[ExpectationResult],
    at: DateTime<Utc>,
) -> Result<RecordBatch, ArrowError> {
    let mut text: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let (mut batch_col, mut passed, mut failed) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let mut run_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in results {
        text[0].append_value(job);
        batch_col.append_value(batch as i64);
        text[1].append_value(&r.table);
        text[2].append_value(&r.name);
        text[3].append_value(&r.condition);
        text[4].append_value(r.action.as_str());
        passed.append_value(r.passed as i64);
        failed.append_value(r.failed as i64);
        run_at.append_value(at.timestamp_micros());
    }
    let mut text = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || {
        text.next()
            .unwrap_or_else(|| Arc::new(StringBuilder::new().finish()))
    };
    let columns: Vec<ArrayRef> = vec![
        next(),
        Arc::new(batch_col.finish()),
        next(),
        next(),
        next(),
        next(),
        Arc::new(passed.finish()),
        Arc::new(failed.finish()),
        Arc::new(run_at.finish()),
    ];
    RecordBatch::try_new(EXPECTATIONS.arrow_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxoffice_lake::Layer;
    use deltalake::arrow::array::{Float64Array, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    fn prices_schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
        ])
    }

    const PRICES: TableDef = TableDef {
        layer: Layer::Silver,
        name: "prices",
        description: "a test table",
        schema: prices_schema,
        partition_columns: &[],
        properties: &[],
        blob_columns: &[],
        stats_columns: &[],
    };

    /// A batch big enough to be checked in slices on every core, with broken rows on and around
    /// the slice boundaries: each verdict must land on its own row.
    #[test]
    fn a_large_batch_checked_in_slices_drops_and_counts_exactly_its_broken_rows() {
        let rows: i64 = 300_001;
        let broken = |i: i64| i % 997 == 0 || (149_990..150_010).contains(&i) || i == rows - 1;
        let ids = Int64Array::from_iter_values(0..rows);
        let prices = Float64Array::from_iter(
            (0..rows).map(|i| (i % 5_000 != 7).then_some(if broken(i) { -1.0 } else { 2.5 })),
        );
        let batch = RecordBatch::try_new(
            Arc::new(prices_schema()),
            vec![Arc::new(ids), Arc::new(prices)],
        )
        .expect("batch");
        let e = |name: &str, condition: &str, action| Expectation {
            name: name.into(),
            condition: condition.into(),
            action,
        };
        let declared = [(
            &PRICES,
            vec![
                e("price_positive", "price > 0", Action::Drop),
                e("price_present", "price IS NOT NULL", Action::Warn),
            ],
        )];
        let expectations = Expectations::compile(&declared, &BTreeMap::new()).expect("compile");
        let checked = expectations
            .check(&PRICES, vec![PartitionRows::unsplit(batch)], Utc::now())
            .expect("check");

        let null = |i: i64| i % 5_000 == 7;
        let kept: Vec<i64> = (0..rows).filter(|i| !broken(*i) && !null(*i)).collect();
        let positive = &checked.results[0];
        assert_eq!(positive.failed, (rows - kept.len() as i64) as u64);
        assert_eq!(positive.passed, kept.len() as u64);
        assert_eq!(
            checked.results[1].failed,
            (0..rows).filter(|i| null(*i)).count() as u64
        );
        assert_eq!(checked.kept_rows, kept.len() as u64);
        assert_eq!(checked.dropped.len(), rows as usize - kept.len());
        let kept_ids: Vec<i64> = checked
            .kept
            .iter()
            .flat_map(|p| {
                let ids = p
                    .batch
                    .column(0)
                    .as_primitive::<deltalake::arrow::datatypes::Int64Type>();
                ids.values().to_vec()
            })
            .collect();
        assert_eq!(kept_ids, kept);
    }
}
