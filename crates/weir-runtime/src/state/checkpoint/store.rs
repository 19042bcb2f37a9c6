//! Where checkpoints are kept: a local directory (the default) or any object store the
//! `object_store` crate reaches, by URL. Files are written whole (write then rename on a local
//! disk, a single PUT in an object store), the manifest last.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::codec::{checksum, decode_batch};
use super::manifest::{Manifest, FORMAT, VERSION};
use super::OperatorSnapshot;
use crate::error::{Result, RuntimeError};

const MANIFEST: &str = "_manifest.json";
const PREFIX: &str = "chk-";

/// A checkpoint read back: its manifest and each operator's state.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The manifest.
    pub manifest: Manifest,
    /// Each operator's state, in tree order.
    pub operators: Vec<OperatorSnapshot>,
    /// Where it was read from.
    pub location: String,
    /// Newer checkpoints that could not be used, and why (the restart fell back past them).
    pub skipped: Vec<String>,
}

/// Runs a store's requests on a runtime of its own: an object store's HTTP client needs one,
/// whichever thread asks (the operator task, or the command line before any query runs).
#[derive(Debug)]
struct Requests {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Requests {
    fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-checkpoints")
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Checkpoint(format!("cannot start the checkpoint store's runtime: {e}")))?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Run `f` to its end.
    fn run<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> Result<T> {
        let Some(runtime) = &self.runtime else {
            return Err(RuntimeError::Internal("the checkpoint store's runtime is gone".into()));
        };
        futures::executor::block_on(runtime.spawn(f)).map_err(|e| RuntimeError::Internal(e.to_string()))
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        // dropped anywhere, async code included: do not wait for the runtime's thread
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    requests: Arc<Requests>,
    root: Path,
    display: String,
    retain: usize,
    /// The directory, when it is on the local disk (its files are fsynced).
    local: Option<PathBuf>,
}

fn io(display: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Checkpoint(format!("{display}: {e}"))
}

/// Why a checkpoint could not be read.
enum LoadError {
    /// Its files are damaged, truncated or missing: an older checkpoint can be used instead.
    Damaged(RuntimeError),
    /// The store could not be read, or the checkpoint is of a layout this weir does not read:
    /// stop rather than fall back (falling back takes back what newer checkpoints published).
    Fatal(RuntimeError),
}

impl From<LoadError> for RuntimeError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Damaged(e) | LoadError::Fatal(e) => e,
        }
    }
}

/// The directory name of checkpoint `id`.
pub fn checkpoint_name(id: u64) -> String {
    format!("{PREFIX}{id:010}")
}

impl CheckpointStore {
    /// Checkpoints under `location`: a local directory (created if missing), or a URL
    /// (`file:///…`, or an object store `object_store` supports in this build).
    pub fn open(location: &str) -> Result<Self> {
        let (store, root): (Arc<dyn ObjectStore>, Path) = if location.contains("://") {
            let url = url::Url::parse(location).map_err(|e| io(location, e))?;
            // an object store's settings come from the environment (AWS_ENDPOINT, AWS_REGION,
            // AWS_ACCESS_KEY_ID, AWS_ALLOW_HTTP, …)
            let (store, root) = object_store::parse_url_opts(&url, std::env::vars())
                .map_err(|e| io(location, format!("{e} (weir reaches local directories, file:// and s3:// URLs)")))?;
            (Arc::from(store), root)
        } else {
            std::fs::create_dir_all(location).map_err(|e| io(location, e))?;
            let store = LocalFileSystem::new_with_prefix(location).map_err(|e| io(location, e))?;
            (Arc::new(store.with_automatic_cleanup(true)), Path::default())
        };
        let local = match url::Url::parse(location) {
            Ok(url) if url.scheme() == "file" => url.to_file_path().ok(),
            Ok(_) => None,
            Err(_) => Some(PathBuf::from(location)),
        };
        let requests = Arc::new(Requests::new()?);
        Ok(Self { store, requests, root, display: location.to_string(), retain: 3, local })
    }

    /// Keep at most `n` (at least 1) complete checkpoints; older ones are deleted.
    pub fn with_retain(mut self, n: usize) -> Self {
        self.retain = n.max(1);
        self
    }

