//! One hub's sends: a POST per batch with a SAS token or a managed identity's Entra token, retried on 429, 5xx and network errors
//! with exponential backoff (or the hub's `Retry-After`), so a throttled namespace slows the
//! producer down instead of losing events.

use std::sync::Arc;
use std::time::Duration;

use super::batch::Batch;
use super::identity::ManagedIdentity;
use super::sas::Signer;
use super::{Connection, EventHubError};

/// How hard to try before giving up on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles each time.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: doubling, capped, jittered down by up to half so
    /// producers throttled together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = doubled.min(self.max_backoff);
        let jitter = jitter_fraction();
        capped.mul_f64(1.0 - jitter / 2.0)
    }
}

/// What signs a request: the key's SAS signer (one per sender), or the process's managed
/// identity (shared).
#[derive(Debug)]
enum Auth {
    Key(Box<Signer>),
    Identity(Arc<ManagedIdentity>),
}

impl Auth {
    fn for_hub(connection: &Connection, hub: &str) -> Auth {
        match connection {
            Connection::Key(c) => Auth::Key(Box::new(Signer::new(
                c.clone(),
                hub,
                Duration::from_secs(3600),
            ))),
            Connection::Identity { identity, .. } => Auth::Identity(Arc::clone(identity)),
        }
    }

    /// The `Authorization` header value.
    async fn header(&mut self) -> Result<String, EventHubError> {
        match self {
            Auth::Key(signer) => Ok(signer.token().to_string()),
            Auth::Identity(identity) => identity.authorization().await,
        }
    }
}

/// Sends batches to one hub.
#[derive(Debug)]
pub struct Sender {
    client: reqwest::Client,
    connection: Connection,
    base: String,
    url: String,
    hub: String,
    auth: Auth,
    retry: RetryPolicy,
    retries: u64,
}

/// A sent batch: how many attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub attempts: u32,
}

impl Sender {
    /// A sender for `hub` at the namespace's `https://<host>`, or at `endpoint` when given (a
    /// proxy, or a test server); the token always names the namespace.
    pub fn new(
        connection: &Connection,
        hub: &str,
        endpoint: Option<&str>,
        retry: RetryPolicy,
    ) -> Result<Sender, EventHubError> {
        if let Connection::Key(key) = connection {
            key.check_hub(hub)?;
            if key.emulator && endpoint.is_none() {
                return Err(EventHubError::Connection(
                    "UseDevelopmentEmulator=true: the Event Hubs emulator speaks AMQP and Kafka, \
                     not the REST API `produce` uses; use a real namespace (or --endpoint)"
                        .into(),
                ));
            }
        }
        let base = endpoint.map_or_else(
            || format!("https://{}", connection.host()),
            |e| e.trim_end_matches('/').to_string(),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| EventHubError::Connection(format!("HTTP client: {e}")))?;
        Ok(Sender {
            client,
            connection: connection.clone(),
            url: format!("{base}/{hub}/messages?timeout=60&api-version=2014-01"),
            base,
            hub: hub.to_string(),
            auth: Auth::for_hub(connection, hub),
            retry,
            retries: 0,
        })
    }

    /// A sender for one partition of the same hub, by its id (`POST <hub>/partitions/<id>/messages`):
    /// how a producer picks the partition itself, which a partition key cannot do across hubs.
    pub fn to_partition(&self, partition: u32) -> Sender {
        Sender {
            client: self.client.clone(),
            connection: self.connection.clone(),
            base: self.base.clone(),
            url: format!(
                "{}/{}/partitions/{partition}/messages?timeout=60&api-version=2014-01",
                self.base, self.hub
            ),
            hub: self.hub.clone(),
            auth: Auth::for_hub(&self.connection, &self.hub),
            retry: self.retry,
            retries: 0,
        }
    }

