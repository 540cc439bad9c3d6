//! `_system/job_runs`: every attempt of every task, as a Delta table any engine can query
//! (`boxoffice sql "select * from _system.job_runs"`), and what `bundle status` reads.

use std::sync::Arc;

use boxoffice_lake::{Lake, Layer, TableDef, column, read_rows, utc_timestamp};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{
    DataType, Int32Type, Int64Type, Schema, TimestampMicrosecondType,
};

use crate::manifest::Outcome;
use crate::run::{Attempt, BoxFuture, History, TaskStats};

fn job_runs_schema() -> Schema {
    use DataType::{Int32, Int64, Utf8};
    Schema::new(vec![
        column("run_id", Utf8, false),
        column("job", Utf8, false),
        column("task", Utf8, false),
        column("attempt", Int32, false),
        column("started_at", utc_timestamp(), false),
        column("ended_at", utc_timestamp(), false),
        column("status", Utf8, false),
        column("rows_in", Int64, false),
        column("rows_out", Int64, false),
        column("error", Utf8, true),
    ])
}

/// `_system/job_runs`.
pub const JOB_RUNS: TableDef = TableDef {
    layer: Layer::System,
    name: "job_runs",
    description: "Every attempt of every bundle task: run, job, task, attempt, times, status, rows, error",
    schema: job_runs_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// Appends each attempt to `_system/job_runs` as it ends.
pub struct LakeHistory {
    lake: Lake,
}

impl LakeHistory {
    pub fn new(lake: Lake) -> LakeHistory {
        LakeHistory { lake }
    }
}

impl History for LakeHistory {
    fn record(&self, attempt: Attempt) -> BoxFuture<Result<(), String>> {
        let lake = self.lake.clone();
        Box::pin(async move { append(&lake, &[attempt]).await })
    }
}

/// Appends attempts.
pub async fn append(lake: &Lake, attempts: &[Attempt]) -> Result<(), String> {
    let batch = to_batch(attempts).map_err(|e| format!("job_runs rows: {e}"))?;
    lake.append(&JOB_RUNS, vec![batch])
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn to_batch(attempts: &[Attempt]) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let text = |f: fn(&Attempt) -> &str| -> ArrayRef {
        Arc::new(attempts.iter().map(|a| Some(f(a))).collect::<StringArray>())
    };
    let time = |f: fn(&Attempt) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(attempts.iter().map(f))
                .with_timezone("UTC"),
        )
    };
    let count = |f: fn(&TaskStats) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            attempts.iter().map(|a| f(&a.stats) as i64),
        ))
    };
    RecordBatch::try_new(
        JOB_RUNS.arrow_schema(),
        vec![
            text(|a| &a.run_id),
            text(|a| &a.job),
            text(|a| &a.task),
            Arc::new(Int32Array::from_iter_values(
                attempts.iter().map(|a| a.attempt as i32),
            )),
            time(|a| a.started_at.timestamp_micros()),
            time(|a| a.ended_at.timestamp_micros()),
            text(|a| a.status.as_str()),
            count(|s| s.rows_in),
            count(|s| s.rows_out),
            Arc::new(
                attempts
                    .iter()
                    .map(|a| a.error.as_deref())
                    .collect::<StringArray>(),
            ),
        ],
    )
}

/// Every recorded attempt, oldest first.
pub async fn read_all(lake: &Lake) -> Result<Vec<Attempt>, String> {
    let Some(table) = lake
        .open_table(&JOB_RUNS)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    let batches = read_rows(&table).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in &batches {
        let s = |i: usize| b.column(i).as_string::<i32>();
        let t = |i: usize| b.column(i).as_primitive::<TimestampMicrosecondType>();
        let n = |i: usize| b.column(i).as_primitive::<Int64Type>();
        let attempt = b.column(3).as_primitive::<Int32Type>();
        for r in 0..b.num_rows() {
            let time =
                |i| chrono::DateTime::from_timestamp_micros(t(i).value(r)).unwrap_or_default();
            out.push(Attempt {
                run_id: s(0).value(r).to_string(),
                job: s(1).value(r).to_string(),
                task: s(2).value(r).to_string(),
                attempt: attempt.value(r).max(0) as u32,
                started_at: time(4),
                ended_at: time(5),
                status: Outcome::parse(s(6).value(r)).unwrap_or(Outcome::Failed),
                stats: TaskStats {
                    rows_in: n(7).value(r).max(0) as u64,
                    rows_out: n(8).value(r).max(0) as u64,
                },
                error: (!s(9).is_null(r)).then(|| s(9).value(r).to_string()),
            });
        }
    }
    out.sort_by_key(|a| (a.started_at, a.attempt));
    Ok(out)
}
