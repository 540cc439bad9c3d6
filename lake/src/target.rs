//! Where the lake lives: a local folder, Azurite, or Azure (docs/lake.md).
//!
//! A target is one root URL with the layer folders under it (`./lakehouse/bronze/...`), or a root
//! with a `{layer}` placeholder that gives each layer its own container
//! (`abfss://{layer}@acct.dfs.core.windows.net/`), or explicit per-layer URLs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Once;

use serde::Deserialize;
use url::Url;

use crate::LakeError;
use crate::layer::Layer;

/// The default lake: a folder in the working directory.
pub const DEFAULT_ROOT: &str = "./lakehouse";

/// Azurite's well-known account (documented by Microsoft; not a secret).
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known account key (documented by Microsoft; not a secret).
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's default blob endpoint.
pub const EMULATOR_ENDPOINT: &str = "http://127.0.0.1:10000";

/// The `[lake]` section of `boxoffice.toml` (every field optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakeSettings {
    /// Root path or URL; `{layer}` in it is replaced by each layer's container name.
    pub root: Option<String>,
    /// Per-layer URLs, overriding the root (keys: bronze, silver, gold, ops, landing, system).
    #[serde(default)]
    pub layers: BTreeMap<String, String>,
    /// Extra object_store options (for example `azure_storage_account_name`).
    #[serde(default)]
    pub storage_options: HashMap<String, String>,
    /// Treat `az://` URLs as the Azurite emulator (default: `AZURE_STORAGE_USE_EMULATOR`).
    pub emulator: Option<bool>,
    /// Azurite's blob endpoint (default: `AZURITE_BLOB_STORAGE_URL`, else 127.0.0.1:10000).
    pub emulator_endpoint: Option<String>,
}

/// What kind of storage the lake is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A folder on this machine.
    Local,
    /// The Azurite emulator (Blob API, well-known account).
    Azurite,
    /// Azure Blob Storage / ADLS Gen2.
    Azure,
}

/// A resolved lake: one URL per layer plus the options to reach them.
#[derive(Debug, Clone)]
pub struct Lake {
    kind: StoreKind,
    layers: BTreeMap<Layer, Url>,
    storage_options: HashMap<String, String>,
    emulator_endpoint: String,
}

static REGISTER_AZURE: Once = Once::new();