    /// The hub's partition count, from its description (`GET <hub>`, `<PartitionCount>`). A
    /// policy with only the Send right, or an identity with only Azure Event Hubs Data Sender,
    /// may be refused this (401): then the count must be given.
    pub async fn partition_count(&mut self) -> Result<u32, EventHubError> {
        let url = format!("{}/{}?timeout=60&api-version=2014-01", self.base, self.hub);
        let by_identity = matches!(self.auth, Auth::Identity(_));
        let refused = |status: u16, detail: String| EventHubError::PartitionCount {
            hub: self.hub.clone(),
            reason: format!("HTTP {status}{}: {detail}", hint(status, by_identity)),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = match self.auth.header().await {
                Ok(header) => header,
                Err(EventHubError::Identity {
                    transient: true, ..
                }) if attempt < self.retry.max_attempts => {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let response = self
                .client
                .get(&url)
                .header("Authorization", authorization)
                .send()
                .await;
            let (status, text) = match response {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) if attempt < self.retry.max_attempts => {
                    tracing::warn!(hub = %self.hub, reason = %without_url(&e), "retrying the hub's description");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(refused(0, without_url(&e))),
            };
            if (200..300).contains(&status) {
                return partition_count_of(&text).ok_or_else(|| EventHubError::PartitionCount {
                    hub: self.hub.clone(),
                    reason: "the hub's description has no <PartitionCount>".into(),
                });
            }
            if (status == 429 || status >= 500) && attempt < self.retry.max_attempts {
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                continue;
            }
            return Err(refused(status, excerpt(&text)));
        }
    }

    /// Retries made so far, over every batch.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Sends one batch, retrying what can be retried.
    pub async fn send(&mut self, batch: &Batch) -> Result<Sent, EventHubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post(batch).await {
                Ok(()) => return Ok(Sent { attempts: attempt }),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry { reason, wait }) => (reason, wait),
            };
            if attempt >= self.retry.max_attempts {
                return Err(EventHubError::GaveUp {
                    hub: self.hub.clone(),
                    events: batch.events,
                    attempts: attempt,
                    last: failure.0,
                });
            }
            let wait = failure.1.map_or_else(
                || self.retry.backoff(attempt),
                |w| w.min(self.retry.max_backoff),
            );
            tracing::warn!(hub = %self.hub, attempt, wait_ms = wait.as_millis() as u64, reason = %failure.0, "retrying a batch");
            self.retries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&mut self, batch: &Batch) -> Result<(), Attempt> {
        let authorization = match self.auth.header().await {
            Ok(header) => header,
            Err(
                e @ EventHubError::Identity {
                    transient: true, ..
                },
            ) => {
                return Err(Attempt::Retry {
                    reason: e.to_string(),
                    wait: None,
                });
            }
            Err(e) => return Err(Attempt::Fatal(e)),
        };
        let response = self
            .client
            .post(&self.url)
            .header("Authorization", authorization)
            .header("Content-Type", "application/vnd.microsoft.servicebus.json")
            .body(batch.body.clone())
            .send()
            .await
            .map_err(|e| Attempt::Retry {
                reason: format!("request failed: {}", without_url(&e)),
                wait: None,
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let detail = excerpt(&response.text().await.unwrap_or_default());
        if status == 408 || status == 429 || status >= 500 {
            return Err(Attempt::Retry {
                reason: format!("HTTP {status}: {detail}"),
                wait,
            });
        }
        Err(Attempt::Fatal(EventHubError::Refused {
            hub: self.hub.clone(),
            events: batch.events,
            status,
            hint: hint(status, matches!(self.auth, Auth::Identity(_))),
            detail,
        }))
    }
}

/// `<PartitionCount>N</PartitionCount>` in an Event Hub's Atom description.
fn partition_count_of(description: &str) -> Option<u32> {
    let start = description.find("<PartitionCount>")? + "<PartitionCount>".len();
    let end = start + description[start..].find('<')?;
    description[start..end]
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

enum Attempt {
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    Fatal(EventHubError),
}

fn hint(status: u16, by_identity: bool) -> &'static str {
    match (status, by_identity) {
        (401, false) => " (the policy name or key was refused)",
        (403, false) => " (the policy has no Send right on this hub)",
        (401, true) => " (the managed identity's token was refused)",
        (403, true) => {
            " (the managed identity needs the Azure Event Hubs Data Sender role on the namespace or hub)"
        }
        (404, _) => " (no such hub in this namespace)",
        (413, _) => " (the batch is too large for this namespace's tier)",
        _ => "",
    }
}

/// The first line of an error body, shortened.
fn excerpt(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return "(no body)".into();
    }
    let short: String = line.chars().take(300).collect();
    short
}

/// reqwest's message without its URL (which carries no secret, but is long and repeated).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// A fraction in [0, 1) that differs between processes and calls, for jitter; not for secrets.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
