//! Creating containers on Azurite, which object_store cannot do.
//!
//! On Azure the deployment creates the containers; on the emulator nobody does, and every write
//! would fail with "ContainerNotFound". One signed Blob REST call per container fixes that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::LakeError;
use crate::target::{EMULATOR_ACCOUNT, EMULATOR_KEY};

const API_VERSION: &str = "2021-12-02";

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