impl Lake {
    /// Resolves settings into layer URLs. Local folders are made absolute (not created yet).
    pub fn resolve(settings: &LakeSettings) -> Result<Lake, LakeError> {
        REGISTER_AZURE.call_once(|| deltalake::azure::register_handlers(None));
        let root = settings.root.as_deref().unwrap_or(DEFAULT_ROOT);
        let mut layers = BTreeMap::new();
        for layer in Layer::ALL {
            let explicit = settings
                .layers
                .get(layer.dir_name())
                .or_else(|| settings.layers.get(layer.container_name()));
            let url = match explicit {
                Some(u) => parse_location(u)?,
                None => layer_under_root(root, layer)?,
            };
            layers.insert(layer, url);
        }
        for key in settings.layers.keys() {
            if Layer::parse(key).is_none() {
                return Err(LakeError::BadLocation {
                    location: key.clone(),
                    reason: "unknown layer; expected bronze, silver, gold, ops, landing or system"
                        .into(),
                });
            }
        }
        let kind = kind_of(&layers[&Layer::Bronze], settings);
        if kind == StoreKind::Azure {
            needs_account(&layers[&Layer::Bronze], settings)?;
        }
        let emulator_endpoint = settings
            .emulator_endpoint
            .clone()
            .or_else(|| std::env::var("AZURITE_BLOB_STORAGE_URL").ok())
            .unwrap_or_else(|| EMULATOR_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let mut storage_options = settings.storage_options.clone();
        if kind == StoreKind::Azure {
            add_identity_endpoint(&mut storage_options, |name| std::env::var(name).ok());
            if let Some((by_container, account)) =
                containers_of_one_account(&layers, &storage_options)
            {
                layers = by_container;
                storage_options.insert(ACCOUNT_KEY.to_string(), account);
            }
        }
        Ok(Lake {
            kind,
            layers,
            storage_options,
            emulator_endpoint,
        })
    }

    /// The local lake at `path`, with default settings (handy in tests and tools).
    pub fn local(path: &Path) -> Result<Lake, LakeError> {
        Lake::resolve(&LakeSettings {
            root: Some(path.display().to_string()),
            ..LakeSettings::default()
        })
    }

    /// A lake on the Azurite emulator at `endpoint` (`http://127.0.0.1:<port>`), rooted at `root`
    /// (`az://<container>/<path>`).
    pub fn azurite(root: &str, endpoint: &str) -> Result<Lake, LakeError> {
        Lake::resolve(&LakeSettings {
            root: Some(root.to_string()),
            emulator: Some(true),
            emulator_endpoint: Some(endpoint.to_string()),
            ..LakeSettings::default()
        })
    }

    /// This lake with `layer` moved to `url` (a directory URL on the same storage): a job
    /// rebuilding its tables writes them beside the live ones, into a layer of its own, while
    /// reading every other layer as it is.
    pub fn with_layer(&self, layer: Layer, url: Url) -> Lake {
        let mut lake = self.clone();
        lake.layers.insert(layer, url);
        lake
    }

    /// What kind of storage this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The URL of a layer (ends with `/`).
    pub fn layer_url(&self, layer: Layer) -> &Url {
        &self.layers[&layer]
    }

    /// The URL of a table in a layer.
    pub fn table_url(&self, layer: Layer, name: &str) -> Result<Url, LakeError> {
        self.layer_url(layer)
            .join(&format!("{name}/"))
            .map_err(|e| LakeError::BadLocation {
                location: name.to_string(),
                reason: e.to_string(),
            })
    }

    /// object_store options for every table of this lake.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// Azurite's blob endpoint (meaningful for [`StoreKind::Azurite`] only).
    pub fn emulator_endpoint(&self) -> &str {
        &self.emulator_endpoint
    }

    /// The local folder of a layer, when the lake is local.
    pub fn local_dir(&self, layer: Layer) -> Option<std::path::PathBuf> {
        (self.kind == StoreKind::Local)
            .then(|| self.layer_url(layer).to_file_path().ok())
            .flatten()
    }

    /// A one-line description for logs and progress output (no secrets: URLs only).
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            StoreKind::Local => "local folder",
            StoreKind::Azurite => "Azurite",
            StoreKind::Azure => "Azure",
        };
        let account = self
            .storage_options
            .get(ACCOUNT_KEY)
            .filter(|_| self.kind == StoreKind::Azure)
            .map(|a| format!(" (account {a})"))
            .unwrap_or_default();
        format!("{kind} {}{account}", self.layer_url(Layer::Bronze))
    }

    /// Fails at once, saying what to do, when the lake is on Azurite and nothing answers at its
    /// endpoint (otherwise every request is retried for minutes before failing).
    pub fn check_reachable(&self) -> Result<(), LakeError> {
        if self.kind != StoreKind::Azurite {
            return Ok(());
        }
        let unreachable = |detail: String| LakeError::BadLocation {
            location: self.emulator_endpoint.clone(),
            reason: format!(
                "Azurite does not answer there ({detail}). Start it (`npx azurite-blob --blobHost \
                 127.0.0.1 --blobPort 10000`; `func start` does not start it), or point \
                 --emulator-endpoint (AZURITE_BLOB_STORAGE_URL) at the one running"
            ),
        };
        let url = Url::parse(&self.emulator_endpoint).map_err(|e| unreachable(e.to_string()))?;
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port_or_known_default().unwrap_or(10000);
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .map_err(|e| unreachable(e.to_string()))?
                .collect();
        let timeout = std::time::Duration::from_secs(2);
        if addrs
            .iter()
            .any(|a| std::net::TcpStream::connect_timeout(a, timeout).is_ok())
        {
            Ok(())
        } else {
            Err(unreachable(format!("nothing listens on {host}:{port}")))
        }
    }

    /// Makes the lake writable: creates the Azurite containers the layers need.
    ///
    /// Local folders are created by the first write; Azure containers are created by the
    /// deployment (infra/), never by a running job.
    pub async fn prepare(&self) -> Result<(), LakeError> {
        if self.kind == StoreKind::Azurite {
            let mut containers: Vec<&str> =
                self.layers.values().filter_map(|u| u.host_str()).collect();
            containers.sort_unstable();
            containers.dedup();
            for container in containers {
                crate::azurite::create_container(&self.emulator_endpoint, container).await?;
            }
        }
        Ok(())
    }
}

