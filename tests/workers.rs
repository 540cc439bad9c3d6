//! `boxoffice worker` processes sharing a lake while `up --no-jobs` lands a generated load: killed
//! and restarted at random, joining and leaving, on a local lake and on Azurite. Afterwards
//! Bronze holds every partition's sequence once, no batch was committed twice, each shard had one
//! owner at a time, and Silver and Gold are row for row those of one process over the same
//! Bronze. And a worker whose lake stops answering gives its shards up, then joins again.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use boxoffice_lake::{Lake, Layer};
use boxoffice_testkit::Azurite;
use common::*;

/// 8 partitions per hub, one shard each; small batches, so that a kill lands inside one. (A
/// killed worker's leases are taken over at once on the same machine, whatever their expiry.)
const SETTINGS: &str = "[jobs]\npartitions_per_hub = 8\nshards = 8\nlease_ttl = \"10s\"\n\
                        max_events = 3000\ncheckpoint_every = 3\n";

/// A lake (a local folder, or a container on Azurite), its settings and the workers' logs.
struct Lab {
    dir: tempfile::TempDir,
    /// The local lake's folder (`None` on Azurite).
    lake: Option<PathBuf>,
    /// `--lake`.
    url: String,
    /// Azurite's endpoint.
    endpoint: Option<String>,
    config: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        Lab::with_settings(SETTINGS, None)
    }

    fn on_azurite(azurite: &Azurite, settings: &str) -> Lab {
        Lab::with_settings(settings, Some(azurite.endpoint()))
    }

    fn with_settings(settings: &str, endpoint: Option<String>) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("boxoffice.toml");
        std::fs::write(&config, settings).expect("settings");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
        let lake = endpoint.is_none().then(|| dir.path().join("lake"));
        Lab {
            url: match &lake {
                Some(path) => path.display().to_string(),
                None => "az://lake/workers".to_string(),
            },
            lake,
            endpoint,
            config,
            dir,
        }
    }

    /// The binary on this lake, in the lab's folder (where a remote lake's queue log lives).
    fn cmd(&self) -> Command {
        let mut cmd = boxoffice();
        cmd.current_dir(self.dir.path())
            .args(["--lake", &self.url])
            .arg("--config")
            .arg(&self.config);
        if let Some(endpoint) = &self.endpoint {
            cmd.args(["--emulator", "--emulator-endpoint", endpoint]);
        }
        cmd
    }

    fn open(&self) -> Lake {
        match (&self.lake, &self.endpoint) {
            (Some(path), _) => local(path),
            (None, Some(endpoint)) => Lake::azurite(&self.url, endpoint).expect("lake"),
            (None, None) => unreachable!("a lab's lake is local or on Azurite"),
        }
    }

    /// `up --no-jobs`: the producer and the landing, for `seconds`, committing each partition's
    /// events every `flush`.
    fn producer(&self, rate: &str, seconds: &str, flush: &str) -> Child {
        self.cmd()
            .args([
                "up",
                "--no-jobs",
                "--no-dashboard",
                "--speed",
                "10",
                "--rate",
                rate,
            ])
            .args(["--flush-interval", flush, "--duration", seconds])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("up starts")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// A worker named `name`, its output appended to its log (a restart under the same name
    /// continues it).
    fn worker(&self, name: &str) -> Child {
        self.worker_with(name, &[])
    }

    /// As [`worker`](Self::worker), with more flags.
    fn worker_with(&self, name: &str, flags: &[&str]) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .expect("log");
        let err = self.dir.path().join("logs").join(format!("{name}.err"));
        self.cmd()
            .args(["worker", "--name", name, "--interval", "300ms"])
            .args(flags)
            .stdout(log)
            .stderr(File::create(err).expect("stderr"))
            .spawn()
            .expect("worker starts")
    }
}

/// Asks a process to stop as `docker stop` would, and waits for it.
fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let status = child.wait().expect("exits");
    assert!(
        status.success(),
        "a worker asked to stop exits cleanly: {status}"
    );
}

/// A worker's ownership of one shard, from its log: when it took it and, unless it still holds
/// it (or died), when it let it go.
#[derive(Debug, Clone)]
struct Held {
    worker: String,
    from: String,
    until: Option<String>,
}

