//! Small durable files of a group's Raft state beside its log: the vote (which must be on disk
//! before a vote is answered) and the last snapshot's metadata. Each is rewritten whole and
//! atomically: temporary file, fsync, rename, directory fsync.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ReplicationError;

/// One JSON value kept durably in one file.
#[derive(Debug, Clone)]
pub(crate) struct DurableValue {
    path: PathBuf,
}

impl DurableValue {
    /// The value stored at `dir/name` (the directory is created if missing).
    pub(crate) fn new(dir: &Path, name: &str) -> Result<Self, ReplicationError> {
        fs::create_dir_all(dir).map_err(|source| ReplicationError::Io {
            context: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: dir.join(name),
        })
    }

    /// The stored value, `None` if never written.
    pub(crate) fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, ReplicationError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ReplicationError::Io {
                    context: "reading",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReplicationError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Replaces the stored value; returns once it is on disk.
    pub(crate) fn store<T: Serialize>(&self, value: &T) -> Result<(), ReplicationError> {
        let io = |context: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ReplicationError::Io {
                context,
                path,
                source,
            }
        };
        let bytes = serde_json::to_vec(value).map_err(|e| ReplicationError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
        file.write_all(&bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(io("renaming", &tmp))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_survives_reopening_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let value = DurableValue::new(&dir.path().join("g"), "vote").unwrap();
        assert_eq!(value.load::<Vec<u64>>().unwrap(), None);
        value.store(&vec![1u64, 2, 3]).unwrap();
        value.store(&vec![4u64]).unwrap();
        let again = DurableValue::new(&dir.path().join("g"), "vote").unwrap();
        assert_eq!(again.load::<Vec<u64>>().unwrap(), Some(vec![4]));
        assert!(!dir.path().join("g/vote.tmp").exists());
        fs::write(dir.path().join("g/vote"), b"{not json").unwrap();
        let err = again.load::<Vec<u64>>().unwrap_err();
        assert!(matches!(err, ReplicationError::Corrupt { .. }), "{err}");
    }
}
