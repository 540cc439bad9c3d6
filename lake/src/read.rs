//! Reading a table's current rows straight from its Parquet files.
//!
//! Bronze readers and tests need rows without a query engine: the snapshot lists the active
//! files, and the Parquet reader decodes them. Partition columns live in the Delta log, not in
//! the files, so they are not part of what this returns.

use deltalake::arrow::array::RecordBatch;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;

/// Every row of the table's current version (without partition columns), file by file.
pub async fn read_rows(table: &DeltaTable) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let store = table.object_store();
    let paths: Vec<_> = table
        .snapshot()?
        .log_data()
        .iter()
        .map(|f| f.object_store_path())
        .collect();
    let mut batches = Vec::new();
    for path in paths {
        let bytes = store.get(&path).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| DeltaTableError::Generic(format!("{path}: {e}")))?;
        for batch in reader {
            batches.push(batch.map_err(|e| DeltaTableError::Generic(format!("{path}: {e}")))?);
        }
    }
    Ok(batches)
}
