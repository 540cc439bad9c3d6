//! The landing area: files dropped for batch loading, read as records with their line numbers.

use bytes::Bytes;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One row of a landing file: its line (CSV, counting the header as line 1) or row number
/// (Parquet, from 1), and its values by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where it is in its file.
    pub line: u64,
    /// Values, in header order (`None`: empty or null).
    pub values: Vec<Option<String>>,
}

/// A file's rows, and the rows that could not even be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// Column names.
    pub header: Vec<String>,
    /// Rows read.
    pub rows: Vec<Record>,
    /// Rows that could not be read: line and why.
    pub unreadable: Vec<(u64, String)>,
}

impl Records {
    /// The value of `column` in `record`.
    pub fn get<'a>(&self, record: &'a Record, column: &str) -> Option<&'a str> {
        let i = self.header.iter().position(|h| h == column)?;
        record.values.get(i)?.as_deref()
    }

    /// The row as `column=value` pairs, for a quarantine body.
    pub fn show(&self, record: &Record) -> String {
        let pairs: serde_json::Map<String, serde_json::Value> = self
            .header
            .iter()
            .zip(&record.values)
            .map(|(h, v)| {
                (
                    h.clone(),
                    v.clone().map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        serde_json::Value::Object(pairs).to_string()
    }
}

/// Reads a CSV or Parquet file (by its extension); the error says why the whole file cannot be.
pub fn read(name: &str, bytes: Bytes) -> Result<Records, String> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        read_csv(&bytes)
    } else if lower.ends_with(".parquet") {
        read_parquet(bytes)
    } else {
        Err("not a CSV or Parquet file (by its extension: .csv or .parquet)".into())
    }
}

fn read_csv(bytes: &[u8]) -> Result<Records, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("no readable header line: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err("the file is empty".into());
    }
    let mut out = Records {
        header,
        ..Records::default()
    };
    for result in reader.records() {
        match result {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() != out.header.len() {
                    out.unreadable.push((
                        line,
                        format!(
                            "has {} fields where the header has {}",
                            record.len(),
                            out.header.len()
                        ),
                    ));
                    continue;
                }
                out.rows.push(Record {
                    line,
                    values: record
                        .iter()
                        .map(|v| (!v.is_empty()).then(|| v.to_string()))
                        .collect(),
                });
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out.unreadable
                    .push((line, format!("is not valid CSV: {e}")));
            }
        }
    }
    Ok(out)
}

fn read_parquet(bytes: Bytes) -> Result<Records, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut out = Records::default();
    let mut line = 0;
    for batch in reader {
        let batch = batch.map_err(|e| format!("Parquet decoding failed: {e}"))?;
        if out.header.is_empty() {
            out.header = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().to_ascii_lowercase())
                .collect();
        }
        let columns = batch
            .columns()
            .iter()
            .map(|c| deltalake::arrow::compute::cast(c, &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a column cannot be read as text: {e}"))?;
        for i in 0..batch.num_rows() {
            line += 1;
            out.rows.push(Record {
                line,
                values: columns
                    .iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        (s.is_valid(i) && !s.value(i).is_empty()).then(|| s.value(i).to_string())
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}
