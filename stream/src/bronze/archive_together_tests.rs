//! A hub's partitions landed together: one commit per table, still exactly once per partition.

use std::collections::HashMap;

use boxoffice_events::Hub;
use boxoffice_lake::{Lake, PartitionRows, StreamRows, append_streams_after_check};

use super::archive::{ArchiveError, BronzeArchiver};
use super::archive_tests::{broken_as_quarantined, events, local_lake, sequence_numbers};
use super::rows::quarantine_batch;
use super::tables::{BOOKINGS_RAW, QUARANTINE};

/// The `_delta_log` entry of `version` in a local table, one JSON action per line.
fn log_entry(lake: &Lake, def: &boxoffice_lake::TableDef, version: u64) -> Vec<serde_json::Value> {
    let path = lake
        .local_dir(def.layer)
        .expect("a local lake")
        .join(def.name)
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    let text = std::fs::read_to_string(&path).expect("log entry");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// The (app id, version) pairs a commit records.
fn txns(actions: &[serde_json::Value]) -> Vec<(String, i64)> {
    let mut found: Vec<(String, i64)> = actions
        .iter()
        .filter_map(|a| {
            let t = a.get("txn")?;
            Some((t["appId"].as_str()?.to_string(), t["version"].as_i64()?))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_hubs_partitions_land_in_one_commit_per_table_each_in_files_of_its_own() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let (p0, p1) = (events(0, 19), events(0, 29));
    let reports = a
        .archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("archive");
    let counts: Vec<(usize, usize)> = reports.iter().map(|r| (r.landed, r.quarantined)).collect();
    assert_eq!(counts, vec![(18, 2), (27, 3)]);

    let expected = vec![
        ("archive:bookings:0".to_string(), 19),
        ("archive:bookings:1".to_string(), 29),
    ];
    for def in [&BOOKINGS_RAW, &QUARANTINE] {
        let table = lake.open_table(def).await.expect("open").expect("exists");
        assert_eq!(
            table.version(),
            Some(1),
            "{}: one commit after creation",
            def.name
        );
        assert_eq!(txns(&log_entry(&lake, def, 1)), expected, "{}", def.name);
    }
    // The join's shards prune Bronze's files by partition: each file holds one.
    let adds: Vec<serde_json::Value> = log_entry(&lake, &BOOKINGS_RAW, 1)
        .into_iter()
        .filter_map(|a| a.get("add").cloned())
        .collect();
    assert_eq!(adds.len(), 2, "a file per partition");
    for add in &adds {
        let stats: serde_json::Value =
            serde_json::from_str(add["stats"].as_str().expect("stats")).expect("json");
        assert_eq!(
            stats["minValues"]["partition_id"], stats["maxValues"]["partition_id"],
            "{stats}"
        );
    }
    let landed = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    assert_eq!(landed.iter().filter(|(p, _)| *p == 0).count(), 18);
    assert_eq!(landed.iter().filter(|(p, _)| *p == 1).count(), 27);
    assert_eq!(a.checkpoint(0).await.expect("cp"), Some(19));
    assert_eq!(a.checkpoint(1).await.expect("cp"), Some(29));
}

#[tokio::test]
async fn a_redelivered_group_lands_only_what_each_partition_lacks() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    a.archive(0, &events(0, 29))
        .await
        .expect("partition 0 alone");
    let (p0, p1) = (events(20, 39), events(0, 9));
    let reports = a
        .archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("overlap");
    // 20..=29 were landed by the first call (29 in quarantine); 30..=39 and all of 1 are new.
    assert_eq!(
        (
            reports[0].landed,
            reports[0].quarantined,
            reports[0].already_landed
        ),
        (9, 1, 10)
    );
    assert_eq!(
        (
            reports[1].landed,
            reports[1].quarantined,
            reports[1].already_landed
        ),
        (9, 1, 0)
    );
    let raw = lake
        .open_table(&BOOKINGS_RAW)
        .await
        .expect("open")
        .expect("exists");
    let version = raw.version();
    let again = a
        .archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("redelivery");
    assert!(again.iter().all(|r| r.landed + r.quarantined == 0));
    assert_eq!(again[0].already_landed + again[1].already_landed, 30);
    let raw = lake
        .open_table(&BOOKINGS_RAW)
        .await
        .expect("open")
        .expect("exists");
    assert_eq!(raw.version(), version, "nothing committed for a redelivery");
    let landed = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    let mut unique = landed.clone();
    unique.dedup();
    assert_eq!(landed, unique, "no event twice");
    assert_eq!(landed.len(), 36 + 9);
}

#[tokio::test]
async fn a_grouped_archiver_racing_a_partitions_own_archivers_lands_each_event_once() {
    let (_dir, lake) = local_lake();
    let batch = events(0, 99);
    let mut handles = Vec::new();
    for racer in 0..3 {
        let (lake, batch) = (lake.clone(), batch.clone());
        handles.push(tokio::spawn(async move {
            let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
                .await
                .expect("open");
            let reports = if racer == 0 {
                a.archive_partitions(&[(0, &batch), (1, &batch)]).await
            } else {
                a.archive(1, &batch).await.map(|r| vec![r])
            };
            reports.expect("archive")
        }));
    }
    let mut landed = 0;
    for h in handles {
        landed += h
            .await
            .expect("join")
            .iter()
            .map(|r| r.landed)
            .sum::<usize>();
    }
    assert_eq!(landed, 180, "the winners' rows add up to both batches once");
    let raw = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    assert_eq!(raw.len(), 180);
    let mut unique = raw.clone();
    unique.dedup();
    assert_eq!(raw, unique, "no event twice");
    assert_eq!(sequence_numbers(&lake, &QUARANTINE).await.len(), 20);
}

#[tokio::test]
async fn two_batches_of_one_partition_in_one_call_are_refused_before_anything_lands() {
    let (_dir, lake) = local_lake();
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let (first, second) = (events(0, 9), events(10, 19));
    let refused = a.archive_partitions(&[(0, &first), (0, &second)]).await;
    match refused {
        Err(e @ ArchiveError::PartitionTwice { partition: 0, .. }) => {
            assert!(e.to_string().contains("one after another"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(a.checkpoint(0).await.expect("cp"), None);
    // Empty batches take no part.
    let reports = a
        .archive_partitions(&[(0, &first), (1, &[])])
        .await
        .expect("archive");
    assert_eq!((reports[0].landed, reports[1].landed), (9, 0));
    assert_eq!(a.checkpoint(1).await.expect("cp"), None);
}

#[tokio::test]
async fn a_group_that_crashed_between_its_commits_is_completed_by_the_retry() {
    let (_dir, lake) = local_lake();
    let (p0, p1) = (events(0, 39), events(0, 19));
    // The crashed attempt had landed partition 0's invalid events in quarantine (with its
    // transaction) and nothing else: partition 1's quarantine rows and both raw rows are missing.
    let invalid = broken_as_quarantined(&p0, 0);
    let mut quarantine = lake.ensure_table(&QUARANTINE).await.expect("quarantine");
    let app = BronzeArchiver::app_id(Hub::Bookings, 0);
    let stream = StreamRows {
        app_id: &app,
        version: 39,
        rows: vec![PartitionRows::unsplit(
            quarantine_batch(&invalid).expect("batch"),
        )],
    };
    append_streams_after_check(
        &mut quarantine,
        vec![stream],
        HashMap::new(),
        QUARANTINE.writer_properties(),
    )
    .await
    .expect("the crashed attempt's quarantine commit");

    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let reports = a
        .archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("retry");
    let seen: Vec<(usize, usize, usize)> = reports
        .iter()
        .map(|r| (r.landed, r.quarantined, r.already_landed))
        .collect();
    assert_eq!(seen, vec![(36, 0, 4), (18, 2, 0)]);
    // The retry's quarantine commit held partition 1 alone.
    assert_eq!(
        txns(&log_entry(&lake, &QUARANTINE, 2)),
        vec![("archive:bookings:1".to_string(), 19)]
    );
    let quarantined = sequence_numbers(&lake, &QUARANTINE).await;
    assert_eq!(quarantined.len(), 6, "{quarantined:?}");
    assert_eq!(sequence_numbers(&lake, &BOOKINGS_RAW).await.len(), 54);
    assert_eq!(a.checkpoint(0).await.expect("cp"), Some(39));
    assert_eq!(a.checkpoint(1).await.expect("cp"), Some(19));
}

#[tokio::test]
async fn on_azurite_a_hubs_partitions_land_in_one_commit_each_in_files_of_its_own() {
    let azurite = boxoffice_testkit::Azurite::start();
    let lake = Lake::azurite("az://lake/together", &azurite.endpoint()).expect("lake");
    lake.prepare().await.expect("container");
    let mut a = BronzeArchiver::open(&lake, Hub::Bookings)
        .await
        .expect("open");
    let (p0, p1) = (events(0, 19), events(0, 9));
    a.archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("archive");
    let again = a
        .archive_partitions(&[(0, &p0), (1, &p1)])
        .await
        .expect("redelivery");
    assert_eq!(again[0].already_landed + again[1].already_landed, 30);

    let raw = lake
        .open_table(&BOOKINGS_RAW)
        .await
        .expect("open")
        .expect("exists");
    assert_eq!(raw.version(), Some(1), "one commit for both partitions");
    let files: Vec<(i64, i64)> = raw
        .snapshot()
        .expect("snapshot")
        .log_data()
        .iter()
        .map(|f| {
            let stats: serde_json::Value =
                serde_json::from_str(&f.stats().expect("stats")).expect("json");
            let bound = |side: &str| stats[side]["partition_id"].as_i64().expect("bound");
            (bound("minValues"), bound("maxValues"))
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|(lo, hi)| lo == hi), "{files:?}");
    let landed = sequence_numbers(&lake, &BOOKINGS_RAW).await;
    assert_eq!(landed.len(), 18 + 9);
    assert_eq!(a.checkpoint(0).await.expect("cp"), Some(19));
    assert_eq!(a.checkpoint(1).await.expect("cp"), Some(9));
}