    /// The directory, when checkpoints are on the local disk.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local.as_deref()
    }

    /// Where the checkpoints are, as given.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn put(&self, path: Path, data: Vec<u8>) -> Result<()> {
        let store = Arc::clone(&self.store);
        self.requests
            .run(async move { store.put(&path, PutPayload::from(data)).await })?
            .map_err(|e| io(&self.display, e))?;
        Ok(())
    }

    fn get(&self, path: Path) -> Result<std::result::Result<Vec<u8>, object_store::Error>> {
        let store = Arc::clone(&self.store);
        self.requests.run(async move { Ok(store.get(&path).await?.bytes().await?.to_vec()) })
    }

    fn path(&self, rel: &str) -> Path {
        rel.split('/').fold(self.root.clone(), |p, part| p.clone().join(part))
    }

    /// The location of checkpoint `id`, for people.
    pub fn describe(&self, id: u64) -> String {
        format!("{}/{}", self.display.trim_end_matches('/'), checkpoint_name(id))
    }

    /// Write checkpoint `manifest.id`: the state files, then the manifest. Returns the bytes
    /// written.
    pub fn write(&self, manifest: &Manifest, files: &[(String, Vec<u8>)]) -> Result<u64> {
        let dir = checkpoint_name(manifest.id);
        let mut bytes = 0;
        for (name, data) in files {
            bytes += data.len() as u64;
            let path = self.path(&format!("{dir}/{name}"));
            self.put(path, data.clone())?;
        }
        // on a local disk the state files reach it before the manifest names them
        self.sync(&dir, files.iter().map(|(name, _)| name.as_str()), false)?;
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| io(&self.display, e))?;
        bytes += text.len() as u64;
        let path = self.path(&format!("{dir}/{MANIFEST}"));
        self.put(path, text)?;
        self.sync(&dir, [MANIFEST], true)?;
        self.prune(manifest.id)?;
        Ok(bytes)
    }

    /// On a local disk: fsync the files `names` of checkpoint directory `dir`, and with
    /// `dirs` that directory and the checkpoint directory (so a power cut cannot lose a
    /// checkpoint whose sink output was published).
    fn sync<'a>(&self, dir: &str, names: impl IntoIterator<Item = &'a str>, dirs: bool) -> Result<()> {
        let Some(root) = &self.local else { return Ok(()) };
        let sync = |p: &std::path::Path| {
            std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(|e| io(&p.display().to_string(), e))
        };
        let dir = root.join(dir);
        for name in names {
            sync(&dir.join(name))?;
        }
        if dirs {
            sync(&dir)?;
            sync(root)?;
        }
        Ok(())
    }

    /// Delete the checkpoints after `id` (resuming from `id`, they are abandoned: a later
    /// restart must not pick them up), each manifest first.
    pub fn discard_after(&self, id: u64) -> Result<()> {
        for newer in self.ids()?.into_iter().filter(|n| *n > id) {
            tracing::info!(checkpoint = newer, "discarding a checkpoint newer than the one resumed from");
            self.delete(newer)?;
        }
        Ok(())
    }

    /// Checkpoint ids present (complete or not), ascending.
    fn ids(&self) -> Result<Vec<u64>> {
        let prefix = (!self.root.as_ref().is_empty()).then_some(&self.root);
        let (store, prefix) = (Arc::clone(&self.store), prefix.cloned());
        let listed = self
            .requests
            .run(async move { store.list_with_delimiter(prefix.as_ref()).await })?
            .map_err(|e| io(&self.display, e))?;
        let mut ids: Vec<u64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|f| f.strip_prefix(PREFIX)).and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest checkpoint number present (complete or not), 0 when there is none: new
    /// checkpoints are numbered after it, even when resuming from an older one.
    pub fn newest_id(&self) -> Result<u64> {
        Ok(self.ids()?.last().copied().unwrap_or(0))
    }

    /// Whether checkpoint `id` completed (its manifest is there).
    fn has_manifest(&self, id: u64) -> Result<bool> {
        let (store, path) = (Arc::clone(&self.store), self.path(&format!("{}/{MANIFEST}", checkpoint_name(id))));
        match self.requests.run(async move { store.head(&path).await })? {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io(&self.display, e)),
        }
    }

    fn delete(&self, id: u64) -> Result<()> {
        let prefix = self.path(&checkpoint_name(id));
        let store = Arc::clone(&self.store);
        let objects: Vec<_> = self
            .requests
            .run(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?
            .map_err(|e| io(&self.display, e))?;
        // the manifest first: a half-deleted checkpoint must not look complete
        let (manifest, rest): (Vec<_>, Vec<_>) =
            objects.into_iter().partition(|o| o.location.filename() == Some(MANIFEST));
        for o in manifest.into_iter().chain(rest) {
            let (store, location) = (Arc::clone(&self.store), o.location.clone());
            match self.requests.run(async move { store.delete(&location).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io(&self.display, e)),
            }
        }
        Ok(())
    }

    /// After checkpoint `newest` completed: delete complete checkpoints beyond the retained
    /// count, and incomplete ones older than it (left by a crash while writing).
    fn prune(&self, newest: u64) -> Result<()> {
        let ids = self.ids()?;
        let mut kept = 0;
        for id in ids.into_iter().rev() {
            if id > newest {
                continue;
            }
            if id < newest && !self.has_manifest(id)? {
                self.delete(id)?;
                continue;
            }
            kept += 1;
            if kept > self.retain {
                self.delete(id)?;
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint, falling back past newer ones that cannot be read (each
    /// is listed in [`Restored::skipped`]). `None` when there is none at all; an error when
    /// there are checkpoints and none can be used.
    pub fn latest(&self) -> Result<Option<Restored>> {
        let ids = self.ids()?;
        let mut skipped = Vec::new();
        for id in ids.iter().rev().copied() {
            if !self.has_manifest(id)? {
                // a checkpoint still being written when the process stopped: never completed
                continue;
            }
            match self.load_checked(id) {
                Ok(mut r) => {
                    r.skipped = skipped;
                    return Ok(Some(r));
                }
                Err(LoadError::Damaged(e)) => skipped.push(format!("{}: {e}", self.describe(id))),
                Err(LoadError::Fatal(e)) => {
                    return Err(RuntimeError::Checkpoint(format!("{}: {e}", self.describe(id))));
                }
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(RuntimeError::Checkpoint(format!("no usable checkpoint in {}: {}", self.display, skipped.join("; "))))
        }
    }

    /// Read checkpoint `id`, checking the manifest's format and every state file's size and
    /// checksum.
    pub fn load(&self, id: u64) -> Result<Restored> {
        Ok(self.load_checked(id)?)
    }

    fn load_checked(&self, id: u64) -> std::result::Result<Restored, LoadError> {
        let dir = checkpoint_name(id);
        let damaged = |m: String| LoadError::Damaged(RuntimeError::Checkpoint(m));
        let get = |rel: &str| -> std::result::Result<Vec<u8>, LoadError> {
            let path = self.path(&format!("{dir}/{rel}"));
            match self.get(path).map_err(LoadError::Fatal)? {
                Ok(bytes) => Ok(bytes),
                Err(object_store::Error::NotFound { .. }) => Err(damaged(format!("{rel} is missing"))),
                Err(e) => Err(LoadError::Fatal(io(&self.display, e))),
            }
        };
        let text = get(MANIFEST)?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| damaged(format!("{MANIFEST} is not a valid manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(damaged(format!("{MANIFEST} is not a weir checkpoint manifest")));
        }
        if manifest.version != VERSION {
            return Err(LoadError::Fatal(RuntimeError::Checkpoint(format!(
                "written in checkpoint layout version {}, and this weir reads version {VERSION}: resume it with the weir that wrote it, or use another checkpoint directory",
                manifest.version
            ))));
        }
        if manifest.id != id {
            return Err(damaged(format!("{MANIFEST} names checkpoint {}, not {id}", manifest.id)));
        }
        let mut operators = Vec::with_capacity(manifest.operators.len());
        for op in &manifest.operators {
            let mut snapshot = OperatorSnapshot { meta: op.meta.clone(), batches: Vec::new() };
            for f in &op.files {
                let data = get(&f.path)?;
                if data.len() as u64 != f.bytes || checksum(&data) != f.crc32 {
                    return Err(damaged(format!(
                        "{}: {} bytes, checksum {:08x}; the manifest says {} bytes, checksum {:08x} (damaged or truncated)",
                        f.path,
                        data.len(),
                        checksum(&data),
                        f.bytes,
                        f.crc32
                    )));
                }
                snapshot.batches.push((f.name.clone(), decode_batch(&data, &f.path).map_err(LoadError::Damaged)?));
            }
            operators.push(snapshot);
        }
        Ok(Restored { manifest, operators, location: self.describe(id), skipped: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::checkpoint::{Guarantee, Manifest};

    fn manifest(id: u64) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            id,
            fingerprint: "f".into(),
            query: "q".into(),
            created_unix_ms: 0,
            guarantee: Guarantee::ExactlyOnce,
            finished: false,
            sources: Vec::new(),
            stages: Vec::new(),
            turns: serde_json::Value::Null,
            operators: Vec::new(),
            sink: serde_json::Value::Null,
            late_rows_sink: serde_json::Value::Null,
            bytes: 0,
            parallel: None,
        }
    }

    #[test]
    fn old_and_incomplete_checkpoints_are_pruned_and_a_broken_newest_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap().with_retain(2);
        assert!(store.latest().unwrap().is_none());
        // a checkpoint that never completed (no manifest), then five that did
        std::fs::create_dir_all(dir.path().join(checkpoint_name(1))).unwrap();
        std::fs::write(dir.path().join(checkpoint_name(1)).join("op-0-x.arrow"), b"partial").unwrap();
        for id in 2..=6 {
            store.write(&manifest(id), &[]).unwrap();
        }
        assert_eq!(store.ids().unwrap(), vec![5, 6], "two retained, the incomplete one gone");
        assert_eq!(store.newest_id().unwrap(), 6);
        assert_eq!(store.latest().unwrap().unwrap().manifest.id, 6);
        // the newest's manifest cut short: the previous one is used, with a note
        let path = dir.path().join(checkpoint_name(6)).join(MANIFEST);
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let restored = store.latest().unwrap().unwrap();
        assert_eq!(restored.manifest.id, 5);
        assert!(restored.skipped[0].contains("not a valid manifest"), "{:?}", restored.skipped);
        // a manifest of another layout version is an error, not a reason to fall back
        let mut m = manifest(6);
        m.version = VERSION + 1;
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let err = store.latest().unwrap_err().to_string();
        assert!(err.contains("layout version 2"), "{err}");
        // resuming from 5 abandons what came after it
        store.discard_after(5).unwrap();
        assert_eq!(store.ids().unwrap(), vec![5]);
    }
}
