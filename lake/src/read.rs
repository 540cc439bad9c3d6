//! Reading a table's current rows straight from its Parquet files.
//!
//! Bronze readers and tests need rows without a query engine: the snapshot lists the active
//! files, and the Parquet reader decodes them. Partition columns live in the Delta log, not in
//! the files, so they are not part of what this returns.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::error::ArrowError;
use deltalake::logstore::ObjectStoreRef;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use deltalake::{DeltaTable, DeltaTableError};
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::path::Path;

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
            let batch = batch
                .and_then(normalize)
                .map_err(|e| DeltaTableError::Generic(format!("{path}: {e}")))?;
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// The rows laid out as `schema`, column by column by name, cast where types differ: a file
/// written before a nullable column was added reads that column as nulls.
pub fn with_schema(
    batch: &RecordBatch,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => Ok(Arc::clone(c)),
            Some(c) => cast(c, field.data_type()),
            None if field.is_nullable() => Ok(deltalake::arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => Err(ArrowError::SchemaError(format!(
                "no column {} in the rows",
                field.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// The same rows with string columns as `Utf8`, whichever writer made the file. delta-rs's
/// OPTIMIZE writes strings as `Utf8View` (and says so in the file's Arrow schema), our writers
/// as `Utf8`; readers of a table mixing both must see one type.
pub fn normalize(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let plain = |t: &DataType| match t {
        DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
        _ => None,
    };
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match plain(field.data_type()) {
            Some(to) => {
                columns.push(cast(column, &to)?);
                fields.push(Arc::new(Field::new(field.name(), to, field.is_nullable())));
            }
            None => {
                columns.push(Arc::clone(column));
                fields.push(Arc::clone(field));
            }
        }
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
}

/// A Parquet file in the table's store, read by byte ranges (its size is known from the log).
pub(crate) struct StoredFile {
    pub(crate) store: ObjectStoreRef,
    pub(crate) path: Path,
    pub(crate) size: u64,
}

impl AsyncFileReader for StoredFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                // The footer in one request for the small files compaction mostly reads.
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
