//! What the server keeps beside the store in its data directory: the node id and the last
//! layout it knew, each written atomically (write a temporary file, sync, rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_ring::{Layout, NodeId};

/// The data directory's layout.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// Largest layout file read back (a layout of 256 nodes and 4096 partitions is far less).
pub const LAYOUT_FILE_BYTES_MAX: u64 = 64 << 20;

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong and what to do.
    pub reason: String,
}

impl StateDir {
    /// The state files under `root` (created if missing).
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(root).map_err(|e| StateError {
            path: root.to_owned(),
            reason: format!("cannot create the data directory: {e}"),
        })?;
        Ok(StateDir {
            root: root.to_owned(),
        })
    }

    /// The redb file.
    pub fn store_file(&self) -> PathBuf {
        self.root.join("cairn.redb")
    }

    /// The store's files: the redb file and its write-ahead log (what a lost disk takes;
    /// the tests and the nemesis harness delete them).
    pub fn store_files(&self) -> [PathBuf; 2] {
        let file = self.store_file();
        let wal = cairn_store::RedbStore::wal_path(&file);
        [file, wal]
    }

    /// Where the development CA and certificates go.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    fn id_file(&self) -> PathBuf {
        self.root.join("node-id")
    }

    fn layout_file(&self) -> PathBuf {
        self.root.join("layout.bin")
    }

    /// This node's id, drawn at random and saved on first start. `created` tells.
    pub fn node_id(&self) -> Result<(NodeId, bool), StateError> {
        let path = self.id_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let id = u64::from_str_radix(text.trim(), 16).map_err(|_| StateError {
                    path: path.clone(),
                    reason: "not a node id (16 hex digits); restore it or start with an empty data directory".into(),
                })?;
                Ok((NodeId(id), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Never 0: it reads as "no node" in logs.
                let id = rand::random::<u64>().max(1);
                write_atomic(&path, format!("{id:016x}\n").as_bytes())?;
                Ok((NodeId(id), true))
            }
            Err(e) => Err(StateError {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// The last layout saved, if any.
    pub fn load_layout(&self) -> Result<Option<Layout>, StateError> {
        let path = self.layout_file();
        let bytes = match std::fs::metadata(&path) {
            Ok(m) if m.len() > LAYOUT_FILE_BYTES_MAX => {
                return Err(StateError {
                    path,
                    reason: format!("larger than {LAYOUT_FILE_BYTES_MAX} bytes: not a layout"),
                })
            }
            Ok(_) => std::fs::read(&path).map_err(|e| StateError {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StateError {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        postcard::from_bytes(&bytes).map(Some).map_err(|e| StateError {
            path,
            reason: format!("not a layout ({e}); remove it to fetch the layout from a peer again (start with --join)"),
        })
    }

    /// Saves `layout`.
    pub fn save_layout(&self, layout: &Layout) -> Result<(), StateError> {
        let bytes = postcard::to_allocvec(layout).map_err(|e| StateError {
            path: self.layout_file(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.layout_file(), &bytes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new file, never half.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |e: std::io::Error| StateError {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ring::LayoutConfig;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cairn-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_store_files_keep_the_names_the_nemesis_harness_deletes() {
        let dir = temp("names");
        let state = StateDir::open(&dir).unwrap();
        // cairn-nemesis's lost-disk fault names these files without linking this crate.
        assert_eq!(
            state.store_files(),
            [dir.join("cairn.redb"), dir.join("cairn.redb.wal")]
        );
    }

    #[test]
    fn node_id_is_drawn_once_and_kept() {
        let dir = temp("id");
        let state = StateDir::open(&dir).unwrap();
        let (id, created) = state.node_id().unwrap();
        assert!(created);
        assert_eq!(state.node_id().unwrap(), (id, false));
        std::fs::write(dir.join("node-id"), "zz").unwrap();
        assert!(state.node_id().unwrap_err().to_string().contains("node-id"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn layout_round_trips_and_garbage_is_refused() {
        let dir = temp("layout");
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(state.load_layout().unwrap(), None);
        let layout = Layout::new(LayoutConfig::new(16, 1).unwrap());
        state.save_layout(&layout).unwrap();
        assert_eq!(state.load_layout().unwrap(), Some(layout));
        std::fs::write(dir.join("layout.bin"), [0xff; 7]).unwrap();
        let e = state.load_layout().unwrap_err().to_string();
        assert!(
            e.contains("layout.bin") && e.contains("not a layout"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
