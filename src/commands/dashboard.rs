//! `boxoffice dashboard`: the live dashboard over Gold, on 127.0.0.1.

use std::time::Duration;

use anyhow::Context;
use boxoffice_dashboard::Settings;
use boxoffice_lake::Lake;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::shutdown_signal;
use crate::cli::{DashboardArgs, DashboardOptions, GlobalArgs};
use crate::config;

/// The server looks for new table versions at least this often.
const RELOAD: Duration = Duration::from_secs(2);

pub async fn run(global: &GlobalArgs, args: DashboardArgs) -> anyhow::Result<()> {
    let file = config::load(global)?;
    let lake = config::lake(global, &file)?;
    let listener = bind(args.port).await?;
    eprintln!(
        "boxoffice dashboard: serving http://{}",
        listener.local_addr()?
    );
    eprintln!(
        "  over {}; the page refreshes every {}; Ctrl-C stops",
        lake.describe(),
        humantime::format_duration(args.refresh)
    );
    boxoffice_dashboard::serve(listener, lake, settings(args.refresh), shutdown_signal())
        .await
        .context("serving the dashboard")
}

/// Listens on 127.0.0.1:`port`, saying what to do when it is taken.
async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).await.with_context(|| {
        format!(
            "listening on 127.0.0.1:{port} (is another dashboard or `boxoffice up` running? choose another port, or 0 for any free one)"
        )
    })
}

fn settings(refresh: Duration) -> Settings {
    Settings {
        reload: refresh.min(RELOAD),
        page_refresh: refresh,
    }
}

/// The dashboard `up` serves beside the pipeline, until `stop`.
pub struct Running {
    pub url: String,
    task: JoinHandle<Result<(), boxoffice_dashboard::DashboardError>>,
}

impl Running {
    /// Binds first (a taken port stops `up` before anything starts), then serves.
    pub async fn start(
        lake: &Lake,
        options: &DashboardOptions,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Running> {
        let listener = bind(options.port)
            .await
            .context("the dashboard (pass --dashboard-port N or --no-dashboard)")?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        let task = tokio::spawn(boxoffice_dashboard::serve(
            listener,
            lake.clone(),
            settings(options.refresh),
            shutdown,
        ));
        Ok(Running { url, task })
    }

    /// Waits for the server to stop (after `stop` was sent).
    pub async fn finish(self) -> anyhow::Result<()> {
        self.task
            .await
            .context("the dashboard task failed")?
            .context("serving the dashboard")
    }
}
