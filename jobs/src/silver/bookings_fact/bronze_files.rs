//! Bronze's Parquet files as the join reads them: listed with their statistics from the Delta
//! log; for a batch's events, fetched whole a few at a time and decoded on every core; for
//! planning, only the footer and the column chunks it needs, by byte ranges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use boxoffice_lake::{Lake, TableDef};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use deltalake::parquet::arrow::ParquetRecordBatchStreamBuilder;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::input::PartitionId;
use crate::JobError;

/// A Bronze file and what its statistics say about it.
#[derive(Debug, Clone)]
pub(super) struct FileRef {
    pub(super) hub: u8,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: Path,
    /// Bytes, from the Delta log: lets a ranged read fetch the footer in one request.
    pub(super) size: u64,
    pub(super) partitions: Option<(i32, i32)>,
    pub(super) sequences: Option<(i64, i64)>,
}

impl FileRef {
    /// Whether the file may hold sequence numbers above `done` in `partition`.
    pub(super) fn may_hold(&self, id: PartitionId, after: i64, through: i64) -> bool {
        self.hub == id.hub
            && self
                .partitions
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&id.partition))
            && self
                .sequences
                .is_none_or(|(lo, hi)| hi > after && lo <= through)
    }
}

pub(super) type MetaColumns<'a> = (
    &'a deltalake::arrow::array::PrimitiveArray<Int32Type>,
    &'a deltalake::arrow::array::PrimitiveArray<Int64Type>,
    &'a deltalake::arrow::array::PrimitiveArray<TimestampMicrosecondType>,
);

pub(super) fn meta_columns(batch: &RecordBatch) -> Result<MetaColumns<'_>, JobError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| JobError::Bronze(format!("a Bronze file has no {name} column")))
    };
    Ok((
        col("partition_id")?
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| JobError::Bronze("partition_id is not an int".into()))?,
        col("sequence_number")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| JobError::Bronze("sequence_number is not a long".into()))?,
        col("enqueued_time")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| JobError::Bronze("enqueued_time is not a timestamp".into()))?,
    ))
}

pub(super) fn list_files(
    lake: &Lake,
    table: &DeltaTable,
    hub: u8,
    def: &TableDef,
) -> Result<Vec<FileRef>, JobError> {
    let store = table.object_store();
    let snapshot = table.snapshot().map_err(|e| lake.delta_error(def, e))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let stats: Option<serde_json::Value> =
                f.stats().and_then(|s| serde_json::from_str(&s).ok());
            let range = |col: &str| {
                let s = stats.as_ref()?;
                Some((s["minValues"][col].as_i64()?, s["maxValues"][col].as_i64()?))
            };
            FileRef {
                hub,
                store: Arc::clone(&store),
                path: f.object_store_path(),
                size: u64::try_from(f.size()).unwrap_or(0),
                partitions: range("partition_id").map(|(a, b)| (a as i32, b as i32)),
                sequences: range("sequence_number"),
            }
        })
        .collect())
}

async fn fetch(f: &FileRef) -> Result<Bytes, JobError> {
    f.store
        .get(&f.path)
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))?
        .bytes()
        .await
        .map_err(|e| JobError::Bronze(format!("reading {}: {e}", f.path)))
}

