//! Which command writes each table: what a message about a table that does not exist yet tells
//! the user to run, what `job run --help` lists per job, and what docs/tables.md must agree with.

use std::fmt::Write;

use boxoffice_lake::TableDef;

use super::tables::catalog;

/// The jobs of `boxoffice job run`, in the order `up` runs them.
pub const JOBS: [&str; 4] = ["batch_load", "bookings_fact", "gold", "cdc"];

/// The command whose run creates and fills `def`.
pub fn written_by(def: &TableDef) -> &'static str {
    match def.qualified_name().as_str() {
        "bronze.bookings_raw" | "bronze.payments_raw" => {
            "landing: `boxoffice up`, `boxoffice ingest FILE`, or the Functions archive trigger"
        }
        "bronze.quarantine" => "every stage that refuses an event: landing, `ingest`, and the jobs",
        "silver.bookings_fact"
        | "silver.unpaid_bookings"
        | "silver.orphan_payments"
        | "silver.late_events"
        | "_system.expectations" => "`boxoffice job run bookings_fact`",
        "silver.event_catalog" | "_system.batch_files" => {
            "`boxoffice job run batch_load` (after `boxoffice batch seed` or a landing file)"
        }
        "ops.raw_movie_bookings" => "`boxoffice cdc simulate` or `boxoffice cdc apply FILE`",
        "bronze.movie_booking_cdc_events"
        | "silver.movie_bookings_filtered"
        | "silver.movie_bookings_history"
        | "gold.movie_booking_insights" => "`boxoffice job run cdc`",
        "gold.event_occupancy" => {
            "`boxoffice job run gold`, once silver.event_catalog exists (`boxoffice job run batch_load`)"
        }
        "_system.job_runs" => "`boxoffice bundle run JOB` and `boxoffice up`",
        "_system.archive_gaps" => {
            "the archivers, when a batch starts past its partition's next sequence number (normally never)"
        }
        name if name.starts_with("gold.") => "`boxoffice job run gold`",
        _ => "boxoffice",
    }
}

/// The tables `boxoffice job run <job>` creates and fills, by [`written_by`], in catalog order.
pub fn tables_of_job(job: &str) -> Vec<String> {
    let writer = format!("`boxoffice job run {job}`");
    catalog()
        .into_iter()
        .filter(|def| written_by(def).starts_with(&writer))
        .map(TableDef::qualified_name)
        .collect()
}

/// The end of `job run --help`: each job's tables, one per line so no terminal width wraps them.
pub fn job_tables_help() -> String {
    let mut text = String::from("Tables each job writes (its first run creates them):\n");
    for job in JOBS {
        for (i, table) in tables_of_job(job).iter().enumerate() {
            let label = if i == 0 { job } else { "" };
            let _ = writeln!(text, "  {label:<15}{table}");
        }
    }
    text.push_str(
        "Besides: bookings_fact, batch_load and cdc put what they refuse in bronze.quarantine;\n\
         batch_load merges box-office sales into silver.bookings_fact (source = 'batch');\n\
         gold records its occupancy check in _system.expectations.\n\
         Every table's columns and meaning: docs/tables.md",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_table_names_its_writer() {
        for def in super::super::tables::catalog() {
            assert_ne!(written_by(def), "boxoffice", "{}", def.qualified_name());
        }
    }
}
