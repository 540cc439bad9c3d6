//! The Gold refresh kept open between runs, as `up` keeps it, over a real lake.

use boxoffice_lake::{Lake, TableDef, read_rows};
use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;

use super::{Gold, INPUTS, MODELS, app_id, overwrite, refresh};
use crate::expectations::Expectations;
use crate::silver::bookings_fact::{BookingsFact, Settings};
use crate::test_bronze::{generated, land};

/// A Gold model's table.
async fn gold_table(lake: &Lake, def: &TableDef) -> DeltaTable {
    lake.open_table(def).await.expect("open").expect("a table")
}

/// Every Gold model's rows as sorted text, `refreshed_at` left out.
async fn gold_rows(lake: &Lake) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for model in &MODELS {
        let batches = read_rows(&gold_table(lake, model.table).await)
            .await
            .expect("read");
        tables.push(super::rows_as_text(&batches, &["refreshed_at"]));
    }
    tables
}

/// Another writer replaces every Gold model's rows with none, recording that it consumed each
/// Silver table up to its first version (the creation, without rows).
async fn empty_as_if_nothing_was_consumed(lake: &Lake) {
    for model in &MODELS {
        let table = gold_table(lake, model.table).await;
        let mut txns = Vec::new();
        for (_, input) in INPUTS {
            if lake.open_table(input).await.expect("open").is_some() {
                txns.push(Transaction::new(app_id(model, input), 0));
            }
        }
        let empty = vec![RecordBatch::new_empty(model.table.arrow_schema())];
        overwrite(table, model.table, empty, txns)
            .await
            .expect("overwrite");
    }
}

/// A refresh kept open follows the Silver versions each Gold table records through the commits
/// made since it last asked; it must take another writer's records from those commits, or it
/// would take the wrong Silver rows (here: none, leaving Gold empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gold_kept_open_notices_another_writer_and_stays_equal_to_a_full_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(dir.path()).expect("lake");
    land(&lake, &generated(11, 6_000, 2), 500).await;
    let settings = Settings {
        partitions_per_hub: 2,
        max_events: 1_000,
        ..Settings::default()
    };
    let (mut job, _) = BookingsFact::open(&lake, settings, Expectations::none())
        .await
        .expect("open");
    let joined = job.run(false).await.expect("the join, up to its horizon");
    assert!(!joined.is_empty(), "the first run joined nothing");

    let mut kept = Gold::new(&lake);
    kept.refresh(false).await.expect("first refresh");
    let first = gold_rows(&lake).await;
    assert!(first.iter().all(|rows| !rows.is_empty()), "{first:?}");

    empty_as_if_nothing_was_consumed(&lake).await;
    assert!(gold_rows(&lake).await.iter().all(Vec::is_empty));
    kept.refresh(false)
        .await
        .expect("refresh after the other writer");
    assert_eq!(
        gold_rows(&lake).await,
        first,
        "Silver did not change: the same Gold"
    );

    // Nobody else wrote since: only its own commits are followed.
    let drained = job.run(true).await.expect("the drain");
    assert!(drained.iter().map(|r| r.fact_rows).sum::<u64>() > 0);
    kept.refresh(false).await.expect("refresh after the drain");
    let kept_rows = gold_rows(&lake).await;
    assert_ne!(kept_rows, first, "the drain added nothing to Gold");
    refresh(&lake, true).await.expect("full rebuild");
    assert_eq!(kept_rows, gold_rows(&lake).await);
}