fn decode(f: &FileRef, bytes: Bytes, columns: &[&str]) -> Result<Vec<RecordBatch>, JobError> {
    let parquet_err = |e: deltalake::parquet::errors::ParquetError| {
        JobError::Bronze(format!("decoding {}: {e}", f.path))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        // About 3 MB of bodies per batch: the reader grows its buffers by doubling, and the
        // smaller the batch, the sooner the memory of those copies is reused instead of fresh
        // pages being faulted in (65,536 rows: about 10% more page faults).
        .with_batch_size(8_192)
        .build()
        .map_err(parquet_err)?;
    reader
        .map(|b| {
            b.and_then(boxoffice_lake::normalize)
                .map_err(|e| JobError::Bronze(format!("decoding {}: {e}", f.path)))
        })
        .collect()
}

/// Reads `columns` of `files` and hands each file's batches to `take`, returning what it made
/// in file order. Files are fetched a few at a time and decoded on every core: decoding Parquet
/// and copying rows out is most of a read, and files are independent.
pub(super) async fn read_files<T: Send>(
    files: &[&FileRef],
    columns: &[&str],
    take: impl Fn(&FileRef, Vec<RecordBatch>) -> Result<T, JobError> + Sync,
) -> Result<Vec<T>, JobError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut made = Vec::with_capacity(files.len());
    for group in files.chunks(threads * 4) {
        let fetched = futures::future::try_join_all(group.iter().map(|f| fetch(f))).await?;
        let work: Vec<(&FileRef, Bytes)> = group.iter().copied().zip(fetched).collect();
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<T, JobError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(work.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((f, bytes)) = work.get(i) else {
                                break done;
                            };
                            done.push((
                                i,
                                decode(f, bytes.clone(), columns).and_then(|b| take(f, b)),
                            ));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.sort_unstable_by_key(|(i, _)| *i);
        for (_, result) in results {
            made.push(result?);
        }
    }
    Ok(made)
}

/// Reads `columns` of `files` by fetching only their column chunks (after the footer), and hands
/// each file's batches to `take`, in file order. For columns that are a small share of each file:
/// the scan's partitions, sequence numbers and times are about an eighth of a Bronze file, whose
/// bodies are most of the rest, and on Azure every byte is a byte transferred. Decoding them is
/// light, so it stays on the async runtime.
pub(super) async fn read_column_chunks<T>(
    files: &[&FileRef],
    columns: &'static [&'static str],
    take: impl Fn(&FileRef, Vec<RecordBatch>) -> Result<T, JobError>,
) -> Result<Vec<T>, JobError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut made = Vec::with_capacity(files.len());
    for group in files.chunks(threads * 4) {
        // A task per file, so their decoding runs on every worker of the runtime.
        let tasks = group.iter().map(|f| {
            let f = (*f).clone();
            tokio::spawn(async move { chunks(&f, columns).await })
        });
        let read = futures::future::try_join_all(tasks).await.map_err(|e| {
            JobError::Bronze(format!("reading Bronze's column chunks stopped: {e}"))
        })?;
        for (f, batches) in group.iter().zip(read) {
            made.push(take(f, batches?)?);
        }
    }
    Ok(made)
}

async fn chunks(f: &FileRef, columns: &[&str]) -> Result<Vec<RecordBatch>, JobError> {
    let parquet_err = |e: ParquetError| JobError::Bronze(format!("reading {}: {e}", f.path));
    let reader = RangedReader {
        store: Arc::clone(&f.store),
        path: f.path.clone(),
        size: f.size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(parquet_err)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let batches: Vec<RecordBatch> = builder
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(parquet_err)?
        .try_collect()
        .await
        .map_err(parquet_err)?;
    batches
        .into_iter()
        .map(|b| {
            boxoffice_lake::normalize(b)
                .map_err(|e| JobError::Bronze(format!("decoding {}: {e}", f.path)))
        })
        .collect()
}

/// Bytes read from a file's end in the first request, to get its footer in one.
const FOOTER_HINT: usize = 64 * 1024;

/// A Parquet file read by byte ranges, its size known from the Delta log.
struct RangedReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn store_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for RangedReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(store_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_err)
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
                .with_prefetch_hint(Some(FOOTER_HINT))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_ingest::bronze::{BOOKINGS_RAW, PAYMENTS_RAW};

    use super::*;
    use crate::test_bronze::{generated, land};

    /// The raw tables record statistics on few columns; the ones shards skip files by must be
    /// among them, or every shard would read every file.
    #[tokio::test]
    async fn every_raw_file_shows_the_partitions_and_sequences_shards_skip_files_by() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        land(&lake, &generated(5, 400, 4), 50).await;
        for (hub, def) in [(0, &BOOKINGS_RAW), (1, &PAYMENTS_RAW)] {
            let table = lake.open_table(def).await.expect("open").expect("landed");
            let files = list_files(&lake, &table, hub, def).expect("files");
            assert!(files.len() >= 4, "{}: {} files", def.name, files.len());
            for f in &files {
                let (low, high) = f.partitions.expect("partition statistics");
                assert_eq!(low, high, "{}: one partition a file", f.path);
                assert!(f.sequences.is_some(), "{}: sequence statistics", f.path);
            }
            let stats = table
                .snapshot()
                .expect("snapshot")
                .log_data()
                .iter()
                .filter_map(|f| f.stats())
                .next()
                .expect("statistics");
            assert!(
                !stats.contains("\"body\"") && !stats.contains("\"partition_key\""),
                "{}: statistics only on the declared columns: {stats}",
                def.name
            );
        }
    }
}
