//! The store of a lake on a local folder: object_store's local file system, except that a
//! listing from an offset within one folder (how Delta finds the commits after the version it
//! holds, on every open and update of a table) compares the folder's names with the offset and
//! looks only at the entries after it.
//!
//! object_store turns every entry of the folder into a URL and then an object path before
//! comparing it with the offset. A `_delta_log` folder gains an entry with every commit, and `up`
//! commits to Bronze hundreds of times a minute, so each update of a table cost more the longer
//! the lake had run (docs/performance.md, "Freshness in a sustained run").

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::watched_folders::{WatchedFolders, in_progress, is_plain};

/// A local file system rooted at `/` whose listings from an offset read names first.
#[derive(Debug)]
pub(crate) struct FolderStore {
    inner: Arc<LocalFileSystem>,
}

impl FolderStore {
    /// The store for every local lake (rooted at `/`, as delta-rs's own for `file://` URLs).
    pub(crate) fn new() -> Self {
        FolderStore {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }

    /// The one instance every local table and folder of the process uses.
    pub(crate) fn shared() -> Arc<dyn ObjectStore> {
        static SHARED: LazyLock<Arc<dyn ObjectStore>> =
            LazyLock::new(|| Arc::new(FolderStore::new()));
        Arc::clone(&SHARED)
    }
}

impl fmt::Display for FolderStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FolderStore({})", self.inner)
    }
}

/// An entry of the listed folder that the listing needs a closer look at.
enum Entry {
    /// A file after the offset.
    File(Path),
    /// A folder: its contents are listed as object_store lists them.
    Folder(Path),
}

/// Sorts one folder entry, `None` for a file at or before the offset or one object_store never
/// lists (a write in progress); only names after the offset are turned into object paths.
fn entry(prefix: &Path, offset_name: &str, found: &std::fs::DirEntry) -> Result<Option<Entry>> {
    let name = found.file_name();
    let Some(name) = name.to_str() else {
        // Not UTF-8: object_store refuses it the same way.
        return Err(object_store::Error::Generic {
            store: "FolderStore",
            source: format!("{} is not a UTF-8 name", found.path().display()).into(),
        });
    };
    // A name that object_store keeps as it is compares the same way as its object path; any
    // other is converted as object_store converts it (rare: not in Delta's logs).
    let location = if is_plain(name) {
        prefix.clone().join(name)
    } else {
        Path::from_absolute_path(found.path())?
    };
    let after = location.filename().is_some_and(|n| n > offset_name);
    let is_dir = match found.file_type() {
        Ok(t) if t.is_symlink() => found.path().is_dir(),
        Ok(t) => t.is_dir(),
        Err(_) => false,
    };
    if is_dir {
        return Ok(Some(Entry::Folder(location)));
    }
    if !after || in_progress(name) {
        return Ok(None);
    }
    Ok(Some(Entry::File(location)))
}

/// The folder's entries that a listing from `offset` needs a closer look at: from the names
/// kept for a watched folder, else from reading it.
fn entries_after(folder: std::path::PathBuf, prefix: Path, offset: Path) -> Result<Vec<Entry>> {
    let offset_name = offset.filename().unwrap_or_default().to_string();
    if let Some(names) = WatchedFolders::shared().names_after(&folder, &offset_name) {
        return Ok(names
            .into_iter()
            .map(|name| Entry::File(prefix.clone().join(name)))
            .collect());
    }
    let read = match std::fs::read_dir(&folder) {
        Ok(read) => read,
        // As object_store: an absent folder lists nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(object_store::Error::Generic {
                store: "FolderStore",
                source: Box::new(e),
            });
        }
    };
    let mut entries = Vec::new();
    for found in read {
        let found = found.map_err(|e| object_store::Error::Generic {
            store: "FolderStore",
            source: Box::new(e),
        })?;
        entries.extend(entry(&prefix, &offset_name, &found)?);
    }
    Ok(entries)
}

impl FolderStore {
    /// The listing from `offset` when the offset is in the listed folder itself (always the case
    /// for Delta's logs); `None` when it is not, for object_store's own.
    fn list_in_folder(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> Option<BoxStream<'static, Result<ObjectMeta>>> {
        let prefix = prefix?.clone();
        let mut parts: Vec<PathPart<'_>> = offset.parts().collect();
        parts.pop()?;
        if Path::from_iter(parts) != prefix {
            return None;
        }
        let folder = self.inner.path_to_filesystem(&prefix).ok()?;
        let inner = Arc::clone(&self.inner);
        let offset = offset.clone();
        let listing = async move {
            let (entries_prefix, entries_offset) = (prefix.clone(), offset.clone());
            let entries = tokio::task::spawn_blocking(move || {
                entries_after(folder, entries_prefix, entries_offset)
            })
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "FolderStore",
                source: Box::new(e),
            })??;
            let mut found: Vec<BoxStream<'static, Result<ObjectMeta>>> = Vec::new();
            for entry in entries {
                match entry {
                    Entry::File(path) => {
                        let head = Arc::clone(&inner);
                        found.push(
                            stream::once(async move { head.head(&path).await })
                                // Removed since the folder was read: as object_store, not listed.
                                .filter(|r| {
                                    std::future::ready(!matches!(
                                        r,
                                        Err(object_store::Error::NotFound { .. })
                                    ))
                                })
                                .boxed(),
                        );
                    }
                    Entry::Folder(path) => {
                        found.push(inner.list_with_offset(Some(&path), &offset));
                    }
                }
            }
            Ok::<_, object_store::Error>(stream::iter(found).flatten())
        };
        Some(
            stream::once(listing)
                .map(|r| match r {
                    Ok(s) => s.boxed(),
                    Err(e) => stream::once(std::future::ready(Err(e))).boxed(),
                })
                .flatten()
                .boxed(),
        )
    }
}

