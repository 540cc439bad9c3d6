//! The live dashboard over Gold: an in-memory copy of the tables the panels read, kept current
//! by a loader that re-reads only what moved, served as a JSON API and a page that draws it with
//! Chart.js (bundled at build time: nothing is loaded from the internet).
//!
//! `boxoffice dashboard` serves it alone; `boxoffice up` serves it beside the pipeline.

pub mod api;
mod assets;
pub mod filters;
pub mod panels;
pub mod snapshot;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_lake::{Lake, LakeError};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::{Live, router};
use snapshot::{Loader, Snapshot};

/// Why the dashboard could not load or serve.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("reading the lake: {0}")]
    Read(String),
    #[error("unexpected table layout: {0}")]
    Schema(String),
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// How the dashboard refreshes.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often the server looks for new table versions.
    pub reload: Duration,
    /// How often the page asks for fresh numbers.
    pub page_refresh: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            reload: Duration::from_secs(2),
            page_refresh: Duration::from_secs(5),
        }
    }
}

/// Loads the lake now and then every `reload` until `stop`; the receiver always holds the
/// newest snapshot.
pub fn follow(
    lake: Lake,
    reload: Duration,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<Arc<Snapshot>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let task = tokio::spawn(async move {
        let mut loader = Loader::new(lake);
        loop {
            let previous = Arc::clone(&tx.borrow());
            let next = loader.load(&previous).await;
            if let Some(e) = &next.last_error
                && previous.last_error.as_ref() != Some(e)
            {
                tracing::warn!("dashboard: {e} (showing the last rows read)");
            }
            tx.send_replace(Arc::new(next));
            tokio::select! {
                _ = tokio::time::sleep(reload) => {}
                _ = stop.changed() => return,
            }
        }
    });
    (rx, task)
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    lake: Lake,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    let (stop_tx, stop) = watch::channel(false);
    let (snapshot, loader) = follow(lake, settings.reload, stop);
    let live = Live {
        snapshot,
        page_refresh_seconds: settings.page_refresh.as_secs().max(1),
    };
    let served = axum::serve(listener, router(live))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = loader.await;
    Ok(served?)
}
