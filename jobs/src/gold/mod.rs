//! Gold: aggregates of Silver, refreshed from what changed in it.
//!
//! Each Gold table is a [`Model`]: a SQL query that groups the rows Silver gained since the
//! table's last refresh, and the rows the table already holds (`current`), into the table's new
//! contents. Silver's new rows are first reduced, once for all the tables, to a few small
//! [`parts`] (orders, payment attempts, unpaid bookings, orphan payments per booking key) that
//! every model sums under its own key. Measures are sums, so adding the new rows' sums to the
//! current ones is the same as summing everything again; distinct counts are made additive by
//! the flags the join sets on `bookings_fact` (each booking, payment and sale is counted on
//! exactly one match, whose rows are committed together).
//!
//! Exactly once: a table's overwrite commit records, as application transactions
//! `gold:<table>:<silver table>`, the Silver versions it has consumed. A refresh reads them back
//! and takes only later commits; a crash between two Gold tables leaves each at its own
//! versions, and the next refresh brings both forward.

mod booking_funnel;
pub mod changes;
mod conversion;
mod event_occupancy;
mod event_performance;
mod fold;
mod parts;
mod payment_mix;
mod sales_by_category_hour;
pub mod tables;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use boxoffice_lake::{Lake, TableDef, committed_versions};
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use serde_json::json;

use crate::JobError;
use crate::silver::tables::{BOOKINGS_FACT, ORPHAN_PAYMENTS, UNPAID_BOOKINGS};
use changes::{Changes, added_since};
use parts::Parts;

/// One Gold table and the query that refreshes it.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The table it writes.
    pub table: &'static TableDef,
    /// Its query over the [`parts`] (`orders`, `attempts`, `unpaid_orders`, `orphan_attempts`)
    /// and the rows the table holds (`current`): every column of the table but `refreshed_at`.
    pub sql: &'static str,
}

/// Every Gold table, in refresh order.
pub const MODELS: [Model; 5] = [
    event_performance::MODEL,
    sales_by_category_hour::MODEL,
    payment_mix::MODEL,
    conversion::MODEL,
    booking_funnel::MODEL,
];

/// The Silver tables Gold reads, under the names the parts' queries use.
const INPUTS: [(&str, &TableDef); 3] = [
    ("fact", &BOOKINGS_FACT),
    ("unpaid", &UNPAID_BOOKINGS),
    ("orphans", &ORPHAN_PAYMENTS),
];

/// How a Gold table was refreshed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh {
    /// Silver had nothing new for it.
    Unchanged,
    /// The Silver files added since its last refresh were folded in.
    Incremental {
        /// Silver files read.
        files: usize,
    },
    /// It was rebuilt from all of Silver.
    Full {
        /// Why.
        reason: String,
    },
}

/// What one Gold table's refresh did.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshReport {
    /// `gold.<table>`.
    pub table: String,
    /// How.
    pub refresh: Refresh,
    /// Rows the table holds now.
    pub rows: usize,
    /// Wall time from the start of the refresh to this table's commit (the tables share one
    /// read of Silver and are committed at the same time).
    pub millis: u128,
}

fn gold_error(table: &TableDef, e: impl std::fmt::Display) -> JobError {
    JobError::Gold(format!("{}: {e}", table.qualified_name()))
}

fn app_id(model: &Model, input: &TableDef) -> String {
    format!("gold:{}:{}", model.table.name, input.qualified_name())
}

/// A Silver input as the refresh found it.
struct Input {
    name: &'static str,
    def: &'static TableDef,
    table: Option<DeltaTable>,
}

impl Input {
    fn version(&self) -> Option<i64> {
        self.table
            .as_ref()
            .and_then(|t| t.version())
            .and_then(|v| i64::try_from(v).ok())
    }
}

/// Refreshes every Gold table once from what changed in Silver; `full` rebuilds them from all of
/// it.
pub async fn refresh(lake: &Lake, full: bool) -> Result<Vec<RefreshReport>, JobError> {
    Gold::new(lake).refresh(full).await
}

/// The Gold refresh, keeping the Silver and Gold tables open between refreshes so each reads only
/// the new commits of their logs (what `up` does every few seconds).
pub struct Gold {
    lake: Lake,
    inputs: Vec<Input>,
    outputs: HashMap<&'static str, DeltaTable>,
}

/// The Silver rows a model's refresh reads, per input in [`INPUTS`] order: all of the table
/// (`None`) or the files listed.
type Selection = Vec<Option<Vec<String>>>;

/// A model's refresh, decided before Silver is read.
struct Planned {
    model: &'static Model,
    gold: DeltaTable,
    /// The Silver versions the refresh brings the table to.
    versions: Vec<Option<i64>>,
    /// What to read; `None` when Silver has nothing new for the table.
    read: Option<Read>,
}

