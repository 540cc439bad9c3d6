//! `boxoffice tables`: every declared table, where it is and what state it is in.

use std::time::Duration;

use boxoffice_ingest::bronze;
use boxoffice_lake::{
    Lake, Layer, PropertyChange, Retention, SHORT_TOMBSTONES_KEPT, TableDef, TableInfo, TableState,
};

use crate::cli::{GlobalArgs, TablesArgs};
use crate::config;
use crate::progress::thousands;

/// Every table boxoffice writes, in data-flow order.
pub fn catalog() -> Vec<&'static TableDef> {
    let mut tables = bronze::TABLES.to_vec();
    tables.extend(boxoffice_jobs::silver::tables::TABLES);
    tables.extend(boxoffice_jobs::gold::tables::TABLES);
    tables.extend(boxoffice_jobs::cdc::tables::TABLES);
    tables.extend(boxoffice_jobs::batch::tables::TABLES);
    tables.push(&boxoffice_bundle::history::JOB_RUNS);
    tables.push(&bronze::ARCHIVE_GAPS);
    tables
}

/// The tables of `layers`, in data-flow order: what a maintenance task over those layers touches.
pub fn in_layers(layers: &[Layer]) -> Vec<&'static TableDef> {
    catalog()
        .into_iter()
        .filter(|d| layers.contains(&d.layer))
        .collect()
}

