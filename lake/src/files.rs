//! Plain files in the lake, beside the tables: job plans and state checkpoints in `_system`.
//!
//! They live where the tables live (a local folder, Azurite or Azure), so a job can resume on any
//! machine, and they are written with create-only puts where two runners must not both succeed.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::LakeError;
use crate::layer::Layer;
use crate::target::Lake;

/// A file as listed: enough to tell one version of it from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Name relative to the folder.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Last modification.
    pub modified: chrono::DateTime<chrono::Utc>,
    /// The store's ETag, when it has one.
    pub etag: Option<String>,
}

/// A folder of files under a layer.
#[derive(Debug, Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    location: String,
}

impl Lake {
    /// The folder `dir` (slash-separated) under `layer`.
    pub fn files(&self, layer: Layer, dir: &str) -> Result<Files, LakeError> {
        let url = self.table_url(layer, dir)?;
        if let Some(root) = self.local_dir(layer) {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| LakeError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        let bad = |e: deltalake::DeltaTableError| LakeError::BadLocation {
            location: url.to_string(),
            reason: e.to_string(),
        };
        let log_store = self
            .delta_builder(&url)
            .and_then(|b| b.build_storage())
            .map_err(bad)?;
        Ok(Files {
            store: log_store.object_store(None),
            location: url.to_string(),
        })
    }
}

impl Files {
    /// Files at the root of `store` (tests that need a store misbehaving in a chosen way).
    #[cfg(test)]
    pub(crate) fn over(store: Arc<dyn ObjectStore>) -> Files {
        Files {
            store,
            location: "memory:///".to_string(),
        }
    }

    fn error(&self, name: &str, e: object_store::Error) -> LakeError {
        LakeError::Io {
            path: format!("{}{name}", self.location),
            source: std::io::Error::other(e.to_string()),
        }
    }

    /// Writes `name`, replacing it if it exists.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.store
            .put(&Path::from(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(name, e))
    }

    /// Writes `name` only if it does not exist yet; false if someone else wrote it first.
    pub async fn put_new(&self, name: &str, bytes: Bytes) -> Result<bool, LakeError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&Path::from(name), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// Reads `name`; `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, LakeError> {
        match self.store.get(&Path::from(name)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| self.error(name, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// Names (relative to this folder) of the files whose name starts with `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let files = self.list_meta(prefix).await?;
        Ok(files.into_iter().map(|f| f.name).collect())
    }

    /// The files whose name starts with `prefix`, sorted by name, with what identifies a version
    /// of each: size, last modification and ETag (where the store has one).
    pub async fn list_meta(&self, prefix: &str) -> Result<Vec<FileMeta>, LakeError> {
        let metas: Vec<_> = self
            .store
            .list(None)
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
        let mut files: Vec<FileMeta> = metas
            .into_iter()
            .filter(|m| m.location.as_ref().starts_with(prefix))
            .map(|m| FileMeta {
                name: m.location.to_string(),
                size: m.size,
                modified: m.last_modified,
                etag: m.e_tag,
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// Deletes every file in this folder (and, on a local folder, the folder itself).
    pub async fn delete_all(&self) -> Result<(), LakeError> {
        for name in self.list("").await? {
            self.delete(&name).await?;
        }
        if let Ok(url) = url::Url::parse(&self.location)
            && url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(())
    }

    /// Deletes `name`; a missing file is fine.
    pub async fn delete(&self, name: &str) -> Result<(), LakeError> {
        match self.store.delete(&Path::from(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_create_only_puts_refuse_a_second_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::local(dir.path()).expect("lake");
        let files = lake.files(Layer::System, "jobs/test").expect("files");
        assert!(
            files
                .put_new("plans/0001.json", Bytes::from("a"))
                .await
                .expect("put")
        );
        assert!(
            !files
                .put_new("plans/0001.json", Bytes::from("b"))
                .await
                .expect("put")
        );
        assert_eq!(
            files.get("plans/0001.json").await.expect("get"),
            Some(Bytes::from("a"))
        );
        assert_eq!(files.get("plans/0002.json").await.expect("get"), None);
        files
            .put("state/0001.bin", Bytes::from("s"))
            .await
            .expect("put");
        assert_eq!(
            files.list("plans/").await.expect("list"),
            ["plans/0001.json"]
        );
        files.delete("plans/0001.json").await.expect("delete");
        files.delete("plans/0001.json").await.expect("delete again");
        assert!(files.list("plans/").await.expect("list").is_empty());
        assert!(dir.path().join("_system/jobs/test/state/0001.bin").exists());
    }
}