/// An `az://container/...` URL names no storage account: Azure needs one from the settings or
/// the environment, and without one every request fails with "Account must be specified".
fn needs_account(url: &Url, settings: &LakeSettings) -> Result<(), LakeError> {
    if !matches!(url.scheme(), "az" | "azure" | "adl") {
        return Ok(()); // abfss://container@account... carries it
    }
    let in_settings = settings.storage_options.keys().any(|k| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "azure_storage_account_name" | "account_name" | "azure_storage_account"
        )
    });
    let in_env = ["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty()));
    if in_settings || in_env {
        return Ok(());
    }
    Err(LakeError::BadLocation {
        location: url.to_string(),
        reason: "az:// names a container but no storage account. For the Azurite emulator add \
                 --emulator (or set AZURE_STORAGE_USE_EMULATOR=true); for Azure use \
                 abfss://<container>@<account>.dfs.core.windows.net/<path>, or set \
                 AZURE_STORAGE_ACCOUNT_NAME"
            .into(),
    })
}

/// The object_store key of the storage account name.
const ACCOUNT_KEY: &str = "azure_storage_account_name";

/// `abfss://<container>@<account>.dfs.core.windows.net/<path>` layers of one account, as
/// `az://<container>/<path>` URLs and that account (None when any layer is not such a URL, the
/// layers name several accounts, or the settings name another account).
///
/// Why: DataFusion keys the object stores of a session by scheme and host only (the URL's user,
/// which holds an ADLS container, is dropped: apache/datafusion#23926), so in a session that
/// reads two layers of one account (a query over Bronze and Silver, the Gold refresh) every
/// container resolves to the store of the first one registered, and tables are read from the
/// wrong container. `az://<container>/` puts the container in the host, where it is kept; the
/// account then comes from the storage options. The requests are the same: object_store talks
/// to the Blob endpoint of the account for either form.
fn containers_of_one_account(
    layers: &BTreeMap<Layer, Url>,
    options: &HashMap<String, String>,
) -> Option<(BTreeMap<Layer, Url>, String)> {
    let mut account: Option<String> = None;
    let mut rewritten = BTreeMap::new();
    for (layer, url) in layers {
        if !matches!(url.scheme(), "abfs" | "abfss") || url.username().is_empty() {
            return None;
        }
        let host = url.host_str()?;
        let (name, suffix) = host.split_once('.')?;
        if !matches!(suffix, "dfs.core.windows.net" | "blob.core.windows.net") {
            return None;
        }
        if account.as_deref().is_some_and(|a| a != name) {
            return None;
        }
        account = Some(name.to_string());
        let az = Url::parse(&format!("az://{}{}", url.username(), url.path())).ok()?;
        rewritten.insert(*layer, az);
    }
    let account = account?;
    let named = options.iter().find(|(k, _)| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "azure_storage_account_name" | "account_name" | "azure_storage_account"
        )
    });
    if named.is_some_and(|(_, v)| *v != account) {
        return None;
    }
    Some((rewritten, account))
}

/// The object_store keys that name a managed identity token endpoint (`azure_msi_endpoint` and
/// its aliases).
const IDENTITY_ENDPOINT_KEYS: [&str; 4] = [
    "azure_msi_endpoint",
    "azure_identity_endpoint",
    "identity_endpoint",
    "msi_endpoint",
];

