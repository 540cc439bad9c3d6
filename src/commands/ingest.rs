//! `boxoffice ingest`: NDJSON from a file or stdin, landed through the same queue and archiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use boxoffice_events::{Hub, sniff};
use boxoffice_ingest::Source;
use boxoffice_ingest::landing::{Landing, LandingConfig};
use boxoffice_ingest::queue::{Queue, QueueError};
use boxoffice_lake::Lake;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::ingest_screen::Screening;
use super::{BronzeRows, Exit, finish_landing, print_bronze_summary, shutdown_signal};
use crate::cli::{GlobalArgs, IngestArgs};
use crate::config;
use crate::leases::{LANDING, Leases, Taking};
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, args: IngestArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    let reader: Box<dyn AsyncBufRead + Unpin + Send> = if args.input == "-" {
        Box::new(BufReader::with_capacity(1 << 20, tokio::io::stdin()))
    } else {
        let f = tokio::fs::File::open(&args.input)
            .await
            .with_context(|| format!("opening {}", args.input))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };

    lake.prepare().await?;
    let leases = Leases::take(
        &lake,
        &[LANDING],
        &format!("boxoffice ingest {}", args.input),
        Taking::from_file(&file, args.wait)?,
    )
    .await?;
    let result = land(&lake, &args, reader, landing_config).await;
    leases.release().await?;
    result
}

/// Lands the input once the landing lease is held.
async fn land(
    lake: &Lake,
    args: &IngestArgs,
    mut reader: Box<dyn AsyncBufRead + Unpin + Send>,
    landing_config: LandingConfig,
) -> anyhow::Result<()> {
    let lake = lake.clone();
    let landing = Landing::start(&lake, landing_config)
        .await
        .context("starting the landing pipeline")?;
    let before = BronzeRows::count(&lake).await;
    let queue = Arc::clone(landing.queue());
    let lines_read = Arc::new(AtomicU64::new(0));
    let progress = {
        let stats = Arc::clone(landing.stats());
        let lines_read = Arc::clone(&lines_read);
        Progress::start(move |elapsed| {
            let t = stats.totals();
            let n = lines_read.load(Ordering::Relaxed);
            format!(
                "ingest {} | {} lines read | {} lines/s | landed {} | quarantined {}",
                config::short_duration(elapsed),
                thousands(n),
                thousands(rate(n, elapsed)),
                thousands(t.bookings + t.payments),
                thousands(t.quarantined),
            )
        })
    };

    let mut screening = Screening::start(&lake, source_name(&args.input)).await?;
    let lines = land_lines(
        &mut reader,
        &queue,
        args.hub,
        &lines_read,
        Some(&mut screening),
        shutdown_signal(),
    )
    .await;
    screening.flush().await?;
    let lines = lines?;
    progress.finish().await;
    let accepted = queue.accepted();
    let totals = finish_landing(landing).await?;

    println!(
        "ingested {} events from {} ({} lines, {} blank skipped, {} quarantined)",
        thousands(accepted),
        source_name(&args.input),
        thousands(lines.read),
        thousands(lines.blank),
        thousands(screening.quarantined)
    );
    let mut totals = totals;
    totals.quarantined += screening.quarantined;
    print_bronze_summary(&before, &totals);
    for line in screening.report() {
        println!("{line}");
    }
    if let Some(why) = lines.stopped {
        let line_no = lines.read;
        let resume = if args.input == "-" {
            "the rest of stdin was not read".to_string()
        } else {
            format!(
                "resume with: tail -n +{} {} | boxoffice ingest",
                line_no + 1,
                args.input
            )
        };
        anyhow::bail!("{why} after line {line_no}: lines 1-{line_no} are landed; {resume}");
    }
    if screening.quarantined > 0 {
        return Err(Exit::with(
            3,
            "some lines were quarantined (exit code 3); the valid ones are landed",
        ));
    }
    Ok(())
}

/// How quarantine rows and messages name the input.
fn source_name(input: &str) -> &str {
    if input == "-" { "stdin" } else { input }
}

/// How reading the input ended.
pub struct Lines {
    /// Lines read, blank ones included.
    pub read: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// Why reading stopped before the end, if it did.
    pub stopped: Option<&'static str>,
}

/// Sends every non-blank line of `reader` to the queue, routed by its fields (or `hub`), until
/// the input ends, `interrupt` resolves, or the queue closes. With `screening`, lines that are not
/// valid events are quarantined there instead of queued.
pub async fn land_lines(
    reader: &mut (dyn AsyncBufRead + Unpin + Send),
    queue: &Queue,
    hub: Option<Hub>,
    lines_read: &AtomicU64,
    mut screening: Option<&mut Screening>,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Lines> {
    let mut interrupt = std::pin::pin!(interrupt);
    let mut line = Vec::with_capacity(4096);
    let mut lines = Lines {
        read: 0,
        blank: 0,
        stopped: None,
    };
    loop {
        line.clear();
        let read = tokio::select! {
            biased;
            _ = &mut interrupt => {
                lines.stopped = Some("interrupted");
                break;
            }
            r = reader.read_until(b'\n', &mut line) => r,
        };
        if read.with_context(|| format!("reading line {}", lines.read + 1))? == 0 {
            break;
        }
        lines.read += 1;
        lines_read.store(lines.read, Ordering::Relaxed);
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            lines.blank += 1;
            continue;
        }
        // One exact-size copy per body, so the line buffer keeps its capacity. Invalid UTF-8 is
        // kept (as replacement characters) so it reaches quarantine, not /dev/null.
        let body = String::from_utf8_lossy(&line).into_owned();
        let sniffed = sniff(&body);
        let to = hub.or(sniffed.hub).unwrap_or(Hub::Bookings);
        if let Some(screening) = screening.as_deref_mut()
            && !screening.check(lines.read, &body, to).await?
        {
            continue;
        }
        match queue
            .send(to, sniffed.order_id.as_deref(), Source::Batch, body)
            .await
        {
            Ok(_) => {}
            Err(QueueError::Closed) => {
                lines.stopped = Some("the queue closed");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(lines)
}