struct Read {
    selection: Selection,
    /// Why the table is rebuilt from all of Silver, if it is.
    rebuild: Option<String>,
}

impl Gold {
    /// Nothing opened yet.
    pub fn new(lake: &Lake) -> Gold {
        Gold {
            lake: lake.clone(),
            inputs: INPUTS
                .iter()
                .map(|&(name, def)| Input {
                    name,
                    def,
                    table: None,
                })
                .collect(),
            outputs: HashMap::new(),
        }
    }

    /// Refreshes every Gold table; `full` rebuilds them from all of Silver.
    ///
    /// Silver is read once for all the tables (once per distinct selection of its rows, when a
    /// crash left the tables at different versions) into the [`parts::Parts`] the models sum,
    /// and the tables are then computed and committed at the same time.
    pub async fn refresh(&mut self, full: bool) -> Result<Vec<RefreshReport>, JobError> {
        let started = Instant::now();
        for input in &mut self.inputs {
            match &mut input.table {
                Some(table) => boxoffice_lake::refresh::refresh(table, "gold input")
                    .await
                    .map_err(|e| self.lake.delta_error(input.def, e))?,
                None => input.table = self.lake.open_table(input.def).await?,
            }
        }
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            "gold: Silver's logs read"
        );
        // Gold tables usually stand at the same Silver versions: read each log range once.
        let mut changes = HashMap::new();
        let mut planned = Vec::new();
        for model in &MODELS {
            let gold = match self.outputs.remove(model.table.name) {
                Some(table) => table,
                None => self.lake.ensure_table(model.table).await?,
            };
            planned.push(plan(model, gold, &self.inputs, full, &mut changes).await?);
        }
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            "gold: refreshes planned"
        );
        let mut parts: Vec<(Selection, Parts)> = Vec::new();
        for read in planned.iter().filter_map(|p| p.read.as_ref()) {
            if !parts.iter().any(|(s, _)| *s == read.selection) {
                let built = read_parts(&self.inputs, &read.selection).await?;
                parts.push((read.selection.clone(), built));
            }
        }
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            reads = parts.len(),
            "gold: Silver read into parts"
        );
        let finished = futures::future::try_join_all(
            planned
                .into_iter()
                .map(|p| finish(p, &parts, &self.inputs, started)),
        )
        .await?;
        tracing::debug!(ms = started.elapsed().as_millis(), "gold: tables committed");
        let mut reports = Vec::new();
        for ((name, gold), report) in finished {
            self.outputs.insert(name, gold);
            reports.push(report);
        }
        reports.extend(event_occupancy::refresh(&self.lake).await?);
        Ok(reports)
    }
}

/// Decides what a model's refresh reads: nothing (Silver has nothing new for it), the files
/// Silver gained since the versions its table records, or all of Silver (asked for, or Silver
/// was rewritten).
async fn plan(
    model: &'static Model,
    mut gold: DeltaTable,
    inputs: &[Input],
    full: bool,
    changes: &mut HashMap<(&'static str, Option<i64>), Changes>,
) -> Result<Planned, JobError> {
    let def = model.table;
    let ids: Vec<String> = inputs.iter().map(|i| app_id(model, i.def)).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let consumed = committed_versions(&mut gold, &ids)
        .await
        .map_err(|e| gold_error(def, e))?;
    let versions: Vec<Option<i64>> = inputs.iter().map(Input::version).collect();
    if !full && consumed == versions {
        return Ok(Planned {
            model,
            gold,
            versions,
            read: None,
        });
    }
    let mut selection = Vec::new();
    let mut rebuild = full.then(|| "asked for (--full)".to_string());
    for (input, after) in inputs.iter().zip(&consumed) {
        let (Some(table), Some(through)) = (&input.table, input.version()) else {
            selection.push(Some(Vec::new()));
            continue;
        };
        if rebuild.is_some() {
            selection.push(None); // read whole: no need to know what changed
            continue;
        }
        let found = match changes.entry((input.name, *after)) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => slot.insert(added_since(table, *after, through).await?),
        };
        match found {
            Changes::Added(paths) => selection.push(Some(paths.clone())),
            Changes::Rewritten(reason) => {
                rebuild.get_or_insert(format!("{}: {reason}", input.def.qualified_name()));
                selection.push(None);
            }
        }
    }
    if rebuild.is_some() {
        selection = vec![None; inputs.len()];
    }
    Ok(Planned {
        model,
        gold,
        versions,
        read: Some(Read { selection, rebuild }),
    })
}

/// Reads the selected Silver rows into the parts the models sum.
async fn read_parts(inputs: &[Input], selection: &Selection) -> Result<Parts, JobError> {
    // One partition: a booking has about two rows to fold, so the partial aggregation that
    // parallel partitions add first barely shrinks its input, and each partition would hold its
    // own hash table of a row per booking. One table, built once, took less CPU, less memory and
    // (on a shared 2-core machine) less wall time than two (docs/performance.md).
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = SessionContext::new_with_config(config);
    for (input, selected) in inputs.iter().zip(selection) {
        register(
            &ctx,
            input.name,
            input.def,
            input.table.as_ref(),
            selected.clone(),
        )
        .await?;
    }
    tracing::debug!("gold: Silver's selected files registered");
    Parts::build(&ctx).await.map_err(JobError::Gold)
}

