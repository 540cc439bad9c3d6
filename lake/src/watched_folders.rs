//! The names in the folders a local lake lists again and again (its tables' `_delta_log`
//! folders), kept in memory and current by the kernel's change notifications (Linux inotify).
//!
//! Every snapshot update of a Delta table lists its log from the version it holds, and a local
//! folder can only be listed whole: the longer `up` runs, the more names each of its thousands of
//! updates a minute read (docs/performance.md, "Freshness in a sustained run"). A folder watched
//! here is read once; after that each listing first applies the changes the kernel queued since
//! the last one, then answers from memory.
//!
//! Why it is exact: the kernel queues a notification inside the call that creates, renames or
//! deletes an entry, before that call returns, whichever process made it. A listing drains the
//! queue before it answers, so it sees every change that finished before it began, as reading
//! the folder would. The watch is added before the folder is read, so no change falls between.
//! When the queue overflows, every folder is read again. Network file systems do not report
//! other machines' changes, so only folders on local file system types are watched; the rest
//! are read every time, as before.

/// Whether object_store keeps `name` as it is in an object path, so that names and paths sort
/// alike; the names a watched folder holds (Delta's log names all are).
pub(crate) fn is_plain(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// object_store writes a file as `<name>#<n>` and renames it when done; listings leave those out.
pub(crate) fn in_progress(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The names of watched folders; one per process ([`WatchedFolders::shared`]).
pub(crate) struct WatchedFolders {
    #[cfg(target_os = "linux")]
    state: std::sync::Mutex<linux::State>,
}

impl WatchedFolders {
    /// The one instance of the process, shared by every local lake.
    pub(crate) fn shared() -> &'static WatchedFolders {
        static SHARED: std::sync::LazyLock<WatchedFolders> =
            std::sync::LazyLock::new(WatchedFolders::new);
        &SHARED
    }

    fn new() -> Self {
        WatchedFolders {
            #[cfg(target_os = "linux")]
            state: std::sync::Mutex::new(linux::State::new()),
        }
    }

    /// The names in `folder` after `offset` (by byte order), but writes in progress; `None`
    /// when the folder is not watched and must be read: it holds folders or names that are not
    /// UTF-8, it does not exist, its file system is not a local one, or watching is unavailable.
    pub(crate) fn names_after(
        &self,
        folder: &std::path::Path,
        offset: &str,
    ) -> Option<Vec<String>> {
        #[cfg(target_os = "linux")]
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.names_after(folder, offset)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (folder, offset);
            None
        }
    }

    /// How many times a watched folder was read from disk: its first listing, a listing from
    /// before what it keeps, and after an overflow. For tests.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).reads
        }
        #[cfg(not(target_os = "linux"))]
        0
    }
}

