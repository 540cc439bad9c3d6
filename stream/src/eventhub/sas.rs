//! SharedAccessSignature tokens, as Event Hubs documents them: the signature is the base64
//! HMAC-SHA256, keyed by the key string's bytes, of `urlencode(uri) + "\n" + expiry`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ConnectionString;

/// The `Authorization` header value for `resource_uri`, valid until `expiry` (Unix seconds).
pub fn token(resource_uri: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let encoded_uri = urlencode(resource_uri);
    let to_sign = format!("{encoded_uri}\n{expiry}");
    let signature = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    };
    format!(
        "SharedAccessSignature sr={encoded_uri}&sig={}&se={expiry}&skn={}",
        urlencode(&signature),
        urlencode(key_name)
    )
}

/// Form encoding (space as `+`, upper-case hex), as the documented samples' `quote_plus` and
/// `HttpUtility.UrlEncode` give for URIs and base64.
fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Tokens for one hub, signed once and reused until they are close to expiring. `Debug`
/// shows neither the key nor the token (a token is a bearer secret until it expires).
pub struct Signer {
    resource_uri: String,
    connection: ConnectionString,
    lifetime: Duration,
    current: Option<(String, u64)>,
}

impl Signer {
    /// A signer for `hub`; tokens live `lifetime` and are renewed in their last fifth.
    pub fn new(connection: ConnectionString, hub: &str, lifetime: Duration) -> Signer {
        Signer {
            resource_uri: connection.resource_uri(hub),
            connection,
            lifetime,
            current: None,
        }
    }

    /// A token valid for at least a fifth of its lifetime more.
    pub fn token(&mut self) -> &str {
        let now = unix_now();
        let margin = self.lifetime.as_secs() / 5;
        let fresh = self
            .current
            .as_ref()
            .is_some_and(|(_, expiry)| *expiry > now + margin);
        if !fresh {
            let expiry = now + self.lifetime.as_secs();
            let token = token(
                &self.resource_uri,
                &self.connection.key_name,
                &self.connection.key,
                expiry,
            );
            self.current = Some((token, expiry));
        }
        self.current.as_ref().map_or("", |(t, _)| t.as_str())
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("resource_uri", &self.resource_uri)
            .field("connection", &self.connection)
            .field("lifetime", &self.lifetime)
            .field("expiry", &self.current.as_ref().map(|(_, e)| e))
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
