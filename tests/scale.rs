//! The join split into shards, through the binary: shards run by separate processes, in any
//! order and batch size, give the tables one process gives; a crash in one shard is finished by
//! the next run; a lake refuses a changed split until a full refresh moves it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A settings file in `dir`.
fn settings(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("settings");
    path
}

/// The binary against `lake` with the settings file `config`.
fn with(lake: &Path, config: &Path) -> Command {
    let mut cmd = on(lake);
    cmd.arg("--config").arg(config);
    cmd
}

/// A lake whose Bronze holds `n` seeded generated events, landed by `ingest` on the partitions
/// `config` sets (each order on the same partition of both hubs).
fn bronze(dir: &Path, n: &str, config: &Path) -> PathBuf {
    let events = dir.join("events.ndjson");
    run_ok(
        boxoffice()
            .args([
                "generate", "--seed", "11", "--fast", "--rate", "5", "-n", n, "-o",
            ])
            .arg(&events),
    );
    let lake = dir.join("bronze-only");
    let out = with(&lake, config)
        .arg("ingest")
        .arg(&events)
        .output()
        .expect("ingest runs");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "ingest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lake
}

/// `job run bookings_fact` with `args`, then `job run gold`.
fn join_then_gold(lake: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    let out = run_ok(
        with(lake, config)
            .args(["job", "run", "bookings_fact"])
            .args(args),
    );
    run_ok(on(lake).args(["job", "run", "gold"]));
    out
}

fn job_folder(lake: &Path) -> PathBuf {
    lake.join("_system").join("jobs").join("bookings_fact")
}

/// Files in a folder (0 when it does not exist).
fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

const FOUR_SHARDS: &str = "[jobs]\npartitions_per_hub = 4\nshards = 4\n";

#[test]
fn shards_run_by_separate_processes_give_the_tables_of_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let four = settings(dir.path(), "four.toml", FOUR_SHARDS);
    let small = settings(
        dir.path(),
        "small.toml",
        &format!("{FOUR_SHARDS}max_events = 300\ncheckpoint_every = 2\n"),
    );
    let bronze = bronze(dir.path(), "4000", &four);
    for p in 0..4 {
        assert!(
            sequences(&local(&bronze)).contains_key(&("payments".to_string(), p)),
            "ingest landed on 4 partitions per hub"
        );
    }

    let whole = dir.path().join("whole");
    copy_dir(&bronze, &whole);
    join_then_gold(&whole, &four, &["--drain", "--yes"]);
    let expected = output_tables(&whole);
    assert!(
        expected[0].1.lines().count() > 1000,
        "the fact table has rows"
    );
    assert!(
        expected[1].1.lines().count() > 10,
        "some bookings stay unpaid"
    );
    assert!(expected[3].1.lines().count() > 10, "some events are late");
    let record = std::fs::read_to_string(job_folder(&whole).join("sharding.json")).expect("record");
    assert!(record.contains("\"shards\": 4"), "{record}");
    for k in 0..4 {
        let state = job_folder(&whole).join(format!("shards/{k}/state"));
        assert!(state.is_dir(), "shard {k} keeps its own state");
    }
    assert_eq!(files_in(&job_folder(&whole).join("state")), 0);

    // One process per shard, in another order, in small batches; two of them stop before the
    // drain and are opened again from their checkpoints.
    let apart = dir.path().join("apart");
    copy_dir(&bronze, &apart);
    for k in ["3", "1"] {
        let out = run_ok(with(&apart, &small).args(["job", "run", "bookings_fact", "--shard", k]));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!("shard {k} batch 2:")), "{said}");
        assert!(
            !said.contains("shard 0 batch"),
            "only shard {k} ran: {said}"
        );
    }
    for k in ["0", "2", "1", "3"] {
        run_ok(with(&apart, &small).args([
            "job",
            "run",
            "bookings_fact",
            "--shard",
            k,
            "--drain",
            "--yes",
        ]));
    }
    run_ok(on(&apart).args(["job", "run", "gold"]));
    assert_same_tables(&expected, &apart, "between one process and one per shard");

    // A crash inside one shard's batch: the next run of every shard finishes it, and the other
    // shards' rows are neither lost nor written twice.
    let crashed = dir.path().join("crashed");
    copy_dir(&bronze, &crashed);
    run_ok(with(&crashed, &small).args(["job", "run", "bookings_fact", "--shard", "0,2"]));
    let err = run_err(
        with(&crashed, &small)
            .env(
                "BOXOFFICE_CRASH_AT",
                "bookings_fact:before:silver.bookings_fact:3",
            )
            .args([
                "job",
                "run",
                "bookings_fact",
                "--shard",
                "1",
                "--drain",
                "--yes",
            ]),
    );
    assert!(err.contains("aborting"), "{err}");
    join_then_gold(&crashed, &small, &["--drain", "--yes"]);
    assert_same_tables(&expected, &crashed, "after a crash in shard 1");
}

