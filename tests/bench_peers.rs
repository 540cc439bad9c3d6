//! `scripts/bench-peers` as users run it: it installs DuckDB and Polars into its own virtualenv,
//! builds a Bronze lake with the binary under test, runs boxoffice and each peer, and prints
//! figures only when every engine's Silver and Gold rows agree. When boxoffice's semantics drift
//! from the peers' (here: a different payment window in a boxoffice.toml), it names the engine,
//! the table and the first differing row, and prints no ratios.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const TABLES: [&str; 9] = [
    "silver.bookings_fact",
    "silver.unpaid_bookings",
    "silver.orphan_payments",
    "silver.late_events",
    "gold.event_performance",
    "gold.sales_by_category_hour",
    "gold.payment_mix",
    "gold.conversion",
    "gold.booking_funnel",
];

fn bench_peers(work: &Path, extra: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-peers");
    Command::new("python3")
        .arg(script)
        .args([
            "--small",
            "--reps",
            "1",
            "--boxoffice",
            env!("CARGO_BIN_EXE_boxoffice"),
        ])
        .arg("--work")
        .arg(work)
        .args(extra)
        .output()
        .expect("python3 runs scripts/bench-peers")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_engine_agrees_and_the_figures_come_as_ratios() {
    let work = tempfile::tempdir().expect("temp dir");
    let markdown = work.path().join("peers.md");
    let out = bench_peers(
        work.path(),
        &[
            "--late",
            "--markdown",
            markdown.to_str().expect("utf-8 path"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "bench-peers failed:\n{stdout}\n{stderr}"
    );
    for engine in ["duckdb", "polars"] {
        for table in TABLES {
            let agreed = stdout.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.starts_with(&["agree", engine, table])
            });
            assert!(agreed, "no agreement line for {engine} {table}:\n{stdout}");
        }
    }
    // The late variant must exercise the late path: some events were routed to late_events.
    let late = stdout
        .lines()
        .find(|l| {
            l.split_whitespace()
                .take(3)
                .eq(["agree", "duckdb", "silver.late_events"])
        })
        .expect("late_events line");
    let rows: u64 = late
        .split_whitespace()
        .nth(3)
        .unwrap_or("0")
        .replace(',', "")
        .parse()
        .unwrap_or(0);
    assert!(
        rows > 0,
        "the --late input put no event in late_events: {late}"
    );
    for section in ["Silver (bookings_fact, drained)", "Gold (full rebuild)"] {
        assert!(stdout.contains(section), "no {section} table:\n{stdout}");
    }
    let md = std::fs::read_to_string(&markdown).expect("--markdown wrote its file");
    for engine in ["boxoffice", "duckdb", "polars"] {
        assert!(
            md.contains(&format!("| {engine} ")),
            "{engine} missing from:\n{md}"
        );
    }
    assert!(md.contains("x boxoffice"), "no ratio column in:\n{md}");
}

#[test]
fn a_disagreement_names_the_engine_the_table_and_the_row_and_prints_no_figures() {
    let work = tempfile::tempdir().expect("temp dir");
    // boxoffice runs in <work>/boxoffice and reads ./boxoffice.toml there: a one-minute payment
    // window makes its join differ from the peers' two minutes.
    let folder = work.path().join("boxoffice");
    std::fs::create_dir_all(&folder).expect("boxoffice folder");
    std::fs::write(folder.join("boxoffice.toml"), "[join]\nwindow = \"1m\"\n").expect("toml");
    let out = bench_peers(work.path(), &["--engines", "duckdb"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal:\n{stdout}\n{stderr}"
    );
    let disagree = stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("DISAGREE  duckdb   silver.bookings_fact")
        })
        .unwrap_or_else(|| panic!("no DISAGREE line for duckdb's fact table:\n{stdout}"));
    assert!(disagree.contains("boxoffice"), "{disagree}");
    assert!(
        stdout.contains("first row only in duckdb: order_id=")
            || stdout.contains("first row only in boxoffice: order_id="),
        "the first differing row is not shown:\n{stdout}"
    );
    assert!(stderr.contains("no figures are printed"), "{stderr}");
    assert!(
        !stdout.contains("x boxoffice"),
        "ratios printed despite a disagreement:\n{stdout}"
    );
}

#[test]
fn gold_alone_builds_silver_once_and_reports_only_the_gold_rebuilds() {
    let work = tempfile::tempdir().expect("temp dir");
    let out = bench_peers(
        work.path(),
        &["--engines", "duckdb", "--stages", "gold", "--reps", "2"],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "bench-peers failed:\n{stdout}\n{stderr}"
    );
    for engine in ["boxoffice", "duckdb"] {
        assert!(
            stderr.contains(&format!("{engine}: Silver built once (not measured)")),
            "{engine}'s Silver was not built first:\n{stderr}"
        );
        for rep in 1..=2 {
            assert!(
                stderr.contains(&format!("repetition {rep}/2, {engine}: Gold ")),
                "no Gold run {rep} for {engine}:\n{stderr}"
            );
        }
    }
    // The rows are still checked, Silver's included.
    for table in TABLES {
        assert!(
            stdout.lines().any(|l| l
                .split_whitespace()
                .collect::<Vec<_>>()
                .starts_with(&["agree", "duckdb", table])),
            "no agreement line for {table}:\n{stdout}"
        );
    }
    assert!(stdout.contains("Gold (full rebuild)"), "{stdout}");
    assert!(
        !stdout.contains("Silver (bookings_fact, drained)"),
        "Silver was not measured, yet reported:\n{stdout}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("repetition") && l.contains("Silver")),
        "a repetition ran Silver again:\n{stderr}"
    );
}
