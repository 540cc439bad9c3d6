//! A stand-in for the managed identity endpoint of App Service and Azure Functions
//! (`$IDENTITY_ENDPOINT`, protocol 2019-08-01): `GET /msi/token?resource=...&api-version=2019-08-01
//! &client_id=...` with header `X-IDENTITY-HEADER: $IDENTITY_HEADER`, answered
//! `{"access_token", "expires_on" (Unix seconds, as a string), "resource", "token_type",
//! "client_id"}`. It refuses what the real one would (a wrong header, API version or client id)
//! and issues short-lived tokens, which the stand-in hub ([`super::fake_hub`]) accepts until they
//! expire. Container Apps serve the same protocol at their `IDENTITY_ENDPOINT`. Tokens are
//! JWT-shaped like Entra's (audience = the resource, an Entra issuer, `nbf`/`iat`/`exp`), unsigned,
//! which is what Azurite's `--oauth basic` checks. Azure's own endpoint only exists inside Azure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::json;

/// The Event Hubs resource a token must be asked for.
pub const EVENT_HUBS_RESOURCE: &str = "https://eventhubs.azure.net/";

/// The resource object_store asks a storage token for.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";

/// The tenant in the tokens' issuer.
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A token the stand-in issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub resource: String,
    /// Unix seconds.
    pub expires_on: u64,
}

/// A request the stand-in answered, and its status.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub query: HashMap<String, String>,
    pub answered: u16,
}

/// What the identity endpoint issued, shared with the stand-in hub that checks Bearer tokens.
#[derive(Debug, Default)]
pub struct IdentityState {
    /// The app's `IDENTITY_HEADER`.
    pub header: String,
    /// The client id of the app's user-assigned identity.
    pub client_id: String,
    /// How long each token lives.
    pub lifetime_secs: u64,
    pub issued: Mutex<Vec<Issued>>,
    pub requests: Mutex<Vec<TokenRequest>>,
}

impl IdentityState {
    /// Whether `token` was issued here, for `resource`, and has not expired.
    pub fn accepts(&self, token: &str, resource: &str) -> bool {
        self.issued
            .lock()
            .expect("lock")
            .iter()
            .any(|i| i.token == token && i.resource == resource && i.expires_on > unix_now())
    }
}

/// The stand-in, on a free port; stops when dropped.
pub struct FakeIdentity {
    pub port: u16,
    pub state: Arc<IdentityState>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeIdentity {
    /// An endpoint for the user-assigned identity `client_id`, checking `header`, issuing tokens
    /// that live `lifetime_secs`.
    pub fn start(header: &str, client_id: &str, lifetime_secs: u64) -> FakeIdentity {
        let state = Arc::new(IdentityState {
            header: header.to_string(),
            client_id: client_id.to_string(),
            lifetime_secs,
            ..IdentityState::default()
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = Router::new()
            .route("/msi/token", get(token))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeIdentity {
            port,
            state,
            _runtime: runtime,
        }
    }

    /// `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.port)
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.state.issued.lock().expect("lock").clone()
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("lock").clone()
    }
}

async fn token(
    State(state): State<Arc<IdentityState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let query = parse_query(query.as_deref().unwrap_or_default());
    let header = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let refusal = if header != state.header {
        Some((403, "X-IDENTITY-HEADER is missing or wrong"))
    } else if param("api-version") != "2019-08-01" {
        Some((400, "UnsupportedApiVersion"))
    } else if param("resource").is_empty() {
        Some((400, "resource is required"))
    } else if param("client_id") != state.client_id {
        Some((400, "no user-assigned identity with this client_id"))
    } else {
        None
    };
    let answered = refusal.map_or(200, |(status, _)| status);
    state.requests.lock().expect("lock").push(TokenRequest {
        query: query.clone(),
        answered,
    });
    if let Some((status, message)) = refusal {
        return (
            StatusCode::from_u16(status).expect("status"),
            json!({"error": {"code": "BadRequest", "message": message}}).to_string(),
        );
    }
    let (token, expires_on) = state.issue(param("resource"));
    let body = json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": param("resource"),
        "token_type": "Bearer",
        "client_id": state.client_id,
    });
    (StatusCode::OK, body.to_string())
}

impl IdentityState {
    /// Issues a token for `resource` (what the endpoint answers; the deployment's own setup
    /// in a test uses it directly): the token and its expiry, Unix seconds.
    pub fn issue(&self, resource: &str) -> (String, u64) {
        let mut issued = self.issued.lock().expect("lock");
        let now = unix_now();
        let expires_on = now + self.lifetime_secs;
        let token = jwt(&json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": now,
            "nbf": now - 5,
            "exp": expires_on,
            "appid": self.client_id,
            "tid": TENANT,
            // Unique per token, so that a token is recognised as the one issued.
            "uti": format!(
                "{}-{:x}",
                issued.len(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        }));
        issued.push(Issued {
            token: token.clone(),
            resource: resource.to_string(),
            expires_on,
        });
        (token, expires_on)
    }
}

/// An unsigned JWT: header and claims, base64url without padding, and a placeholder signature.
fn jwt(claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    let part = |value: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    format!(
        "{}.{}.c3RhbmQtaW4",
        part(&json!({"typ": "JWT", "alg": "none"})),
        part(claims)
    )
}

/// `a=b&c=d`, form-decoded (`+` and `%XX`).
fn parse_query(query: &str) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
