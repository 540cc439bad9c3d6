//! DataFusion plumbing the jobs share: Delta tables registered for SQL, and query rows cast to
//! a table's declared schema. Errors are plain text; each job wraps them with its own name.

use std::sync::Arc;

use boxoffice_lake::TableDef;
use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

/// Registers `name` as `table`'s rows: all of them (`selection` None), only the listed files,
/// or none (no table yet, no files in it, or no files listed): then an empty table of `def`'s
/// schema, so queries over it still plan.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    def: &TableDef,
    table: Option<&DeltaTable>,
    selection: Option<Vec<String>>,
) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let has_files = table.is_some_and(|t| t.snapshot().is_ok_and(|s| s.log_data().num_files() > 0));
    let provider: Arc<dyn TableProvider> = match table {
        Some(t) if has_files && selection.as_ref().is_none_or(|s| !s.is_empty()) => {
            t.update_datafusion_session(&ctx.state())
                .map_err(|e| text(&e))?;
            let mut builder = t.table_provider();
            if let Some(paths) = selection {
                builder = builder.with_file_paths(paths);
            }
            builder.await.map_err(|e| text(&e))?
        }
        _ => Arc::new(MemTable::try_new(def.arrow_schema(), vec![vec![]]).map_err(|e| text(&e))?),
    };
    ctx.register_table(name, provider).map_err(|e| text(&e))?;
    Ok(())
}

/// Runs `sql` and collects its rows.
pub(crate) async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    ctx.sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())
}

/// A query's rows as `def`'s schema, column by column by name, cast (DataFusion reads strings
/// as views, sums widen decimals); a `refreshed_at` column the query does not give is filled
/// with `refreshed_at` when one is given.
pub(crate) fn conform(
    def: &TableDef,
    batch: &RecordBatch,
    refreshed_at: Option<i64>,
) -> Result<RecordBatch, String> {
    let schema = def.arrow_schema();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        if field.name() == "refreshed_at"
            && let Some(at) = refreshed_at
        {
            columns.push(Arc::new(
                TimestampMicrosecondArray::from(vec![at; batch.num_rows()]).with_timezone("UTC"),
            ));
            continue;
        }
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| format!("the query gives no {}", field.name()))?;
        columns.push(
            deltalake::arrow::compute::cast(column, field.data_type())
                .map_err(|e| format!("{}: {e}", field.name()))?,
        );
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}