#[async_trait]
impl ObjectStore for FolderStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_in_folder(prefix, offset)
            .unwrap_or_else(|| self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn listed(
        store: &dyn ObjectStore,
        prefix: &Path,
        offset: &Path,
    ) -> Vec<(String, u64, Option<String>)> {
        let mut found: Vec<_> = store
            .list_with_offset(Some(prefix), offset)
            .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
            .try_collect()
            .await
            .expect("listing");
        found.sort();
        found
    }

    /// Lists the same folder from several offsets with both stores: the answers must be equal.
    #[tokio::test]
    async fn lists_from_an_offset_exactly_as_the_local_file_system_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("table with space").join("_delta_log");
        std::fs::create_dir_all(log.join("_commits")).expect("folders");
        for v in 0..40u64 {
            std::fs::write(log.join(format!("{v:020}.json")), vec![b'x'; v as usize])
                .expect("commit");
        }
        std::fs::write(log.join(format!("{:020}.checkpoint.parquet", 30)), b"pq").expect("cp");
        std::fs::write(log.join("_last_checkpoint"), b"{}").expect("last");
        std::fs::write(log.join(format!("{:020}.json#3", 41)), b"writing").expect("partial");
        std::fs::write(log.join("odd name é.json"), b"odd").expect("odd");
        std::fs::write(
            log.join("_commits").join("00000000000000000041.uuid.json"),
            b"c",
        )
        .expect("nested");
        std::fs::create_dir_all(dir.path().join("elsewhere")).expect("elsewhere");
        std::fs::write(dir.path().join("elsewhere").join("z.json"), b"z").expect("z");

        let ours = FolderStore::new();
        let theirs = LocalFileSystem::new();
        let prefix = Path::from_absolute_path(&log).expect("prefix");
        for offset in [
            format!("{:020}.json", 0),
            format!("{:020}.json", 29),
            format!("{:020}.checkpoint.parquet", 30),
            format!("{:020}.json", 39),
            format!("{:020}.json", 99),
            "_last_checkpoint".to_string(),
        ] {
            let offset = prefix.clone().join(offset.as_str());
            let want = listed(&theirs, &prefix, &offset).await;
            assert_eq!(listed(&ours, &prefix, &offset).await, want, "from {offset}");
        }
        let from_29 = listed(
            &ours,
            &prefix,
            &prefix.clone().join(format!("{:020}.json", 29)),
        )
        .await;
        assert!(
            from_29
                .iter()
                .any(|(p, _, _)| p.ends_with("00000000000000000030.json"))
        );
        assert!(
            !from_29
                .iter()
                .any(|(p, _, _)| p.ends_with("00000000000000000029.json"))
        );
        assert!(!from_29.iter().any(|(p, _, _)| p.contains('#')));
        assert!(from_29.iter().any(|(p, _, _)| p.contains("_commits")));

        // An offset outside the listed folder, and a folder that does not exist.
        let root = Path::from_absolute_path(dir.path()).expect("root");
        let outside = root.clone().join("elsewhere").join("a.json");
        assert_eq!(
            listed(&ours, &root, &outside).await,
            listed(&theirs, &root, &outside).await
        );
        let missing = root.clone().join("missing");
        let in_missing = missing.clone().join("0.json");
        assert_eq!(listed(&ours, &missing, &in_missing).await, Vec::new());
        assert_eq!(listed(&theirs, &missing, &in_missing).await, Vec::new());
    }

    /// A plain log folder, as the watched names answer it, changed between listings: the
    /// answers stay those of the local file system, sizes included.
    #[tokio::test]
    async fn a_watched_log_lists_as_the_local_file_system_does_while_it_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("t").join("_delta_log");
        std::fs::create_dir_all(&log).expect("folders");
        let ours = FolderStore::new();
        let theirs = LocalFileSystem::new();
        let prefix = Path::from_absolute_path(&log).expect("prefix");
        for v in 0..60u64 {
            std::fs::write(log.join(format!("{v:020}.json")), vec![b'x'; v as usize])
                .expect("commit");
            if v % 10 == 9 {
                std::fs::write(log.join(format!("{v:020}.checkpoint.parquet")), b"pq").expect("cp");
                // Rewritten in place: the same name, another size.
                std::fs::write(log.join("_last_checkpoint"), vec![b'c'; v as usize]).expect("hint");
            }
            let offset = prefix.clone().join(format!("{:020}", v - v % 10).as_str());
            let want = listed(&theirs, &prefix, &offset).await;
            assert_eq!(listed(&ours, &prefix, &offset).await, want, "version {v}");
        }
    }
}
