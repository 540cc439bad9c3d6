//! Creating containers on Azurite, which object_store cannot do.
//!
//! On Azure the deployment creates the containers; on the emulator nobody does, and every write
//! would fail with "ContainerNotFound". One signed Blob REST call per container fixes that.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sha2::Sha256;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::LakeError;
use crate::target::{EMULATOR_ACCOUNT, EMULATOR_KEY};

const API_VERSION: &str = "2021-12-02";

/// How long a connection to the emulator may stay idle: under Azurite's 5 s keep-alive.
const EMULATOR_IDLE: std::time::Duration = std::time::Duration::from_secs(3);

/// Creates `container` on the emulator at `endpoint` (`http://host:port`); an existing one is fine.
pub async fn create_container(endpoint: &str, container: &str) -> Result<(), LakeError> {
    let fail = |detail: String| LakeError::Container {
        container: container.to_string(),
        endpoint: endpoint.to_string(),
        detail,
    };
    let path = format!("/{EMULATOR_ACCOUNT}/{container}");
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // Path-style addressing: the canonical resource repeats the account, as object_store signs it.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{EMULATOR_ACCOUNT}{path}\nrestype:container"
    );
    let key = BASE64
        .decode(EMULATOR_KEY)
        .map_err(|e| fail(format!("bad emulator key: {e}")))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|e| fail(format!("bad emulator key: {e}")))?;
    mac.update(string_to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());

    let response = reqwest::Client::new()
        .put(format!("{endpoint}{path}?restype=container"))
        .header("x-ms-date", &date)
        .header("x-ms-version", API_VERSION)
        .header(
            "Authorization",
            format!("SharedKey {EMULATOR_ACCOUNT}:{signature}"),
        )
        .header("Content-Length", "0")
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "{e}. Is Azurite running? Start it with `npx azurite-blob --blobHost 127.0.0.1`"
            ))
        })?;
    let status = response.status();
    // 409 is ContainerAlreadyExists: someone (maybe us, earlier) created it.
    if status.is_success() || status.as_u16() == 409 {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(fail(format!("HTTP {status}: {body}")))
}

/// A store on the emulator for `container`, reached at `endpoint` with the well-known account.
///
/// object_store's own emulator mode reads the endpoint only from `AZURITE_BLOB_STORAGE_URL`,
/// which would tie a whole process to one emulator. So the store is built as for Azure with an
/// explicit endpoint, and wrapped: Azurite ignores the `startFrom` listing parameter that Azure
/// honours, so listings from an offset must be filtered on our side, as emulator mode does.
pub(crate) fn emulator_store(
    endpoint: &str,
    container: &str,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let store = MicrosoftAzureBuilder::new()
        .with_account(EMULATOR_ACCOUNT)
        .with_access_key(EMULATOR_KEY)
        .with_container_name(container)
        .with_endpoint(format!("{endpoint}/{EMULATOR_ACCOUNT}"))
        // Azurite closes a connection idle for 5 s (its keepAliveTimeout). A request sent on
        // one just as it closes fails with "error sending request", which object_store does
        // not retry for a create-only write (a Delta commit, a lease claim): drop idle
        // connections first. (Client options replace the builder's, so plain HTTP is allowed
        // here, not with `with_allow_http` before them.)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_pool_idle_timeout(EMULATOR_IDLE),
        )
        .build()?;
    Ok(Arc::new(AzuriteStore(Arc::new(store))))
}

/// Delegates everything except `list_with_offset`, which keeps the trait's client-side filter.
#[derive(Debug)]
struct AzuriteStore(Arc<dyn ObjectStore>);

impl std::fmt::Display for AzuriteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Azurite({})", self.0)
    }
}

#[async_trait::async_trait]
impl ObjectStore for AzuriteStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}
