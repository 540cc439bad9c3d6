//! Helpers for tests that run the real `boxoffice` binary and read the lake it wrote.
#![allow(dead_code)] // each test file uses its own subset

pub mod bicep;
pub mod blob_proxy;
pub mod browser;
pub mod fake_hub;
pub mod fake_identity;
pub mod functions_host;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use boxoffice_ingest::bronze;
use boxoffice_lake::{Lake, TableDef, read_rows};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int32Type, Int64Type};

/// The binary under test, with logs kept quiet. `up`'s dashboard takes any free port, so tests
/// running at once never collide on 8080.
pub fn boxoffice() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    cmd.env("BOXOFFICE_DASHBOARD_PORT", "0")
        .env_remove("BOXOFFICE_LAKE")
        .env_remove("BOXOFFICE_CONFIG")
        .env_remove("AZURE_STORAGE_USE_EMULATOR")
        .env_remove("RUST_LOG");
    cmd
}

/// The binary, against `lake`.
pub fn on(lake: &Path) -> Command {
    let mut cmd = boxoffice();
    cmd.arg("--lake").arg(lake);
    cmd
}

/// Writes `dir/name.yml`: a bundle whose `maintenance` job runs `tasks` (YAML list items, each
/// line indented by six spaces) on the local target, its lake set by `BUNDLE_VAR_lake`.
pub fn maintenance_bundle(dir: &Path, name: &str, tasks: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yml"));
    let text = format!(
        "bundle: {{name: t}}
variables: {{lake: {{default: ./lakehouse}}}}
targets: {{local: {{default: true}}}}
jobs:
  maintenance:
    tasks:
{tasks}"
    );
    std::fs::write(&path, text).expect("write bundle");
    path
}

/// `boxoffice sql` as CSV rows, without the header line.
pub fn sql_rows(lake: &Path, query: &str) -> Vec<String> {
    let out = run_ok(on(lake).args(["sql", "--format", "csv", query]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Runs to completion (the binary under test, a script, a Python helper); panics with the
/// command and both streams when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `boxoffice ingest FILE` into `lake`: exit code 0 when every line landed, 3 when some were
/// quarantined (generated data has malformed lines); anything else fails the test.
pub fn ingest(lake: &Path, file: &Path) -> Output {
    let out = on(lake)
        .arg("ingest")
        .arg(file)
        .output()
        .expect("ingest runs");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "ingest {} failed ({}):\nstdout: {}\nstderr: {}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs to completion expecting failure; returns stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every row of a table (empty when the table does not exist).
pub fn rows(lake: &Lake, def: &TableDef) -> Vec<RecordBatch> {
    block_on(async {
        match lake.open_table(def).await.expect("open") {
            Some(t) => read_rows(&t).await.expect("read"),
            None => Vec::new(),
        }
    })
}

pub fn count(lake: &Lake, def: &TableDef) -> usize {
    rows(lake, def).iter().map(RecordBatch::num_rows).sum()
}

/// A string column of a table, all rows.
pub fn strings(lake: &Lake, def: &TableDef, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in rows(lake, def) {
        let c = b
            .column_by_name(column)
            .expect("column")
            .as_string::<i32>()
            .clone();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

/// Sequence numbers per (hub, partition) across the raw tables and quarantine, sorted.
pub fn sequences(lake: &Lake) -> BTreeMap<(String, i32), Vec<i64>> {
    let mut out: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for def in bronze::TABLES {
        for b in rows(lake, def) {
            let hub = b
                .column_by_name("hub")
                .expect("hub")
                .as_string::<i32>()
                .clone();
            let p = b
                .column_by_name("partition_id")
                .expect("p")
                .as_primitive::<Int32Type>()
                .clone();
            let s = b
                .column_by_name("sequence_number")
                .expect("s")
                .as_primitive::<Int64Type>()
                .clone();
            for i in 0..b.num_rows() {
                if !s.is_null(i) {
                    out.entry((hub.value(i).to_string(), p.value(i)))
                        .or_default()
                        .push(s.value(i));
                }
            }
        }
    }
    for seqs in out.values_mut() {
        seqs.sort_unstable();
    }
    out
}

/// Panics if any (hub, partition, sequence number) landed twice. Right after a crash this is the
/// whole invariant: events still in the queue log are not landed yet (they are replayed by the
/// next run), so a gap is expected until then.
pub fn assert_no_duplicate(lake: &Lake) -> usize {
    let mut total = 0;
    for ((hub, p), seqs) in sequences(lake) {
        if let Some(w) = seqs.windows(2).find(|w| w[0] == w[1]) {
            panic!("{hub} partition {p}: sequence number {} landed twice", w[0]);
        }
        total += seqs.len();
    }
    total
}

/// Panics unless every partition holds 0..n exactly once.
pub fn assert_no_duplicate_and_no_gap(lake: &Lake) -> usize {
    let all = sequences(lake);
    assert!(!all.is_empty(), "nothing landed");
    let mut total = 0;
    for ((hub, p), seqs) in &all {
        let expected: Vec<i64> = (0..seqs.len() as i64).collect();
        if *seqs != expected {
            let dup = seqs.windows(2).find(|w| w[0] == w[1]);
            let gap = seqs.iter().enumerate().find(|(i, s)| **s != *i as i64);
            panic!(
                "{hub} partition {p}: {} events, duplicate {dup:?}, first gap {gap:?}",
                seqs.len()
            );
        }
        total += seqs.len();
    }
    total
}

/// A copy of a folder (a lake, to run something else on the same tables).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

pub fn local(path: &Path) -> Lake {
    Lake::local(path).expect("lake")
}

/// Every output table of the join and Gold as CSV, rows sorted, without processing times: what
/// "the same tables" means when two runs over the same Bronze are compared.
pub fn output_tables(lake: &Path) -> Vec<(String, String)> {
    output_tables_by(|| on(lake))
}

/// As [`output_tables`], with `boxoffice sql` run by `command` (the binary on some lake, e.g. on
/// Azurite).
pub fn output_tables_by(command: impl Fn() -> Command) -> Vec<(String, String)> {
    let tables = [
        (
            "silver.bookings_fact",
            "booking_event_uid, payment_event_uid, seat_number",
        ),
        ("silver.unpaid_bookings", "booking_event_uid"),
        ("silver.orphan_payments", "payment_event_uid"),
        ("silver.late_events", "event_uid"),
        ("gold.event_performance", "event_id, event_name"),
        (
            "gold.sales_by_category_hour",
            "booking_date, booking_hour, event_category",
        ),
        ("gold.payment_mix", "payment_method, payment_type"),
        ("gold.conversion", "booking_date, booking_hour"),
    ];
    tables
        .iter()
        .map(|(table, order)| {
            let except = if table.starts_with("gold") {
                "refreshed_at"
            } else {
                "processed_at"
            };
            let q = format!("select * exclude ({except}) from {table} order by {order}");
            let out = run_ok(command().args(["sql", "--format", "csv", &q]));
            (
                table.to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .collect()
}

/// Panics unless two lakes' output tables ([`output_tables`]) are equal, naming the first that
/// differs.
pub fn assert_same_tables(expected: &[(String, String)], lake: &Path, what: &str) {
    assert_same_as(expected, &output_tables(lake), what);
}

/// Panics unless two sets of output tables are equal, naming the first that differs.
pub fn assert_same_as(expected: &[(String, String)], actual: &[(String, String)], what: &str) {
    for (a, b) in expected.iter().zip(actual) {
        assert_eq!(a.1, b.1, "{} differs {what}", a.0);
    }
}