/// How many names behind the latest listing a watched folder keeps, for tests.
#[cfg(all(test, target_os = "linux"))]
const KEEP_BEHIND_FOR_TESTS: usize = linux::KEEP_BEHIND;

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{BTreeSet, HashMap};
    use std::mem::MaybeUninit;
    use std::ops::Bound;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    /// At most this many folders are watched (each is one of the user's inotify watches, 8,192
    /// or more on current kernels); the next ones are read every time.
    const MAX_FOLDERS: usize = 512;

    /// Names at or before the latest listing's offset are forgotten once there are this many:
    /// readers list from their last checkpoint, so older names are rarely asked for again.
    pub(super) const KEEP_BEHIND: usize = 256;

    /// File systems whose changes, by any process, the kernel reports (statfs magic numbers).
    const LOCAL_FILE_SYSTEMS: &[u32] = &[
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x794C_7630, // overlayfs (containers)
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
        0xCA45_1A4E, // bcachefs
    ];

    /// What an entry of a watched folder, read or notified, is to its names.
    enum Entry<'a> {
        /// A plain file name, kept.
        Kept(&'a str),
        /// A write in progress: listings leave it out.
        Left,
        /// A folder, or a name that is not UTF-8 or that object_store would convert: the
        /// folder is read at every listing from then on.
        Unwatchable,
    }

    impl<'a> Entry<'a> {
        fn of(name: Option<&'a str>, is_dir: bool) -> Self {
            match name {
                _ if is_dir => Entry::Unwatchable,
                Some(name) if super::in_progress(name) => Entry::Left,
                Some(name) if super::is_plain(name) => Entry::Kept(name),
                _ => Entry::Unwatchable,
            }
        }
    }

    /// One watched folder.
    struct Folder {
        path: PathBuf,
        /// The folder's device and inode: a path that now names another folder (its own or a
        /// parent's rename) is watched afresh.
        id: (u64, u64),
        /// Every name in the folder after `floor` (all of them when it is empty).
        names: BTreeSet<String>,
        floor: String,
        /// Read again before the next answer: the queue overflowed.
        stale: bool,
        /// Holds a folder or a name object_store would convert: read every time.
        unwatchable: bool,
    }

    pub(super) struct State {
        /// `None` when the kernel gave no inotify instance: every folder is read.
        inotify: Option<OwnedFd>,
        folders: HashMap<i32, Folder>,
        by_path: HashMap<PathBuf, i32>,
        pub(super) reads: u64,
    }

    impl State {
        pub(super) fn new() -> Self {
            let inotify = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)
                .inspect_err(|e| {
                    tracing::debug!(error = %e, "no inotify: local log folders are read at every listing")
                })
                .ok();
            State {
                inotify,
                folders: HashMap::new(),
                by_path: HashMap::new(),
                reads: 0,
            }
        }

        pub(super) fn names_after(&mut self, folder: &Path, offset: &str) -> Option<Vec<String>> {
            self.drain();
            let watch = self.current_watch(folder)?;
            let known = self.folders.get(&watch)?;
            if known.stale || offset < known.floor.as_str() {
                self.read(watch, offset);
                self.drain();
            }
            let known = self.folders.get_mut(&watch)?;
            if known.unwatchable {
                return None;
            }
            let after: Vec<String> = known
                .names
                .range::<str, _>((Bound::Excluded(offset), Bound::Unbounded))
                .cloned()
                .collect();
            if known.names.len() - after.len() > KEEP_BEHIND {
                let mut kept = known.names.split_off(offset);
                kept.remove(offset);
                known.names = kept;
                known.floor = offset.to_string();
            }
            Some(after)
        }

        /// The watch of `folder` as the path names it now, started if need be; `None` when it
        /// cannot be watched.
        fn current_watch(&mut self, folder: &Path) -> Option<i32> {
            let id = std::fs::metadata(folder).ok().map(|m| (m.dev(), m.ino()));
            if let Some(&watch) = self.by_path.get(folder) {
                if self.folders.get(&watch).is_some_and(|f| Some(f.id) == id) {
                    return Some(watch);
                }
                self.forget(watch);
            }
            self.watch(folder, id?)
        }

        /// Starts watching `folder` (to be read before its first answer); `None` when it cannot
        /// be watched.
        fn watch(&mut self, folder: &Path, id: (u64, u64)) -> Option<i32> {
            let inotify = self.inotify.as_ref()?;
            if self.folders.len() >= MAX_FOLDERS {
                return None;
            }
            let kind = rustix::fs::statfs(folder).ok()?.f_type as u32;
            if !LOCAL_FILE_SYSTEMS.contains(&kind) {
                return None;
            }
            let flags = WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR;
            let watch = inotify::add_watch(inotify, folder, flags)
                .inspect_err(|e| tracing::debug!(folder = %folder.display(), error = %e, "not watched: read at every listing"))
                .ok()?;
            // The same folder under another path, or a watch number the kernel gave again before
            // the old watch's end was read.
            if let Some(old) = self.folders.remove(&watch) {
                self.by_path.remove(&old.path);
            }
            self.folders.insert(
                watch,
                Folder {
                    path: folder.to_path_buf(),
                    id,
                    names: BTreeSet::new(),
                    floor: String::new(),
                    stale: true,
                    unwatchable: false,
                },
            );
            self.by_path.insert(folder.to_path_buf(), watch);
            Some(watch)
        }

        /// Stops watching and forgets a folder.
        fn forget(&mut self, watch: i32) {
            if let Some(gone) = self.folders.remove(&watch) {
                self.by_path.remove(&gone.path);
                if let Some(inotify) = self.inotify.as_ref() {
                    // Fails when the kernel already ended the watch: nothing to do then.
                    let _ = inotify::remove_watch(inotify, watch);
                }
            }
        }

        /// Reads the watched folder's names after `floor` from disk.
        fn read(&mut self, watch: i32, floor: &str) {
            let Some(folder) = self.folders.get_mut(&watch) else {
                return;
            };
            self.reads += 1;
            folder.names.clear();
            folder.floor = floor.to_string();
            folder.stale = false;
            let Ok(entries) = std::fs::read_dir(&folder.path) else {
                folder.unwatchable = true;
                return;
            };
            for entry in entries {
                let Ok(entry) = entry else {
                    folder.unwatchable = true;
                    return;
                };
                let is_dir = entry
                    .file_type()
                    .map_or(true, |t| t.is_dir() || t.is_symlink());
                let name = entry.file_name();
                match Entry::of(name.to_str(), is_dir) {
                    Entry::Kept(name) if name > floor => {
                        folder.names.insert(name.to_string());
                    }
                    Entry::Kept(_) | Entry::Left => {}
                    Entry::Unwatchable => folder.unwatchable = true,
                }
            }
        }

        /// Applies every change the kernel queued since the last drain.
        fn drain(&mut self) {
            let Some(inotify) = self.inotify.as_ref() else {
                return;
            };
            let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut events = inotify::Reader::new(inotify, &mut buf);
            loop {
                let event = match events.next() {
                    Ok(event) => event,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        if e != Errno::WOULDBLOCK {
                            tracing::debug!(error = %e, "reading inotify events failed: reading every watched folder again");
                            self.folders.values_mut().for_each(|f| f.stale = true);
                        }
                        return;
                    }
                };
                let flags = event.events();
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    self.folders.values_mut().for_each(|f| f.stale = true);
                    continue;
                }
                if flags.intersects(
                    ReadFlags::IGNORED
                        | ReadFlags::DELETE_SELF
                        | ReadFlags::MOVE_SELF
                        | ReadFlags::UNMOUNT,
                ) {
                    if let Some(gone) = self.folders.remove(&event.wd()) {
                        self.by_path.remove(&gone.path);
                        if !flags.contains(ReadFlags::IGNORED) {
                            // Its end (IN_IGNORED) follows; a moved folder's watch would not end.
                            let _ = inotify::remove_watch(inotify, event.wd());
                        }
                    }
                    continue;
                }
                let Some(folder) = self.folders.get_mut(&event.wd()) else {
                    continue;
                };
                let Some(name) = event.file_name() else {
                    continue;
                };
                match Entry::of(name.to_str().ok(), flags.contains(ReadFlags::ISDIR)) {
                    Entry::Kept(name) => {
                        if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                            if name > folder.floor.as_str() {
                                folder.names.insert(name.to_string());
                            }
                        } else if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                            folder.names.remove(name);
                        }
                    }
                    Entry::Left => {}
                    Entry::Unwatchable => folder.unwatchable = true,
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::path::Path;

    /// What reading the folder says: its plain names after `offset`, sorted.
    fn on_disk(folder: &Path, offset: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .expect("read")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .filter(|n| n.as_str() > offset && !in_progress(n))
            .collect();
        names.sort();
        names
    }

    fn commit(folder: &Path, version: u64) -> String {
        let name = format!("{version:020}.json");
        std::fs::write(folder.join(&name), b"{}").expect("commit");
        name
    }

    fn log_folder() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("table").join("_delta_log");
        std::fs::create_dir_all(&log).expect("log folder");
        (dir, log)
    }

    #[test]
    fn a_watched_folder_is_read_once_and_answers_every_change_after_from_memory() {
        let (_dir, log) = log_folder();
        for v in 0..40 {
            commit(&log, v);
        }
        let watched = WatchedFolders::new();
        assert_eq!(watched.names_after(&log, ""), Some(on_disk(&log, "")));
        for v in 40..200u64 {
            // The writes Delta makes: a commit staged under another name and renamed, a
            // checkpoint, object_store's `#n` staging, and the expired entries' removal.
            let staged = log.join(format!("_commit_{v}.json.tmp"));
            std::fs::write(&staged, b"{}").expect("stage");
            std::fs::rename(&staged, log.join(format!("{v:020}.json"))).expect("rename");
            if v % 10 == 9 {
                let partial = log.join(format!("{v:020}.checkpoint.parquet#1"));
                std::fs::write(&partial, b"pq").expect("partial");
                std::fs::hard_link(&partial, log.join(format!("{v:020}.checkpoint.parquet")))
                    .expect("link");
                std::fs::remove_file(&partial).expect("unlink");
                std::fs::write(log.join("_last_checkpoint"), format!("{v}")).expect("hint");
            }
            if v % 25 == 0 {
                std::fs::remove_file(log.join(format!("{:020}.json", v - 40))).expect("expire");
            }
            let offset = format!("{:020}", v - v % 10);
            assert_eq!(
                watched.names_after(&log, &offset),
                Some(on_disk(&log, &offset)),
                "after version {v}, from {offset}"
            );
        }
        assert_eq!(watched.reads(), 1, "read once, then kept by notifications");
    }

    #[test]
    fn changes_another_process_makes_are_seen_at_the_next_listing() {
        let (_dir, log) = log_folder();
        for v in 0..5 {
            commit(&log, v);
        }
        let watched = WatchedFolders::new();
        assert_eq!(watched.names_after(&log, ""), Some(on_disk(&log, "")));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                "echo {} > t.tmp && mv t.tmp 00000000000000000005.json \
                 && rm 00000000000000000000.json && touch _last_checkpoint",
            )
            .current_dir(&log)
            .status()
            .expect("sh");
        assert!(status.success());
        let listed = watched.names_after(&log, "").expect("watched");
        assert_eq!(listed, on_disk(&log, ""));
        assert!(listed.contains(&"00000000000000000005.json".to_string()));
        assert!(!listed.contains(&"00000000000000000000.json".to_string()));
        assert_eq!(watched.reads(), 1);
    }

    #[test]
    fn an_overflowed_queue_makes_every_folder_read_again() {
        let (_dir, log) = log_folder();
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .expect("the kernel's queue limit")
            .trim()
            .parse()
            .expect("a number");
        let watched = WatchedFolders::new();
        assert_eq!(watched.names_after(&log, ""), Some(Vec::new()));
        // More changes than the queue holds, none drained in between.
        for v in 0..(limit as u64 + 100) {
            commit(&log, v);
        }
        std::fs::remove_file(log.join(format!("{:020}.json", 3))).expect("remove");
        let offset = format!("{:020}", 1);
        assert_eq!(
            watched.names_after(&log, &offset),
            Some(on_disk(&log, &offset))
        );
        assert_eq!(watched.reads(), 2, "read again after the overflow");
    }

    #[test]
    fn a_folder_made_again_or_moved_away_is_read_afresh() {
        let (dir, log) = log_folder();
        commit(&log, 0);
        let watched = WatchedFolders::new();
        assert_eq!(watched.names_after(&log, ""), Some(on_disk(&log, "")));

        // Removed and made again with other entries (a table dropped and created again).
        std::fs::remove_dir_all(&log).expect("remove");
        std::fs::create_dir_all(&log).expect("again");
        commit(&log, 7);
        assert_eq!(watched.names_after(&log, ""), Some(on_disk(&log, "")));

        // Its table folder renamed, and a new one made at the old path: no event reaches the
        // old watch, the folder's identity tells.
        std::fs::rename(dir.path().join("table"), dir.path().join("moved")).expect("move");
        std::fs::create_dir_all(&log).expect("new");
        commit(&log, 9);
        let listed = watched.names_after(&log, "").expect("watched");
        assert_eq!(listed, vec![format!("{:020}.json", 9)]);
        assert_eq!(watched.reads(), 3);
    }

    #[test]
    fn names_behind_the_listings_are_forgotten_and_read_again_when_asked_for() {
        let (_dir, log) = log_folder();
        for v in 0..(KEEP_BEHIND_FOR_TESTS as u64 + 50) {
            commit(&log, v);
        }
        let watched = WatchedFolders::new();
        assert_eq!(watched.names_after(&log, ""), Some(on_disk(&log, "")));
        let late = format!("{:020}", KEEP_BEHIND_FOR_TESTS + 20);
        assert_eq!(watched.names_after(&log, &late), Some(on_disk(&log, &late)));
        assert_eq!(watched.reads(), 1);
        // Older than what is kept now: read again.
        let early = format!("{:020}", 5);
        assert_eq!(
            watched.names_after(&log, &early),
            Some(on_disk(&log, &early))
        );
        assert_eq!(watched.reads(), 2);
    }

    #[test]
    fn folders_holding_folders_or_names_object_store_converts_are_not_watched() {
        let (_dir, log) = log_folder();
        commit(&log, 0);
        let watched = WatchedFolders::new();
        assert!(watched.names_after(&log, "").is_some());
        std::fs::create_dir(log.join("_commits")).expect("subfolder");
        assert_eq!(watched.names_after(&log, ""), None, "a subfolder appeared");

        let (_other, odd) = log_folder();
        std::fs::write(odd.join("odd name é.json"), b"x").expect("odd");
        assert_eq!(watched.names_after(&odd, ""), None);
        let missing = odd.join("missing");
        assert_eq!(watched.names_after(&missing, ""), None);
    }
}
