//! `boxoffice ingest`: NDJSON from a file or stdin, landed through the same queue and archiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use boxoffice_events::{Hub, sniff};
use boxoffice_ingest::Source;
use boxoffice_ingest::landing::Landing;
use boxoffice_ingest::queue::QueueError;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{BronzeRows, finish_landing, print_bronze_summary, shutdown_signal};
use crate::cli::{GlobalArgs, IngestArgs};
use crate::config;
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, args: IngestArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let landing_config = config::landing(&lake, &args.landing, &file)?;
    let from_stdin = args.input == "-";
    let mut reader: Box<dyn AsyncBufRead + Unpin + Send> = if from_stdin {
        Box::new(BufReader::with_capacity(1 << 20, tokio::io::stdin()))
    } else {
        let f = tokio::fs::File::open(&args.input)
            .await
            .with_context(|| format!("opening {}", args.input))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };

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

    let mut interrupt = std::pin::pin!(shutdown_signal());
    let mut line = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut blank = 0u64;
    let mut interrupted = false;
    let mut queue_closed = false;
    loop {
        line.clear();
        let read = tokio::select! {
            biased;
            _ = &mut interrupt => { interrupted = true; break; }
            r = reader.read_until(b'\n', &mut line) => r,
        };
        if read.with_context(|| format!("reading line {}", line_no + 1))? == 0 {
            break;
        }
        line_no += 1;
        lines_read.store(line_no, Ordering::Relaxed);
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            blank += 1;
            continue;
        }
        // Invalid UTF-8 is kept (as replacement characters) so it reaches quarantine, not /dev/null.
        let body = String::from_utf8(std::mem::take(&mut line))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let sniffed = sniff(&body);
        let hub = args.hub.or(sniffed.hub).unwrap_or(Hub::Bookings);
        match queue
            .send(hub, sniffed.order_id.as_deref(), Source::Batch, body)
            .await
        {
            Ok(_) => {}
            Err(QueueError::Closed) => {
                queue_closed = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    progress.finish().await;
    let accepted = queue.accepted();
    let totals = finish_landing(landing).await?;

    let source = if from_stdin {
        "stdin"
    } else {
        args.input.as_str()
    };
    println!(
        "ingested {} events from {source} ({} lines, {} blank skipped)",
        thousands(accepted),
        thousands(line_no),
        thousands(blank)
    );
    print_bronze_summary(&before, &totals);
    if interrupted || queue_closed {
        let resume = if from_stdin {
            "the rest of stdin was not read".to_string()
        } else {
            format!(
                "resume with: tail -n +{} {} | boxoffice ingest",
                line_no + 1,
                args.input
            )
        };
        anyhow::bail!("stopped after line {line_no}: lines 1-{line_no} are landed; {resume}");
    }
    Ok(())
}
