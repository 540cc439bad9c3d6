//! `boxoffice bench cdc` and `bench batch`: the cdc and batch_load jobs' rows/s and peak
//! memory, on a scratch lake. `bench cdc --turns` measures instead what `up`'s cdc turns cost
//! as the flow's tables grow over a long run.

use std::time::Instant;

use anyhow::Context;
use boxoffice_jobs::ops::simulator::Simulator;
use boxoffice_lake::Lake;

use super::bench::{peak_rss_mb, reset_peak_rss};
use crate::cli::{BenchBatchArgs, BenchCdcArgs};
use crate::commands::job::cdc_line;
use crate::progress::thousands;

/// Changes per simulated commit.
const PER_COMMIT: usize = 100_000;

pub async fn run(args: BenchCdcArgs) -> anyhow::Result<()> {
    if let Some(turns) = args.turns {
        return super::bench_cdc_turns::run(turns, &args).await;
    }
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    eprintln!(
        "bench cdc 1/2: simulating {} changes to ops.raw_movie_bookings ...",
        thousands(args.changes as u64)
    );
    let mut simulator = Simulator::open(&lake, 42).await?;
    let mut left = args.changes;
    while left > 0 {
        let n = left.min(PER_COMMIT);
        simulator.tick(n).await?;
        left -= n;
    }
    eprintln!("bench cdc 2/2: the cdc job over all of them ...");
    reset_peak_rss();
    let started = Instant::now();
    let report = boxoffice_jobs::cdc::run(&lake).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("{}", cdc_line(&report));
    println!(
        "cdc  {:>10} change rows/s   ({} Bronze change rows from {} source changes in {seconds:.1}s; peak memory {})",
        thousands((report.changes as f64 / seconds) as u64),
        thousands(report.changes),
        thousands(args.changes as u64),
        peak_rss_mb().map_or("-".to_string(), |m| format!("{m:.0} MB")),
    );
    Ok(())
}

/// Writes a sales CSV of `rows` seats (sales of 1 to 4 seats over the shipped catalog's shows).
fn sales_csv(rows: usize) -> String {
    let mut out = String::with_capacity(rows * 90);
    out.push_str("sale_id,sold_at,event_id,seat_number,seat_price,payment_method,customer_id\n");
    let methods = ["Cash", "UPI", "Credit Card", "Debit Card"];
    let (mut sale, mut written) = (0usize, 0usize);
    while written < rows {
        sale += 1;
        let seats = 1 + sale % 4;
        let minute = sale % (60 * 24 * 30);
        for seat in 0..seats.min(rows - written) {
            out.push_str(&format!(
                "box{sale},2026-10-{:02}T{:02}:{:02}:00Z,event{},{}{},{}.00,{},cust{}\n",
                1 + minute / (60 * 24),
                (minute / 60) % 24,
                minute % 60,
                1 + sale % 100,
                ['A', 'B', 'C', 'D'][seat],
                1 + sale % 30,
                200 + (sale % 9) * 50,
                methods[sale % 4],
                sale % 50_000
            ));
            written += 1;
        }
    }
    out
}

pub async fn batch(args: BenchBatchArgs) -> anyhow::Result<()> {
    use boxoffice_jobs::batch::event_catalog::SHIPPED;
    use boxoffice_lake::Layer;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let lake = Lake::local(&scratch.path().join("lake"))?;
    lake.files(Layer::Landing, "event_catalog")?
        .put("event_catalog.csv", SHIPPED.as_bytes().to_vec().into())
        .await?;
    boxoffice_jobs::batch::run(&lake).await?;
    eprintln!(
        "bench batch 1/2: writing a {}-row sales CSV to the landing area ...",
        thousands(args.rows as u64)
    );
    let csv = sales_csv(args.rows);
    let mb = csv.len() as f64 / 1e6;
    lake.files(Layer::Landing, "box_office_sales")?
        .put("bench.csv", csv.into_bytes().into())
        .await?;
    eprintln!("bench batch 2/2: batch_load ...");
    reset_peak_rss();
    let started = Instant::now();
    let reports = boxoffice_jobs::batch::run(&lake).await?;
    let seconds = started.elapsed().as_secs_f64();
    let loaded: u64 = reports.iter().map(|r| r.loaded).sum();
    println!(
        "batch_load {:>10} rows/s   ({} rows, {mb:.0} MB of CSV, merged into silver.bookings_fact in {seconds:.1}s; peak memory {})",
        thousands((loaded as f64 / seconds) as u64),
        thousands(loaded),
        peak_rss_mb().map_or("-".to_string(), |m| format!("{m:.0} MB")),
    );
    Ok(())
}