/// Computes a planned table from its parts and the rows it holds, and commits it.
async fn finish(
    planned: Planned,
    parts: &[(Selection, Parts)],
    inputs: &[Input],
    started: Instant,
) -> Result<((&'static str, DeltaTable), RefreshReport), JobError> {
    let Planned {
        model,
        gold,
        versions,
        read,
    } = planned;
    let def = model.table;
    let report = |refresh, rows| RefreshReport {
        table: def.qualified_name(),
        refresh,
        rows,
        millis: started.elapsed().as_millis(),
    };
    let Some(read) = read else {
        let rows = gold_rows(&gold);
        return Ok(((def.name, gold), report(Refresh::Unchanged, rows)));
    };
    let Some((_, from)) = parts.iter().find(|(s, _)| *s == read.selection) else {
        return Err(gold_error(def, "its Silver rows were not read"));
    };
    let ctx = SessionContext::new();
    from.register(&ctx).map_err(|e| gold_error(def, e))?;
    let holds = if read.rebuild.is_some() {
        None
    } else {
        Some(&gold)
    };
    register(&ctx, "current", def, holds, None).await?;
    let batches = ctx
        .sql(model.sql)
        .await
        .map_err(|e| gold_error(def, e))?
        .collect()
        .await
        .map_err(|e| gold_error(def, e))?;
    let batches = conform(def, batches, Utc::now())?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let txns = inputs
        .iter()
        .zip(&versions)
        .filter_map(|(input, v)| v.map(|v| Transaction::new(app_id(model, input.def), v)))
        .collect();
    crate::crash_point(&format!("gold:before:{}", def.qualified_name()));
    let gold = overwrite(gold, def, batches, txns).await?;
    let refresh = match read.rebuild {
        Some(reason) => Refresh::Full { reason },
        None => Refresh::Incremental {
            files: read.selection.iter().flatten().map(Vec::len).sum(),
        },
    };
    Ok(((def.name, gold), report(refresh, rows)))
}

fn gold_rows(table: &DeltaTable) -> usize {
    table.snapshot().map_or(0, |s| {
        s.log_data()
            .iter()
            .filter_map(|f| f.num_records())
            .sum::<usize>()
    })
}

/// Registers `name` as `table`'s rows (see [`crate::frames::register`]).
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    def: &TableDef,
    table: Option<&DeltaTable>,
    selection: Option<Vec<String>>,
) -> Result<(), JobError> {
    crate::frames::register(ctx, name, def, table, selection)
        .await
        .map_err(|e| gold_error(def, e))
}

/// The query's rows as the table's schema, `refreshed_at` added; at least one batch (an empty
/// one when the query gave no rows, so an overwrite still empties the table).
fn conform(
    def: &TableDef,
    batches: Vec<RecordBatch>,
    refreshed_at: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, JobError> {
    let at = Some(refreshed_at.timestamp_micros());
    let mut out = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| crate::frames::conform(def, b, at).map_err(|e| gold_error(def, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        out.push(RecordBatch::new_empty(def.arrow_schema()));
    }
    Ok(out)
}

/// Replaces a Gold table's rows and records, in the same commit, the Silver versions it was
/// built from (its application transactions), so a crash leaves either both or neither.
pub(crate) async fn overwrite(
    gold: DeltaTable,
    def: &TableDef,
    batches: Vec<RecordBatch>,
    txns: Vec<Transaction>,
) -> Result<DeltaTable, JobError> {
    let properties = boxoffice_lake::commit_properties()
        .with_application_transactions(txns)
        .with_metadata(HashMap::from([(
            "operation".to_string(),
            json!("gold refresh"),
        )]));
    gold.write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_writer_properties(def.writer_properties())
        .with_commit_properties(properties)
        .await
        .map_err(|e| JobError::Commit {
            table: def.qualified_name(),
            source: Box::new(e.into()),
        })
}

/// Rows as sorted text (`column=value ...`), the columns in `leave_out` left out: for tests that
/// compare tables.
#[cfg(test)]
fn rows_as_text(batches: &[RecordBatch], leave_out: &[&str]) -> Vec<String> {
    use deltalake::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let row: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .filter(|(f, _)| !leave_out.contains(&f.name().as_str()))
                .map(|(f, c)| {
                    let value = array_value_to_string(c, i).unwrap_or_else(|e| e.to_string());
                    format!("{}={value}", f.name())
                })
                .collect();
            rows.push(row.join(" "));
        }
    }
    rows.sort();
    rows
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
