//! An in-memory cache of small files (SPEC §9, first bullet): a hit costs
//! one `stat(2)` on the calling thread instead of a hop to the blocking
//! pool for open, fstat and read.
//!
//! An entry is keyed by everything that decided how a request was resolved
//! (the `Lookup`: root, relative path, trailing slash, the mount's MIME
//! verdicts and `default`, the accepted codings), and holds the bytes of the
//! file that answered it. A hit is served only while `stat` of that file
//! still shows the same device, inode, size, mtime and ctime; a path that
//! now leads elsewhere (a symlink changed to point outside the root, say)
//! shows another inode and goes through `open.rs` again. What `stat` of one
//! file cannot see — a `.gz` sibling or an index file appearing — is picked
//! up when the entry expires (`revalidate_after`).

use super::conditional::Validators;
use super::encoding::Coding;
use super::open::{Found, Lookup};
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What `stat` says about one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Limits of a [`FileCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCacheLimits {
    /// Larger files are not cached (they are streamed from disk).
    pub max_file_size: u64,
    /// Total bytes of cached contents.
    pub max_total_size: u64,
    pub max_entries: usize,
    /// Age after which an entry is looked up afresh even if its file did
    /// not change (to notice new siblings or index files).
    pub revalidate_after: Duration,
}

impl Default for FileCacheLimits {
    fn default() -> Self {
        FileCacheLimits {
            max_file_size: 1024 * 1024,
            max_total_size: 64 * 1024 * 1024,
            max_entries: 4096,
            revalidate_after: Duration::from_secs(2),
        }
    }
}

/// Small files kept in memory, shared by every request of a worker
/// generation (create one per loaded configuration and pass it to
/// [`serve_cached`](super::serve_cached)).
#[derive(Debug)]
pub struct FileCache {
    limits: FileCacheLimits,
    /// The entries and their total size; a poisoned lock disables the cache.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Lookup, Arc<Entry>>,
    total: u64,
}

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub content: Bytes,
    pub validators: Validators,
    /// The file asked for (after `default`): its name gives the Content-Type.
    pub rel: PathBuf,
    pub coding: Option<Coding>,
    pub vary: bool,
    /// The file whose bytes these are, for the `stat` of each hit.
    full_path: PathBuf,
    stamp: Stamp,
    fetched: Instant,
}

/// Files modified this recently are not cached: within one tick of the
/// file system's clock a write need not change mtime.
const SETTLE: Duration = Duration::from_secs(1);

impl FileCache {
    pub fn new(limits: FileCacheLimits) -> FileCache {
        FileCache {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> &FileCacheLimits {
        &self.limits
    }

    /// The entry for `key`, if its file is unchanged (one `stat`).
    pub(crate) fn get(&self, key: &Lookup) -> Option<Arc<Entry>> {
        let entry = Arc::clone(self.inner.lock().ok()?.map.get(key)?);
        let fresh = entry.fetched.elapsed() < self.limits.revalidate_after
            && std::fs::metadata(&entry.full_path).is_ok_and(|m| Stamp::of(&m) == entry.stamp);
        if fresh {
            return Some(entry);
        }
        if let Ok(mut inner) = self.inner.lock()
            && inner.map.get(key).is_some_and(|e| Arc::ptr_eq(e, &entry))
        {
            inner.map.remove(key);
            inner.total -= entry.content.len() as u64;
        }
        None
    }

    /// Remembers `found` (which must carry its content) for `key`.
    pub(crate) fn insert(&self, key: Lookup, found: &Found) {
        let Some(content) = &found.content else {
            return;
        };
        let len = content.len() as u64;
        let settled = found
            .meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLE);
        if len > self.limits.max_file_size || len > self.limits.max_total_size || !settled {
            return;
        }
        let entry = Arc::new(Entry {
            content: content.clone(),
            validators: Validators::of(&found.meta),
            rel: found.rel.clone(),
            coding: found.coding,
            vary: found.vary,
            full_path: key.root.join(&found.file_rel),
            stamp: Stamp::of(&found.meta),
            fetched: Instant::now(),
        });
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(old) = inner.map.remove(&key) {
            inner.total -= old.content.len() as u64;
        }
        // Make room: drop arbitrary entries (HashMap order is random).
        while inner.total + len > self.limits.max_total_size
            || inner.map.len() >= self.limits.max_entries
        {
            let Some(victim) = inner.map.keys().next().cloned() else {
                break;
            };
            if let Some(old) = inner.map.remove(&victim) {
                inner.total -= old.content.len() as u64;
            }
        }
        if inner.map.len() < self.limits.max_entries {
            inner.total += len;
            inner.map.insert(key, entry);
        }
    }

    /// Number of cached files and their total size in bytes.
    pub fn usage(&self) -> (usize, u64) {
        self.inner
            .lock()
            .map(|i| (i.map.len(), i.total))
            .unwrap_or((0, 0))
    }
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new(FileCacheLimits::default())
    }
}
