//! Microsoft Entra tokens for Event Hubs from the managed identity of a Functions or App Service
//! app: `GET $IDENTITY_ENDPOINT?resource=https://eventhubs.azure.net/&api-version=2019-08-01`
//! (`&client_id=` for a user-assigned identity) with header `X-IDENTITY-HEADER: $IDENTITY_HEADER`,
//! answered `{"access_token": ..., "expires_on": "<Unix seconds>"}`. One token serves every hub
//! and partition of the process; it is renewed before it expires, and never printed.

use std::time::{SystemTime, UNIX_EPOCH};

use super::EventHubError;

/// The resource (audience) of an Event Hubs data-plane token, the same in every cloud. The Azure
/// SDKs ask for scope `https://eventhubs.azure.net//.default`, which is this resource.
pub const EVENT_HUBS_RESOURCE: &str = "https://eventhubs.azure.net/";

/// The identity endpoint's protocol version: `X-IDENTITY-HEADER`, `client_id`, and `expires_on`
/// in Unix seconds.
pub const API_VERSION: &str = "2019-08-01";

/// A token is renewed this long before it expires, or halfway through its life if it lives less
/// than twice this.
const RENEW_BEFORE_SECS: u64 = 300;

/// Which of the app's identities to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChoice {
    /// The app's system-assigned identity (no id in the request).
    SystemAssigned,
    /// A user-assigned identity by its client id (`<setting>__clientId`).
    ClientId(String),
    /// A user-assigned identity by its resource id (`<setting>__managedIdentityResourceId`).
    ResourceId(String),
}

/// Tokens from the app's managed identity, cached. `Debug` shows neither the identity header
/// (a per-app secret) nor a token.
pub struct ManagedIdentity {
    endpoint: url::Url,
    header: String,
    choice: IdentityChoice,
    client: reqwest::Client,
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: String,
    renew_at: u64,
}

impl ManagedIdentity {
    /// The token source of `choice`, from `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` as `var`
    /// reads them; errors say what is missing and what to do, and never quote the header.
    pub fn from_vars(
        choice: IdentityChoice,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ManagedIdentity, EventHubError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let outside_azure = |name: &str| {
            EventHubError::Connection(format!(
                "{name} is not set: managed identity tokens are only available inside Azure \
                 (Functions, App Service, Container Apps); use a connection string with a key \
                 locally (Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>)"
            ))
        };
        let endpoint =
            set("IDENTITY_ENDPOINT").ok_or_else(|| outside_azure("IDENTITY_ENDPOINT"))?;
        let header = set("IDENTITY_HEADER").ok_or_else(|| outside_azure("IDENTITY_HEADER"))?;
        let url = url::Url::parse(endpoint.trim()).map_err(|e| {
            EventHubError::Connection(format!("IDENTITY_ENDPOINT is not a URL ({e})"))
        })?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| EventHubError::Connection(format!("HTTP client: {e}")))?;
        Ok(ManagedIdentity {
            endpoint: url,
            header: header.trim().to_string(),
            choice,
            client,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// Which identity tokens are asked for.
    pub fn choice(&self) -> &IdentityChoice {
        &self.choice
    }

    /// The `Authorization` header value: `Bearer <token>`, fetched when there is none or the
    /// current one is due for renewal. Callers wait for one fetch at a time.
    pub async fn authorization(&self) -> Result<String, EventHubError> {
        let mut current = self.current.lock().await;
        let now = unix_now();
        if let Some(token) = current.as_ref().filter(|t| t.renew_at > now) {
            return Ok(format!("Bearer {}", token.value));
        }
        let (value, expires_on) = self.fetch().await?;
        let life = expires_on.saturating_sub(now);
        let renew_at = expires_on - RENEW_BEFORE_SECS.min(life / 2);
        let header = format!("Bearer {value}");
        *current = Some(Token { value, renew_at });
        Ok(header)
    }

    async fn fetch(&self) -> Result<(String, u64), EventHubError> {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("resource", EVENT_HUBS_RESOURCE);
            query.append_pair("api-version", API_VERSION);
            match &self.choice {
                IdentityChoice::SystemAssigned => {}
                IdentityChoice::ClientId(id) => {
                    query.append_pair("client_id", id);
                }
                IdentityChoice::ResourceId(id) => {
                    query.append_pair("mi_res_id", id);
                }
            }
        }
        let response = self
            .client
            .get(url)
            .header("X-IDENTITY-HEADER", &self.header)
            .send()
            .await
            .map_err(|e| failed(format!("the identity endpoint {}", reason(&e)), true))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            // An error body names the problem (an unknown client id, a bad header), never a token.
            let detail: String = body
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Err(failed(
                format!(
                    "the identity endpoint answered HTTP {status}{}: {detail}",
                    identity_hint(status)
                ),
                status == 429 || status >= 500,
            ));
        }
        parse_token(&body).ok_or_else(|| {
            failed(
                "the identity endpoint's answer has no access_token and expires_on".into(),
                false,
            )
        })
    }
}

/// `access_token` and `expires_on` (Unix seconds, a string in 2019-08-01, tolerated as a number)
/// of an identity endpoint's answer.
pub fn parse_token(body: &str) -> Option<(String, u64)> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let token = json.get("access_token")?.as_str()?.to_string();
    let expires_on = match json.get("expires_on")? {
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        serde_json::Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    (!token.is_empty()).then_some((token, expires_on))
}

impl std::fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentity")
            .field("endpoint", &self.endpoint.as_str())
            .field("header", &"<redacted>")
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}

fn identity_hint(status: u16) -> &'static str {
    match status {
        400 => " (is the client id one of the app's user-assigned identities?)",
        401 | 403 => " (IDENTITY_HEADER was refused)",
        404 => " (no such identity on this app)",
        _ => "",
    }
}

fn failed(reason: String, transient: bool) -> EventHubError {
    EventHubError::Identity { reason, transient }
}

fn reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
