//! `boxoffice sql`: DataFusion over every lake table, named `layer.table`.

use std::sync::Arc;

use anyhow::Context;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::cli::{GlobalArgs, SqlArgs, SqlFormat};
use crate::commands::table_writers::written_by;
use crate::commands::tables::catalog;
use crate::config;

pub async fn run(global: &GlobalArgs, args: SqlArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let default_catalog = ctx
        .catalog("datafusion")
        .context("DataFusion has no default catalog")?;
    let mut registered = Vec::new();
    for def in catalog() {
        let schema = def.layer.to_string();
        if default_catalog.schema(&schema).is_none() {
            default_catalog.register_schema(&schema, Arc::new(MemorySchemaProvider::new()))?;
        }
        let reference = TableReference::partial(schema, def.name);
        let Some(table) = lake.open_table(def).await? else {
            // Declared but not written yet: it reads as empty, and the user learns who writes it.
            if mentions(&args.query, &def.qualified_name()) {
                eprintln!(
                    "note: {} has not been created yet (it is written by {}); it reads as empty",
                    def.qualified_name(),
                    written_by(def)
                );
            }
            ctx.register_table(
                reference,
                Arc::new(MemTable::try_new(def.arrow_schema(), vec![vec![]])?),
            )?;
            continue;
        };
        table.update_datafusion_session(&ctx.state())?;
        let provider = table.table_provider().await?;
        ctx.register_table(reference, provider)?;
        registered.push(def.qualified_name());
    }
    let frame = ctx.sql(&args.query).await.map_err(|e| {
        let known = if registered.is_empty() {
            "none yet: run `boxoffice up` or `boxoffice ingest` first".to_string()
        } else {
            registered.join(", ")
        };
        anyhow::anyhow!("{}\n(tables: {known})", without_catalog(&e.to_string()))
    })?;
    let batches = frame
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{}", without_catalog(&e.to_string())))?;
    let mut out = std::io::stdout().lock();
    write(&mut out, &batches, args.format)?;
    Ok(())
}

/// Whether `query` names `table` (`layer.table`, any case, as a whole word).
fn mentions(query: &str, table: &str) -> bool {
    let (query, table) = (query.to_ascii_lowercase(), table.to_ascii_lowercase());
    let word = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
    query.match_indices(&table).any(|(at, _)| {
        word(query[..at].chars().next_back()) && word(query[at + table.len()..].chars().next())
    })
}

/// DataFusion's messages without its catalog's name (`datafusion.gold.x` is `gold.x` to users).
fn without_catalog(message: &str) -> String {
    message.replace("datafusion.", "")
}

/// Prints `batches` in `format`.
pub fn write(
    out: &mut impl std::io::Write,
    batches: &[RecordBatch],
    format: SqlFormat,
) -> anyhow::Result<()> {
    match format {
        SqlFormat::Table => writeln!(out, "{}", pretty_format_batches(batches)?)?,
        SqlFormat::Csv => {
            let mut writer = deltalake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                writer.write(b)?;
            }
        }
        SqlFormat::Json => {
            let mut writer = deltalake::arrow::json::ArrayWriter::new(&mut *out);
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}
