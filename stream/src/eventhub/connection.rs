//! A namespace connection, as the Functions host reads the setting a binding names:
//! - a connection string with a key, `<setting>` =
//!   `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...`
//!   as the portal and `az eventhubs namespace authorization-rule keys list` print it;
//! - or identity-based: `<setting>__fullyQualifiedNamespace`, with `<setting>__credential` =
//!   `managedidentity` and `<setting>__clientId` for a user-assigned identity.

use std::fmt;
use std::sync::Arc;

use super::EventHubError;
use super::identity::{IdentityChoice, ManagedIdentity};

/// A namespace and what proves the right to send to it.
#[derive(Debug, Clone)]
pub enum Connection {
    /// A connection string with a key: SAS tokens signed here.
    Key(ConnectionString),
    /// An identity-based connection: Microsoft Entra tokens from the app's managed identity.
    Identity {
        /// `<namespace>.servicebus.windows.net`, lower-cased.
        host: String,
        /// The token source, shared by every sender of the process.
        identity: Arc<ManagedIdentity>,
    },
}

impl From<ConnectionString> for Connection {
    fn from(connection: ConnectionString) -> Connection {
        Connection::Key(connection)
    }
}

impl Connection {
    /// Reads the connection named `setting` from the environment: the connection string when
    /// `setting` holds one, else the identity-based `setting__...` settings.
    pub fn from_env(setting: &str) -> Result<Connection, EventHubError> {
        Connection::from_vars(setting, |name| std::env::var(name).ok())
    }

    /// [`Connection::from_env`] over any source of settings. Errors name settings, never values.
    pub fn from_vars(
        setting: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Connection, EventHubError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set(setting).is_some() {
            return ConnectionString::from_vars(setting, &var).map(Connection::Key);
        }
        let namespace_setting = format!("{setting}__fullyQualifiedNamespace");
        let Some(namespace) = set(&namespace_setting) else {
            return Err(bad(format!(
                "set {setting} to the namespace's connection string \
                 (Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>), \
                 or, inside Azure, {namespace_setting} to <namespace>.servicebus.windows.net \
                 with {setting}__credential=managedidentity"
            )));
        };
        let host = namespace
            .trim()
            .trim_start_matches("sb://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if host.is_empty() || host.contains('/') {
            return Err(bad(format!(
                "{namespace_setting} is not a host name (<namespace>.servicebus.windows.net)"
            )));
        }
        if let Some(credential) = set(&format!("{setting}__credential"))
            && !credential.trim().eq_ignore_ascii_case("managedidentity")
        {
            return Err(bad(format!(
                "{setting}__credential is '{}': only managedidentity is supported",
                credential.trim()
            )));
        }
        let choice = match (
            set(&format!("{setting}__clientId")),
            set(&format!("{setting}__managedIdentityResourceId")),
        ) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "give {setting}__clientId or {setting}__managedIdentityResourceId, not both"
                )));
            }
            (Some(id), None) => IdentityChoice::ClientId(id.trim().to_string()),
            (None, Some(id)) => IdentityChoice::ResourceId(id.trim().to_string()),
            (None, None) => IdentityChoice::SystemAssigned,
        };
        let identity = ManagedIdentity::from_vars(choice, &var).map_err(|e| match e {
            EventHubError::Connection(reason) => bad(format!(
                "{namespace_setting} is set (identity-based): {reason}"
            )),
            other => other,
        })?;
        Ok(Connection::Identity {
            host,
            identity: Arc::new(identity),
        })
    }

    /// The namespace's host, `<namespace>.servicebus.windows.net`.
    pub fn host(&self) -> &str {
        match self {
            Connection::Key(c) => &c.host,
            Connection::Identity { host, .. } => host,
        }
    }

    /// Who sends, for a log line: the policy's name, or the managed identity.
    pub fn principal(&self) -> String {
        match self {
            Connection::Key(c) => format!("policy '{}'", c.key_name),
            Connection::Identity { identity, .. } => match identity.choice() {
                IdentityChoice::SystemAssigned => "the system-assigned managed identity".into(),
                IdentityChoice::ClientId(id) => format!("managed identity {id}"),
                IdentityChoice::ResourceId(id) => format!("managed identity {id}"),
            },
        }
    }
}

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
        ConnectionString::from_vars(setting, |name| std::env::var(name).ok())
    }

    /// [`ConnectionString::from_env`] over any source of settings.
    pub fn from_vars(
        setting: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnectionString, EventHubError> {
        let text = var(setting)
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
