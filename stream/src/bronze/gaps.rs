//! `_system/archive_gaps`: where a partition's sequence numbers jumped.
//!
//! Event Hubs numbers each partition's events from 0 without gaps, so a batch that starts past
//! the next number the archiver expects means events were never delivered to it (the host moved
//! its checkpoint past a failed batch, or events expired before they were read). They cannot be
//! fetched again from here; what matters is that the loss is recorded and logged, never silent.

use std::collections::HashMap;
use std::sync::Arc;

use boxoffice_events::Hub;
use boxoffice_lake::{Lake, Layer, PartitionRows, TableDef, append_once, column, utc_timestamp};
use chrono::{DateTime, Utc};
use deltalake::arrow::array::TimestampMicrosecondArray;
use deltalake::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Schema};
use serde_json::json;

use super::archive::ArchiveError;
use super::tables::raw_table;

fn gaps_schema() -> Schema {
    Schema::new(vec![
        column("table_name", DataType::Utf8, false),
        column("hub", DataType::Utf8, false),
        column("partition_id", DataType::Int32, false),
        column("expected_sequence_number", DataType::Int64, false),
        column("got_sequence_number", DataType::Int64, false),
        column("missing", DataType::Int64, false),
        column("detected_at", utc_timestamp(), false),
    ])
}

/// `_system/archive_gaps`: one row per jump in a partition's sequence numbers.
pub const ARCHIVE_GAPS: TableDef = TableDef {
    layer: Layer::System,
    name: "archive_gaps",
    description: "Per hub partition: a batch that started past the next expected sequence number (events never delivered to the archiver)",
    schema: gaps_schema,
    partition_columns: &[],
    properties: &[],
    blob_columns: &[],
    stats_columns: &[],
};

/// One jump in a partition's sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The hub.
    pub hub: Hub,
    /// Its partition.
    pub partition: i32,
    /// The sequence number the archiver expected next.
    pub expected: i64,
    /// The first sequence number the batch held.
    pub got: i64,
}

/// Records `gap` once: a redelivery of the same batch finds the gap's application transaction
/// (`gap:<hub>:<partition>`, version `got`) and writes nothing.
pub async fn record_gap(lake: &Lake, gap: &Gap, at: DateTime<Utc>) -> Result<(), ArchiveError> {
    let mut table = lake.ensure_table(&ARCHIVE_GAPS).await?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![raw_table(gap.hub).qualified_name()])),
        Arc::new(StringArray::from(vec![gap.hub.as_str()])),
        Arc::new(Int32Array::from(vec![gap.partition])),
        Arc::new(Int64Array::from(vec![gap.expected])),
        Arc::new(Int64Array::from(vec![gap.got])),
        Arc::new(Int64Array::from(vec![gap.got - gap.expected])),
        Arc::new(TimestampMicrosecondArray::from(vec![at.timestamp_micros()]).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(ARCHIVE_GAPS.arrow_schema(), columns).map_err(|source| {
        ArchiveError::Arrow {
            table: ARCHIVE_GAPS.qualified_name(),
            source,
        }
    })?;
    let metadata = HashMap::from([
        ("operation".to_string(), json!("archive_gap")),
        ("hub".to_string(), json!(gap.hub.as_str())),
        ("partition".to_string(), json!(gap.partition)),
    ]);
    append_once(
        &mut table,
        vec![PartitionRows::unsplit(batch)],
        &format!("gap:{}:{}", gap.hub, gap.partition),
        gap.got,
        metadata,
        ARCHIVE_GAPS.writer_properties(),
    )
    .await
    .map_err(|source| ArchiveError::Commit {
        hub: gap.hub,
        partitions: vec![gap.partition],
        table: ARCHIVE_GAPS.qualified_name(),
        source: Box::new(source),
    })?;
    Ok(())
}
