//! `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...`
//! as the portal and `az eventhubs namespace authorization-rule keys list` print it.

use std::fmt;

use super::EventHubError;

/// A parsed connection string. `Debug` shows everything but the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host, lower-cased: `<namespace>.servicebus.windows.net`.
    pub host: String,
    /// The shared access policy's name (`skn` in a token).
    pub key_name: String,
    /// The policy's key: the secret a token is signed with.
    pub key: String,
    /// Set when the policy belongs to one hub rather than the namespace.
    pub entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: the Event Hubs emulator, which has no REST API.
    pub emulator: bool,
}

impl ConnectionString {
    /// Parses `key=value;...`; names are case-insensitive and a value may itself hold `=`
    /// (base64 keys end with it).
    pub fn parse(text: &str) -> Result<ConnectionString, EventHubError> {
        let (mut endpoint, mut key_name, mut key, mut entity_path, mut emulator) =
            (None, None, None, None, false);
        let parts = text.split(';').map(str::trim).filter(|p| !p.is_empty());
        for (i, part) in parts.enumerate() {
            // Never quote the part: a malformed one may be a pasted key.
            let Some((name, value)) = part.split_once('=') else {
                return Err(bad(format!("part {} is not name=value", i + 1)));
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_string()),
                "sharedaccesskeyname" => key_name = Some(value.trim().to_string()),
                "sharedaccesskey" => key = Some(value.trim().to_string()),
                "entitypath" => entity_path = Some(value.trim().to_string()),
                "usedevelopmentemulator" => emulator = value.trim().eq_ignore_ascii_case("true"),
                "sharedaccesssignature" => {
                    return Err(bad(
                        "a SharedAccessSignature connection string carries a fixed token; \
                         give the policy's SharedAccessKeyName and SharedAccessKey instead"
                            .into(),
                    ));
                }
                _ => {} // TransportType and others do not apply to REST.
            }
        }
        let endpoint =
            endpoint.ok_or_else(|| bad("Endpoint=sb://<namespace>... is missing".into()))?;
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if host.is_empty() || host.contains('/') {
            return Err(bad(format!("Endpoint '{endpoint}' is not sb://<host>/")));
        }
        Ok(ConnectionString {
            host,
            key_name: key_name.ok_or_else(|| bad("SharedAccessKeyName is missing".into()))?,
            key: key.ok_or_else(|| bad("SharedAccessKey is missing".into()))?,
            entity_path: entity_path.filter(|p| !p.is_empty()),
            emulator,
        })
    }

    /// Reads the connection string in the environment variable `setting`. Errors name the
    /// variable, never its value.
    pub fn from_env(setting: &str) -> Result<ConnectionString, EventHubError> {
        let text = std::env::var(setting)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "set {setting} to the namespace's connection string \
                     (Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>)"
                ))
            })?;
        ConnectionString::parse(&text).map_err(|e| match e {
            EventHubError::Connection(reason) => bad(format!("{setting}: {reason}")),
            other => other,
        })
    }

    /// The URI a token for `hub` is signed for: `https://<host>/<hub>`.
    pub fn resource_uri(&self, hub: &str) -> String {
        format!("https://{}/{}", self.host, hub)
    }

    /// Refuses hubs a hub-scoped policy (`EntityPath`) cannot send to.
    pub fn check_hub(&self, hub: &str) -> Result<(), EventHubError> {
        match &self.entity_path {
            Some(path) if !path.eq_ignore_ascii_case(hub) => Err(bad(format!(
                "its policy belongs to hub '{path}' (EntityPath) and cannot send to '{hub}'; \
                 use a namespace-level policy to send to both hubs"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .field("emulator", &self.emulator)
            .finish()
    }
}

fn bad(reason: String) -> EventHubError {
    EventHubError::Connection(reason)
}