#[test]
fn a_lake_refuses_another_split_until_a_full_refresh_moves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = settings(dir.path(), "one.toml", "[jobs]\npartitions_per_hub = 4\n");
    let two = settings(
        dir.path(),
        "two.toml",
        "[jobs]\npartitions_per_hub = 4\nshards = 2\n",
    );
    let three = settings(
        dir.path(),
        "three.toml",
        "[jobs]\npartitions_per_hub = 4\nshards = 3\n",
    );
    let eight = settings(dir.path(), "eight.toml", "[jobs]\npartitions_per_hub = 8\n");
    let bronze = bronze(dir.path(), "2500", &one);

    // A new lake with no shard count set runs as one shard, where lakes always kept the join.
    let lake = dir.path().join("lake");
    copy_dir(&bronze, &lake);
    join_then_gold(&lake, &one, &["--drain", "--yes"]);
    assert!(job_folder(&lake).join("state").is_dir());
    let record = std::fs::read_to_string(job_folder(&lake).join("sharding.json")).expect("record");
    assert!(record.contains("\"shards\": 1"), "{record}");

    let err = run_err(with(&lake, &two).args(["job", "run", "bookings_fact"]));
    assert!(
        err.contains("runs as 1 shard over 4 partitions per hub")
            && err.contains("ask for 2 shards over 4 partitions per hub")
            && err.contains("--full-refresh"),
        "{err}"
    );
    let err = run_err(with(&lake, &eight).args(["job", "run", "bookings_fact"]));
    assert!(err.contains("ask for 1 shard over 8 partitions"), "{err}");
    let err = run_err(with(&lake, &three).args(["job", "run", "bookings_fact"]));
    assert!(
        err.contains("does not divide") && err.contains("1, 2, 4"),
        "{err}"
    );

    // The full refresh rebuilds under the new split: the tables of a lake that ran it from the
    // start, the old state gone, the new split recorded.
    run_ok(with(&lake, &two).args(["job", "run", "bookings_fact", "--full-refresh", "--drain"]));
    let fresh = dir.path().join("fresh");
    copy_dir(&bronze, &fresh);
    join_then_gold(&fresh, &two, &["--drain", "--yes"]);
    assert_same_tables(
        &output_tables(&fresh),
        &lake,
        "after the refresh to 2 shards",
    );
    assert_eq!(
        files_in(&job_folder(&lake).join("state")),
        0,
        "the one shard's state is gone"
    );
    assert!(job_folder(&lake).join("shards/1/state").is_dir());
    let record = std::fs::read_to_string(job_folder(&lake).join("sharding.json")).expect("record");
    assert!(record.contains("\"shards\": 2"), "{record}");

    // From now on, the lake's split stands when the settings do not name one.
    let out = run_ok(with(&lake, &one).args(["job", "run", "bookings_fact"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("2 shards over 4 partitions per hub"),
        "{said}"
    );
    assert_same_tables(&output_tables(&fresh), &lake, "after another run");

    // Without its record, a lake with shards' state is not mistaken for a new one.
    let record = job_folder(&lake).join("sharding.json");
    let kept = std::fs::read(&record).expect("record");
    std::fs::remove_file(&record).expect("remove");
    let err = run_err(with(&lake, &two).args(["job", "run", "bookings_fact"]));
    assert!(err.contains("sharding.json is missing"), "{err}");
    std::fs::write(&record, kept).expect("restore");
    run_ok(with(&lake, &two).args(["job", "run", "bookings_fact"]));
}
