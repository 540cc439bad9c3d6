//! Which command writes each table: what a message about a table that does not exist yet tells
//! the user to run, and what `--help` lists per job.

use boxoffice_lake::TableDef;

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
