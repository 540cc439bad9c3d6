//! Exactly-once Bronze landing through the real binary: clean stops lose nothing accepted, and
//! SIGKILL at any moment leaves no duplicate and no gap in any partition's sequence numbers.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use boxoffice_ingest::bronze;
use common::*;

fn up(lake: &std::path::Path) -> Command {
    let mut cmd = boxoffice();
    cmd.arg("up")
        .arg("--lake")
        .arg(lake)
        // Frequent, small commits so a kill lands between and inside them.
        .args(["--flush-interval", "100ms", "--flush-events", "500"]);
    cmd
}

/// "stopped after ...: 12,345 events accepted" -> 12345
fn accepted(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("events accepted"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let n = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no count in {line}"));
    n.replace(',', "").parse().expect("a number")
}

#[test]
fn sigkill_mid_run_then_restart_leaves_no_duplicate_and_no_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = dir.path().join("lake");
    // Three runs killed at different moments: mid-batch, mid-commit, whatever comes.
    for (seed, after_ms) in [(1, 2_500), (2, 1_700), (3, 3_100)] {
        let mut child = up(&lake_dir)
            .args(["--rate", "4000", "--seed", &seed.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(after_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    let lake = local(&lake_dir);
    let after_kills = assert_no_duplicate(&lake);
    assert!(
        after_kills > 1_000,
        "the killed runs landed only {after_kills} events"
    );

    // A clean run after the crashes: it first lands what the last crash left in the queue log
    // (closing any gap), then continues every partition's sequence where it stopped.
    let out = run_ok(up(&lake_dir).args(["--rate", "4000", "--seed", "4", "--duration", "2s"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total = assert_no_duplicate_and_no_gap(&lake);
    assert!(
        total >= after_kills + accepted(&stdout) as usize,
        "{stdout}"
    );
}

#[test]
fn a_duration_stop_lands_every_accepted_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Compressed time, so payments (a few simulated seconds behind their bookings) arrive too.
    let out = run_ok(up(dir.path()).args(["--duration", "3s", "--speed", "20", "--rate", "200"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("every one landed"), "{stdout}");
    let lake = local(dir.path());
    let landed = assert_no_duplicate_and_no_gap(&lake);
    assert_eq!(landed as u64, accepted(&stdout));
    // The run produced all three outcomes.
    assert!(count(&lake, &bronze::BOOKINGS_RAW) > 0);
    assert!(count(&lake, &bronze::PAYMENTS_RAW) > 0);
}

#[test]
fn ctrl_c_stops_cleanly_and_lands_every_accepted_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = up(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(2_500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success(), "exit status {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    let landed = assert_no_duplicate_and_no_gap(&local(dir.path()));
    assert_eq!(landed as u64, accepted(&stdout));
}

#[test]
fn a_count_stop_lands_exactly_that_many_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(up(dir.path()).args(["--count", "2500", "--fast", "--seed", "11"]));
    let landed = assert_no_duplicate_and_no_gap(&local(dir.path()));
    assert_eq!(landed, 2500);
}

#[test]
fn a_second_process_on_the_same_lake_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = up(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1_500));
    let stderr = run_err(up(dir.path()).args(["--duration", "1s"]));
    first.kill().expect("kill");
    first.wait().expect("reaped");
    assert!(
        stderr.contains("refused: `boxoffice up`")
            && stderr.contains("is landing events into this lake"),
        "{stderr}"
    );
    assert!(stderr.contains("stop it first"), "{stderr}");
}
