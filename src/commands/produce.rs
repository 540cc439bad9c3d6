//! `boxoffice produce --to eventhub`: generated events to a real Event Hub over REST.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use boxoffice_events::{Generator, Hub};
use boxoffice_ingest::eventhub::{Connection, Producer, ProducerSettings, RetryPolicy, Routing};
use tokio::sync::watch;

use super::shutdown_signal;
use crate::cli::{GlobalArgs, ProduceArgs};
use crate::config::{self, StartDefault};
use crate::pacing::Pacer;
use crate::progress::{Progress, rate, thousands};

pub async fn run(global: &GlobalArgs, args: ProduceArgs) -> anyhow::Result<()> {
    let connection = Connection::from_env(&args.connection_setting).with_context(|| {
        format!(
            "the Event Hubs connection (--connection-setting {})",
            args.connection_setting
        )
    })?;
    if args.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    let file = config::load(global)?;
    let (generator_config, pacing) = config::generator(&args.generator, &file, StartDefault::Now)?;
    let generator = Generator::new(generator_config.clone()).context("generator settings")?;
    let pacer = Pacer::new(pacing, generator_config.start);

    let settings = ProducerSettings {
        max_batch_bytes: args.max_batch_bytes,
        linger: args.linger,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            ..RetryPolicy::default()
        },
        endpoint: args.endpoint.clone(),
        routing: if args.by_key {
            Routing::ByKey
        } else {
            Routing::CoPartitioned {
                partitions: args.partitions,
            }
        },
    };
    let hubs = [
        (Hub::Bookings, args.bookings_hub.clone()),
        (Hub::Payments, args.payments_hub.clone()),
    ];
    let mut producer = Producer::start(&connection, &hubs, &settings).await?;
    eprintln!(
        "producing to {} (hubs {} and {}) as {}",
        args.endpoint.as_deref().unwrap_or(connection.host()),
        args.bookings_hub,
        args.payments_hub,
        connection.principal()
    );

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let counters = producer.counters();
    let progress = Progress::start(move |elapsed| {
        let sent = counters.events.load(Ordering::Relaxed);
        format!(
            "produce {} | {} events sent | {} events/s | {} batches | {} retries",
            config::short_duration(elapsed),
            thousands(sent),
            thousands(rate(sent, elapsed)),
            thousands(counters.batches.load(Ordering::Relaxed)),
            thousands(counters.retries.load(Ordering::Relaxed)),
        )
    });

    let started = Instant::now();
    let mut failure = None;
    for (queued, event) in (0u64..).zip(generator) {
        let over_time = args.duration.is_some_and(|d| started.elapsed() >= d);
        if args.count.is_some_and(|c| queued >= c) || over_time {
            break;
        }
        if !pacer.wait(event.arrival, &mut stop).await {
            break;
        }
        if let Err(e) = producer.send(event.hub, event.order_id, event.body).await {
            failure = Some(e);
            break;
        }
    }
    let finished = producer.finish().await;
    progress.finish().await;
    if let Some(e) = failure {
        return Err(e).context("sending to Event Hubs");
    }
    let totals = finished.context("sending to Event Hubs")?;
    eprintln!(
        "sent {} events in {} batches ({} MB) in {}; {} retries",
        thousands(totals.events),
        thousands(totals.batches),
        totals.bytes / 1_000_000,
        config::short_duration(started.elapsed()),
        thousands(totals.retries)
    );
    Ok(())
}