/// Every ownership in the workers' logs, by shard.
fn ownership(lab: &Lab, names: &[&str]) -> BTreeMap<u32, Vec<Held>> {
    let mut by_shard: BTreeMap<u32, Vec<Held>> = BTreeMap::new();
    for name in names {
        let text = std::fs::read_to_string(lab.log(name)).unwrap_or_default();
        for line in text.lines() {
            let Some((stamp, rest)) = line.split_once(' ') else {
                continue;
            };
            let Some((_, what)) = rest.split_once(": ") else {
                continue;
            };
            let shard = |prefix: &str| -> Option<u32> {
                what.strip_prefix(prefix)?
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            if let Some(k) = shard("took shard ") {
                by_shard.entry(k).or_default().push(Held {
                    worker: name.to_string(),
                    from: stamp.to_string(),
                    until: None,
                });
            } else if let Some(k) = shard("released shard ").or_else(|| shard("lost shard ")) {
                let open = by_shard
                    .get_mut(&k)
                    .and_then(|h| h.iter_mut().rev().find(|h| h.worker == *name))
                    .expect("a shard is released by its owner");
                open.until = Some(stamp.to_string());
            }
        }
    }
    by_shard
}

/// The shards each worker holds now, by its log.
fn holders(lab: &Lab, names: &[&str]) -> BTreeMap<String, usize> {
    let mut count: BTreeMap<String, usize> = names.iter().map(|n| (n.to_string(), 0)).collect();
    for held in ownership(lab, names).values().flatten() {
        if held.until.is_none() {
            *count.entry(held.worker.clone()).or_default() += 1;
        }
    }
    count
}

/// Waits (up to two minutes: the machine may be busy) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each (application, version) committed to a table of the join: none may appear twice.
fn commits_twice(lake: &Lake, layer: Layer, table: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut twice = Vec::new();
    let log = lake
        .files(layer, &format!("{table}/_delta_log"))
        .expect("log folder");
    let commits: Vec<String> = block_on(async {
        let mut texts = Vec::new();
        for name in log.list("").await.expect("list") {
            if name.ends_with(".json") {
                let bytes = log.get(&name).await.expect("read").expect("a commit");
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        texts
    });
    for commit in commits {
        for line in commit.lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("json");
            let Some(txn) = action.get("txn") else {
                continue;
            };
            let key = format!("{}={}", txn["appId"], txn["version"]);
            if txn["appId"]
                .as_str()
                .is_some_and(|a| a.starts_with("bookings_fact"))
                && !seen.insert(key.clone())
            {
                twice.push(key);
            }
        }
    }
    twice
}

/// Checks no batch of the join was committed twice anywhere, drains the lake with one process
/// and refreshes Gold, then compares it with one process over the same Bronze: a copy of it on a
/// local lake; on Azurite, a full refresh (Silver rebuilt by one process from all of Bronze, Gold
/// rebuilt from it).
fn assert_same_as_one_process(lab: &Lab, fact_rows: usize) {
    let lake = lab.open();
    for (layer, table) in [
        (Layer::Silver, "bookings_fact"),
        (Layer::Silver, "unpaid_bookings"),
        (Layer::Silver, "orphan_payments"),
        (Layer::Silver, "late_events"),
        (Layer::Bronze, "quarantine"),
        (Layer::System, "expectations"),
    ] {
        let twice = commits_twice(&lake, layer, table);
        assert!(twice.is_empty(), "{table}: committed twice: {twice:?}");
    }
    run_ok(
        lab.cmd()
            .args(["job", "run", "bookings_fact", "--drain", "--yes"]),
    );
    run_ok(lab.cmd().args(["job", "run", "gold"]));
    let workers = output_tables_by(|| lab.cmd());
    let expected = match &lab.lake {
        Some(folder) => {
            let reference = lab.dir.path().join("reference");
            copy_dir(&folder.join("bronze"), &reference.join("bronze"));
            let one = |args: &[&str]| {
                run_ok(on(&reference).arg("--config").arg(&lab.config).args(args));
            };
            one(&["job", "run", "bookings_fact", "--drain", "--yes"]);
            one(&["job", "run", "gold"]);
            output_tables(&reference)
        }
        None => {
            run_ok(
                lab.cmd()
                    .args(["job", "run", "bookings_fact", "--full-refresh", "--drain"]),
            );
            output_tables_by(|| lab.cmd())
        }
    };
    let rows = expected[0].1.lines().count();
    assert!(rows > fact_rows, "the fact table has {rows} rows");
    assert_same_as(&expected, &workers, "between the workers and one process");
}

#[test]
fn workers_killed_and_restarted_during_a_load_leave_the_tables_of_one_process() {
    kills_during_a_load(&Lab::new(), ("2500", "200ms"), &[], 5_000);
}

#[test]
fn on_azurite_workers_killed_and_restarted_leave_the_tables_of_one_process() {
    let azurite = Azurite::start();
    // Fewer, larger commits, and Delta checkpoints every few seconds: a new owner opens Bronze
    // from its latest checkpoint rather than from hundreds of commits, each a request.
    kills_during_a_load(
        &Lab::on_azurite(&azurite, SETTINGS),
        ("800", "1s"),
        &["--maintenance-every", "4s"],
        1_000,
    );
}

/// 4 workers (given `flags`) over 8 partitions per hub, one of them SIGKILLed and restarted
/// every second or two while `up` lands (rate, flush interval) for 16 s; then they stop and the
/// lake is compared with one process's.
fn kills_during_a_load(lab: &Lab, (rate, flush): (&str, &str), flags: &[&str], fact_rows: usize) {
    let producer = lab.producer(rate, "16s", flush);
    let names = ["w0", "w1", "w2", "w3"];
    let log_size = |name: &str| std::fs::metadata(lab.log(name)).map_or(0, |m| m.len() as usize);
    let mut workers: Vec<Child> = names.iter().map(|n| lab.worker_with(n, flags)).collect();
    // Where each worker's latest instance starts writing in its log.
    let mut since = [0usize; 4];
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut kills = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(14) {
        std::thread::sleep(Duration::from_millis(800 + next(900)));
        let victim = next(4) as usize;
        workers[victim].kill().expect("SIGKILL");
        workers[victim].wait().expect("reaped");
        kills += 1;
        std::thread::sleep(Duration::from_millis(next(500)));
        since[victim] = log_size(names[victim]);
        workers[victim] = lab.worker_with(names[victim], flags);
    }
    let mut producer = producer;
    assert!(producer.wait().expect("up exits").success());
    // The workers take in what landed last, then stop (once each has started).
    std::thread::sleep(Duration::from_secs(3));
    for (name, from) in names.iter().zip(since) {
        wait_for("every worker has started", || {
            let log = std::fs::read_to_string(lab.log(name)).unwrap_or_default();
            log.get(from..).is_some_and(|l| l.contains("started on"))
        });
    }
    for w in workers {
        terminate(w);
    }
    assert!(kills >= 6, "{kills} kills");
    let landed = assert_no_duplicate_and_no_gap(&lab.open());
    assert!(landed > 5_000, "{landed} events landed");
    assert_eq!(sequences(&lab.open()).len(), 16, "8 partitions per hub");
    let took = names
        .iter()
        .map(|n| std::fs::read_to_string(lab.log(n)).unwrap_or_default())
        .map(|t| t.matches("took shard").count())
        .sum::<usize>();
    assert!(took > 8, "shards changed hands after the kills: {took}");
    let replays = names
        .iter()
        .map(|n| std::fs::read_to_string(lab.log(n)).unwrap_or_default())
        .map(|t| t.matches("batches its last owner left").count())
        .sum::<usize>();
    eprintln!(
        "{kills} kills, {took} shard takings, {replays} of them finishing a dead owner's batches"
    );
    assert_same_as_one_process(lab, fact_rows);
}

#[test]
fn a_worker_joining_and_one_leaving_keep_one_owner_per_shard() {
    let lab = Lab::new();
    let mut producer = lab.producer("1500", "30s", "200ms");
    let names = ["w0", "w1", "w2"];
    let (w0, w1) = (lab.worker("w0"), lab.worker("w1"));
    wait_for("two workers share 8 shards, 4 each", || {
        let h = holders(&lab, &names);
        h["w0"] == 4 && h["w1"] == 4
    });
    let w2 = lab.worker("w2");
    wait_for("three workers share 8 shards: 3, 3 and 2", || {
        let mut h: Vec<usize> = holders(&lab, &names).into_values().collect();
        h.sort_unstable();
        h == [2, 3, 3]
    });
    terminate(w0);
    wait_for("the two left share 8 shards, 4 each", || {
        let h = holders(&lab, &names);
        h["w0"] == 0 && h["w1"] == 4 && h["w2"] == 4
    });
    // The two go on joining a while before the load stops.
    std::thread::sleep(Duration::from_secs(4));
    let _ = Command::new("kill")
        .args(["-INT", &producer.id().to_string()])
        .status();
    assert!(producer.wait().expect("up exits").success());
    std::thread::sleep(Duration::from_secs(2));
    terminate(w1);
    terminate(w2);

    // Each shard had one owner at a time: every ownership ended before the next one began.
    let owned = ownership(&lab, &names);
    assert_eq!(owned.len(), 8, "{owned:?}");
    for (shard, history) in &owned {
        let mut history = history.clone();
        history.sort_by(|a, b| a.from.cmp(&b.from));
        for pair in history.windows(2) {
            let until = pair[0]
                .until
                .as_ref()
                .expect("a clean stop releases every shard");
            assert!(
                *until < pair[1].from,
                "shard {shard}: {} held it until {until}, {} took it at {}",
                pair[0].worker,
                pair[1].worker,
                pair[1].from
            );
        }
        assert!(
            history.iter().all(|h| h.until.is_some()),
            "released at the end"
        );
    }
    assert_no_duplicate_and_no_gap(&lab.open());
    assert_same_as_one_process(&lab, 1_000);
}

#[test]
fn up_with_workers_lands_joins_and_hands_every_lease_back() {
    let lab = Lab::new();
    let out = run_ok(lab.cmd().args([
        "up",
        "--workers",
        "2",
        "--no-dashboard",
        "--duration",
        "6s",
        "--rate",
        "800",
        "--speed",
        "10",
        "--job-interval",
        "500ms",
    ]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("worker up-0: stopped") && said.contains("worker up-1: stopped"),
        "{said}"
    );
    let folder = lab.lake.clone().expect("a local lake");
    let logs = folder.join("_system").join("workers");
    let both: String = ["up-0", "up-1"]
        .iter()
        .map(|n| std::fs::read_to_string(logs.join(format!("{n}.log"))).expect("a log"))
        .collect();
    assert!(both.matches("took shard").count() >= 8, "{both}");
    assert!(both.contains("runs the lake jobs"), "{both}");
    let fact: u64 = sql_rows(&folder, "select count(*) from silver.bookings_fact")[0]
        .parse()
        .expect("a count");
    assert!(fact > 0, "the workers joined what landed");
    assert_no_duplicate_and_no_gap(&lab.open());
    // Every shard's lease was handed back: a run of the whole join is not refused.
    run_ok(lab.cmd().args(["job", "run", "bookings_fact"]));
    assert!(!both.contains("tombstones longer than"), "{both}");

    // A table keeping tombstones longer than new tables do (as an earlier boxoffice made them)
    // is named when a worker starts, with the command that shortens it.
    run_ok(lab.cmd().args([
        "tables",
        "--set-tombstone-retention",
        "1h",
        "--table",
        "silver.bookings_fact",
    ]));
    let out = run_ok(
        lab.cmd()
            .args(["worker", "--name", "w", "--duration", "1s"]),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("note: 1 table keeps tombstones longer than the 5m new tables keep (silver.bookings_fact 1h)")
            && said.contains("boxoffice tables --set-tombstone-retention 5m"),
        "{said}"
    );
}

#[test]
fn a_worker_whose_lake_stops_answering_gives_its_shards_up_and_joins_again() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut azurite = Azurite::start_on_disk(store.path());
    let settings = "[jobs]\npartitions_per_hub = 4\nshards = 4\nlease_ttl = \"3s\"\n";
    let lab = Lab::on_azurite(&azurite, settings);
    let text = || std::fs::read_to_string(lab.log("w0")).unwrap_or_default();
    let mut worker = lab.worker("w0");
    wait_for("the lone worker takes every shard", || {
        text().matches("took shard").count() == 4
    });
    azurite.stop();
    wait_for("the worker says it gave its shards up", || {
        text().contains("lost contact with the lake")
    });
    assert!(
        worker.try_wait().expect("status").is_none(),
        "it keeps trying: {}",
        text()
    );
    let said = text();
    let lost = &said[said.find("lost contact with the lake").expect("said")..];
    assert!(lost.contains("gave up shards [0, 1, 2, 3]"), "{said}");
    azurite.restart();
    wait_for("it joins again and takes the shards back", || {
        let said = text();
        let after = &said[said.find("lost contact with the lake").unwrap_or(0)..];
        after.matches("took shard").count() == 4
    });
    terminate(worker);
}

#[test]
fn a_workers_maintenance_runs_on_a_thread_of_its_own_while_its_shards_go_on() {
    let lab = Lab::new();
    let mut producer = lab.producer("1500", "12s", "200ms");
    let worker = lab.worker_with("w0", &["--maintenance-every", "1s"]);
    let text = || std::fs::read_to_string(lab.log("w0")).unwrap_or_default();
    let threads = format!("/proc/{}/task", worker.id());
    let names = || -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(&threads) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect()
    };
    // A turn (compaction, then a checkpoint of every table) lasts a fraction of a second here:
    // the worker's threads are looked at every few milliseconds while the load lands.
    let (mut seen, mut looks) = (false, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !seen {
        seen = names().iter().any(|n| n == "maintenance");
        looks += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(
        seen,
        "a thread named maintenance in {looks} looks at the worker's threads: {:?}\n{}",
        names(),
        text()
    );
    assert!(producer.wait().expect("up exits").success());
    wait_for("two maintenance turns said what they did", || {
        text().matches("maintenance: ").count() >= 2
    });
    terminate(worker);
    let said = text();
    assert!(!said.contains("failed"), "{said}");
    assert!(said.contains("checkpoints written"), "{said}");
    assert!(said.contains("stopped after"), "{said}");
    // The shards joined what landed while the turns ran.
    let fact: u64 = sql_rows(
        lab.lake.as_deref().expect("a local lake"),
        "select count(*) from silver.bookings_fact",
    )[0]
    .parse()
    .expect("a count");
    assert!(fact > 0, "the worker joined what landed");
}