pub async fn run(global: &GlobalArgs, args: TablesArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let retentions: Vec<(Retention, Duration)> = [
        (Retention::Log, args.set_log_retention),
        (Retention::Tombstones, args.set_tombstone_retention),
    ]
    .into_iter()
    .filter_map(|(kind, d)| Some((kind, d?)))
    .collect();
    if !retentions.is_empty() || args.set_stats_columns {
        let chosen = chosen(&args.tables)?;
        if !retentions.is_empty() {
            set_retentions(&lake, &retentions, &chosen, !args.tables.is_empty()).await?;
        }
        if args.set_stats_columns {
            set_stats_columns(&lake, &chosen, !args.tables.is_empty()).await?;
        }
        return Ok(());
    }
    let mut infos = Vec::new();
    for def in catalog() {
        infos.push(lake.inspect(def).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
    } else {
        print!("{}", render(&infos));
    }
    Ok(())
}

/// A note for `up` and workers when some of the lake's tables keep tombstones longer than tables
/// boxoffice creates now (tables made by an earlier boxoffice: an hour, or Delta's week), with
/// what that costs and the command that changes it; `None` when no table does.
pub async fn long_tombstones_note(lake: &Lake) -> anyhow::Result<Option<String>> {
    let long = lake
        .tombstones_kept_longer_than(&catalog(), SHORT_TOMBSTONES_KEPT)
        .await?;
    if long.is_empty() {
        return Ok(None);
    }
    let mut named: Vec<String> = long
        .iter()
        .take(3)
        .map(|t| format!("{} {}", t.table, humantime::format_duration(t.kept)))
        .collect();
    if long.len() > 3 {
        named.push(format!("and {} more", long.len() - 3));
    }
    let short = humantime::format_duration(SHORT_TOMBSTONES_KEPT);
    let which = match long.len() {
        1 => "1 table keeps".to_string(),
        n => format!("{n} tables keep"),
    };
    Ok(Some(format!(
        "{which} tombstones longer than the {short} new tables keep ({}): every Delta checkpoint \
         repeats them, and over an hour of `up` at 5,000 events/s they slowed every run until \
         Gold fell behind; `boxoffice tables --set-tombstone-retention {short}` sets {short} \
         (docs/continuous.md#running-for-hours-tombstones)",
        named.join(", ")
    )))
}

/// The named tables, or every declared one when none is named.
fn chosen(names: &[String]) -> anyhow::Result<Vec<&'static TableDef>> {
    let all = catalog();
    if names.is_empty() {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for name in names {
        let Some(def) = all.iter().find(|d| d.qualified_name() == *name) else {
            let known: Vec<String> = all.iter().map(|d| d.qualified_name()).collect();
            anyhow::bail!("no table {name}; the tables are: {}", known.join(", "));
        };
        chosen.push(*def);
    }
    Ok(chosen)
}

/// Sets retentions of `chosen`, saying what it did to each; `named` when the user named them
/// (then a table not created yet is mentioned).
async fn set_retentions(
    lake: &Lake,
    retentions: &[(Retention, Duration)],
    chosen: &[&TableDef],
    named: bool,
) -> anyhow::Result<()> {
    for def in chosen {
        let name = def.qualified_name();
        for &(kind, retention) in retentions {
            match lake.set_retention(def, kind, retention).await? {
                PropertyChange::Missing if named => {
                    println!("{name}: not created yet, left alone")
                }
                PropertyChange::Missing => {}
                PropertyChange::Unchanged(to) => println!("{name}: {} already {to}", kind.label()),
                PropertyChange::Changed { from, to } => println!(
                    "{name}: {} {} -> {to}",
                    kind.label(),
                    from.unwrap_or_else(|| format!("{} (Delta's default)", kind.delta_default()))
                ),
            }
        }
    }
    for &(kind, _) in retentions {
        println!(
            "{}",
            match kind {
                Retention::Log =>
                    "maintenance removes the older log entries at its next checkpoint step",
                Retention::Tombstones =>
                    "the next checkpoint of each table drops the older tombstones; vacuum deletes the replaced files by their age",
            }
        );
    }
    Ok(())
}

/// Sets the columns with file statistics of `chosen` to those boxoffice declares, saying what it
/// did to each.
async fn set_stats_columns(lake: &Lake, chosen: &[&TableDef], named: bool) -> anyhow::Result<()> {
    for def in chosen {
        let name = def.qualified_name();
        match (lake.set_stats_columns(def).await?, named) {
            (None, true) => println!(
                "{name}: declares no columns, keeps statistics on every column (Delta's default)"
            ),
            (Some(PropertyChange::Missing), true) => {
                println!("{name}: not created yet, left alone")
            }
            (None | Some(PropertyChange::Missing), false) => {}
            (Some(PropertyChange::Unchanged(to)), _) => {
                println!("{name}: statistics already on {to}")
            }
            (Some(PropertyChange::Changed { from, to }), _) => println!(
                "{name}: statistics on {} -> {to}",
                from.unwrap_or_else(|| "the first 32 columns (Delta's default)".into())
            ),
        }
    }
    println!(
        "files written from now on record these statistics; compaction rewrites the older small files with them"
    );
    Ok(())
}

fn render(infos: &[TableInfo]) -> String {
    let mut rows = vec![[
        "TABLE".to_string(),
        "VERSION".into(),
        "ROWS".into(),
        "FILES".into(),
        "LAST COMMIT (UTC)".into(),
        "PROTOCOL".into(),
        "LOCATION".into(),
    ]];
    for info in infos {
        let cells = match &info.state {
            TableState::Missing => [
                "-".to_string(),
                "-".into(),
                "-".into(),
                "not created yet".into(),
                "-".into(),
            ],
            TableState::Present {
                version,
                rows,
                files,
                last_commit,
                protocol,
                problems,
            } => [
                version.to_string(),
                rows.map_or("?".into(), thousands),
                files.to_string(),
                last_commit.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                if problems.is_empty() {
                    protocol.clone()
                } else {
                    format!("{protocol} ({})", problems.join(", "))
                },
            ],
        };
        let [v, r, f, c, p] = cells;
        rows.push([info.name.clone(), v, r, f, c, p, info.location.clone()]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                // Numbers right-aligned, text left-aligned; the last column is not padded.
                if i == 6 {
                    cell.clone()
                } else if (1..=3).contains(&i) {
                    format!("{cell:>w$}", w = widths[i])
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A misspelt column would silently record no statistics, and readers would read every
    /// file; partition columns have none in Delta.
    #[test]
    fn every_column_a_table_records_statistics_on_is_one_of_its_data_columns() {
        let mut declaring = 0;
        for def in catalog() {
            let schema = def.arrow_schema();
            for column in def.stats_columns {
                assert!(
                    schema.field_with_name(column).is_ok(),
                    "{}: no column {column}",
                    def.qualified_name()
                );
                assert!(
                    !def.partition_columns.contains(column),
                    "{}: {column} is a partition column",
                    def.qualified_name()
                );
            }
            declaring += usize::from(!def.stats_columns.is_empty());
        }
        assert!(declaring >= 8, "the busy tables declare theirs");
    }
}
