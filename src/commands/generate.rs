//! `boxoffice generate`: generated events as NDJSON on stdout or in a file.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use boxoffice_events::Generator;
use tokio::sync::watch;

use super::shutdown_signal;
use crate::cli::{GenerateArgs, GlobalArgs};
use crate::config::{self, StartDefault};
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, args: GenerateArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let (generator_config, pacing) =
        config::generator(&args.generator, &file, StartDefault::FixedWhenSeeded)?;
    let generator = Generator::new(generator_config.clone()).context("generator settings")?;
    let pacer = Pacer::new(pacing, generator_config.start);

    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
    };

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let written = Arc::new(AtomicU64::new(0));
    // Progress only when stdout is free: a pipe into `ingest` shows that command's progress.
    let progress = args.output.as_ref().map(|_| {
        let written = Arc::clone(&written);
        Progress::start(move |elapsed| {
            let n = written.load(Ordering::Relaxed);
            format!(
                "generate {} | {} events | {} events/s",
                config::short_duration(elapsed),
                thousands(n),
                thousands(rate(n, elapsed))
            )
        })
    });

    let mut n = 0u64;
    for event in generator {
        if args.count.is_some_and(|c| n >= c) || *stop.borrow() {
            break;
        }
        if pacer.delay(event.arrival) >= Duration::from_millis(1) {
            // About to wait: hand what is written to the reader first.
            if flush_or_stop(&mut out)? {
                break;
            }
            if !pacer.wait(event.arrival, &mut stop).await {
                break;
            }
        }
        match writeln!(out, "{}", event.body) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing events"),
        }
        n += 1;
        written.store(n, Ordering::Relaxed);
    }
    flush_or_stop(&mut out)?;
    if let Some(p) = progress {
        p.finish().await;
    }
    if let Some(path) = &args.output {
        eprintln!("wrote {} events to {}", thousands(n), path.display());
    }
    Ok(())
}

/// Flushes; true when the reader has gone away (`| head`), which is a normal end.
fn flush_or_stop(out: &mut dyn Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing events"),
    }
}
