use std::time::Duration;

use boxoffice_events::Hub;
use boxoffice_lake::Lake;

use super::*;
use crate::Source;
use crate::bronze::BOOKINGS_RAW;
use crate::bronze::archive_tests::booking;
use crate::queue::QueueConfig;

#[tokio::test]
async fn a_hubs_partitions_waiting_together_land_in_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    let mut queue = QueueConfig::new(dir.path().join("queue"));
    queue.partitions = 2;
    let mut config = LandingConfig::new(queue);
    // Nothing flushes by size or time: the batches wait for `finish`.
    config.linger = Duration::from_secs(600);
    let landing = Landing::start(&lake, config).await.expect("start");
    let mut per_partition = [0; 2];
    for order in 0..40 {
        let key = format!("order_{order}");
        let stamp = landing
            .queue()
            .send(Hub::Bookings, Some(&key), Source::Generator, booking(order))
            .await
            .expect("send");
        per_partition[stamp.partition as usize] += 1;
    }
    assert!(per_partition.iter().all(|n| *n > 0), "{per_partition:?}");
    let totals = landing.finish().await.expect("finish");
    assert_eq!((totals.bookings, totals.batches), (40, 1));

    let table = lake
        .open_table(&BOOKINGS_RAW)
        .await
        .expect("open")
        .expect("exists");
    assert_eq!(table.version(), Some(1), "one commit for both partitions");
    let log = lake
        .local_dir(BOOKINGS_RAW.layer)
        .expect("local")
        .join("bookings_raw/_delta_log/00000000000000000001.json");
    let entry = std::fs::read_to_string(log).expect("log entry");
    let mut txns: Vec<(String, i64)> = entry
        .lines()
        .filter_map(|l| {
            let action: serde_json::Value = serde_json::from_str(l).ok()?;
            let t = action.get("txn")?;
            Some((t["appId"].as_str()?.to_string(), t["version"].as_i64()?))
        })
        .collect();
    txns.sort();
    let expected: Vec<(String, i64)> = (0..2)
        .map(|p| (format!("archive:bookings:{p}"), per_partition[p] - 1))
        .collect();
    assert_eq!(txns, expected);
}