/// Points object_store's managed identity credential at the host's token endpoint.
///
/// App Service, Azure Functions and Container Apps serve an identity's tokens at
/// `IDENTITY_ENDPOINT` (protocol 2019-08-01, header `X-IDENTITY-HEADER: $IDENTITY_HEADER`), not at
/// the VM metadata address object_store asks by default. object_store reads that variable only
/// in `MicrosoftAzureBuilder::from_env`, which delta-rs does not use (it copies `AZURE_*`
/// variables alone), so without this every lake request in those hosts fails to get a token.
/// object_store sends `IDENTITY_HEADER` itself and asks for the identity in `AZURE_CLIENT_ID`.
/// An endpoint set in `[lake] storage_options` or `AZURE_MSI_ENDPOINT` is kept.
fn add_identity_endpoint(
    options: &mut HashMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) {
    let given = options
        .keys()
        .any(|k| IDENTITY_ENDPOINT_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        || ["AZURE_MSI_ENDPOINT", "AZURE_IDENTITY_ENDPOINT"]
            .iter()
            .any(|name| env(name).is_some_and(|v| !v.is_empty()));
    if given {
        return;
    }
    if let Some(endpoint) = env("IDENTITY_ENDPOINT").filter(|v| !v.is_empty()) {
        options.insert("azure_msi_endpoint".to_string(), endpoint);
    }
}

fn is_azure_scheme(scheme: &str) -> bool {
    matches!(scheme, "az" | "azure" | "abfs" | "abfss" | "adl")
}

fn kind_of(url: &Url, settings: &LakeSettings) -> StoreKind {
    if url.scheme() == "file" {
        return StoreKind::Local;
    }
    let env_emulator = std::env::var("AZURE_STORAGE_USE_EMULATOR")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        .unwrap_or(false);
    if settings.emulator.unwrap_or(env_emulator) && url.scheme() == "az" {
        StoreKind::Azurite
    } else {
        StoreKind::Azure
    }
}

/// Parses a path or URL into a directory URL (trailing `/`).
fn parse_location(location: &str) -> Result<Url, LakeError> {
    let bad = |reason: String| LakeError::BadLocation {
        location: location.to_string(),
        reason,
    };
    let url = match Url::parse(location) {
        Ok(u) if u.scheme() == "file" || is_azure_scheme(u.scheme()) => u,
        Ok(u) if u.scheme().len() > 1 => {
            return Err(bad(format!(
                "unsupported scheme {}:// (use a local path, az://, abfss:// or file://)",
                u.scheme()
            )));
        }
        // A relative or absolute path (or a Windows drive letter parsed as a scheme).
        _ => {
            let abs = std::path::absolute(location).map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&abs).map_err(|()| bad("not an absolute path".into()))?
        }
    };
    if is_azure_scheme(url.scheme()) && url.host_str().is_none_or(str::is_empty) {
        return Err(bad(
            "an Azure URL needs a container: az://<container>/... or abfss://<container>@<account>.dfs.core.windows.net/..."
                .into(),
        ));
    }
    let mut url = url;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn layer_under_root(root: &str, layer: Layer) -> Result<Url, LakeError> {
    if root.contains("{layer}") {
        return parse_location(&root.replace("{layer}", layer.container_name()));
    }
    let base = parse_location(root)?;
    base.join(&format!("{}/", layer.dir_name()))
        .map_err(|e| LakeError::BadLocation {
            location: root.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &str) -> LakeSettings {
        LakeSettings {
            root: Some(root.into()),
            ..LakeSettings::default()
        }
    }

    #[test]
    fn local_root_puts_layers_in_folders() {
        let lake = Lake::resolve(&settings("/tmp/lh")).expect("resolves");
        assert_eq!(lake.kind(), StoreKind::Local);
        assert_eq!(
            lake.layer_url(Layer::Bronze).as_str(),
            "file:///tmp/lh/bronze/"
        );
        assert_eq!(
            lake.layer_url(Layer::System).as_str(),
            "file:///tmp/lh/_system/"
        );
        assert_eq!(
            lake.table_url(Layer::Bronze, "bookings_raw")
                .expect("url")
                .as_str(),
            "file:///tmp/lh/bronze/bookings_raw/"
        );
    }

    #[test]
    fn relative_root_is_made_absolute() {
        let lake = Lake::resolve(&settings("./lakehouse")).expect("resolves");
        let dir = lake.local_dir(Layer::Gold).expect("local");
        assert!(dir.is_absolute());
        assert!(dir.ends_with("lakehouse/gold"));
    }

    #[test]
    fn layer_placeholder_gives_one_container_per_layer() {
        let lake = Lake::resolve(&settings("abfss://{layer}@acct.dfs.core.windows.net/"))
            .expect("resolves");
        assert_eq!(lake.kind(), StoreKind::Azure);
        // The containers of one account are addressed az://<container>/ with the account in the
        // options: a DataFusion session then keeps them apart (see containers_of_one_account).
        assert_eq!(
            lake.table_url(Layer::Gold, "payment_mix")
                .expect("url")
                .as_str(),
            "az://gold/payment_mix/"
        );
        assert_eq!(lake.layer_url(Layer::System).as_str(), "az://system/");
        assert_eq!(lake.storage_options()[ACCOUNT_KEY], "acct");
        assert_eq!(lake.describe(), "Azure az://bronze/ (account acct)");
    }

    #[test]
    fn layers_of_several_accounts_keep_their_urls() {
        let mut s = settings("abfss://{layer}@acct.dfs.core.windows.net/x/");
        s.layers.insert(
            "gold".into(),
            "abfss://gold@other.dfs.core.windows.net/".into(),
        );
        let lake = Lake::resolve(&s).expect("resolves");
        assert_eq!(
            lake.layer_url(Layer::Bronze).as_str(),
            "abfss://bronze@acct.dfs.core.windows.net/x/"
        );
        assert!(!lake.storage_options().contains_key(ACCOUNT_KEY));
        // A path under the container is kept in the rewrite.
        let lake = Lake::resolve(&settings("abfss://{layer}@acct.blob.core.windows.net/x/"))
            .expect("resolves");
        assert_eq!(lake.layer_url(Layer::Silver).as_str(), "az://silver/x/");
    }

    #[test]
    fn the_host_identity_endpoint_is_handed_to_object_store() {
        fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        let endpoint = "http://localhost:42356/msi/token";
        let in_container_apps = [("IDENTITY_ENDPOINT", endpoint)];
        let mut options = HashMap::new();
        add_identity_endpoint(&mut options, env(&in_container_apps));
        assert_eq!(
            options.get("azure_msi_endpoint").map(String::as_str),
            Some(endpoint)
        );
        // Outside those hosts nothing changes (object_store keeps its own default).
        let mut options = HashMap::new();
        add_identity_endpoint(&mut options, env(&[]));
        assert!(options.is_empty());
        // An endpoint given explicitly wins, in the settings or the environment.
        let mut options = HashMap::from([("msi_endpoint".to_string(), "http://a/".to_string())]);
        add_identity_endpoint(&mut options, env(&in_container_apps));
        assert_eq!(options.len(), 1);
        assert_eq!(options["msi_endpoint"], "http://a/");
        let both = [
            ("IDENTITY_ENDPOINT", endpoint),
            ("AZURE_MSI_ENDPOINT", "http://b/"),
        ];
        let mut options = HashMap::new();
        add_identity_endpoint(&mut options, env(&both));
        assert!(options.is_empty(), "{options:?}");
    }

    #[test]
    fn azurite_gets_an_explicit_endpoint_and_the_well_known_account() {
        let lake = Lake::azurite("az://lake/dev", "http://127.0.0.1:41234/").expect("resolves");
        assert_eq!(lake.kind(), StoreKind::Azurite);
        assert_eq!(
            lake.layer_url(Layer::Silver).as_str(),
            "az://lake/dev/silver/"
        );
        assert_eq!(lake.emulator_endpoint(), "http://127.0.0.1:41234");
    }

    #[test]
    fn per_layer_override_and_unknown_layer() {
        let mut s = settings("/tmp/lh");
        s.layers.insert("gold".into(), "/tmp/elsewhere/gold".into());
        let lake = Lake::resolve(&s).expect("resolves");
        assert_eq!(
            lake.layer_url(Layer::Gold).as_str(),
            "file:///tmp/elsewhere/gold/"
        );
        s.layers.insert("platinum".into(), "/tmp/x".into());
        let err = Lake::resolve(&s).expect_err("unknown layer");
        assert!(err.to_string().contains("unknown layer"), "{err}");
    }

    #[test]
    fn unsupported_scheme_and_missing_container_are_clear_errors() {
        let err = Lake::resolve(&settings("s3://bucket/lake")).expect_err("s3");
        assert!(
            err.to_string().contains("unsupported scheme s3://"),
            "{err}"
        );
        let err = Lake::resolve(&settings("az:///lake")).expect_err("no container");
        assert!(err.to_string().contains("needs a container"), "{err}");
    }
}
