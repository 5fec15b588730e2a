//! A topic on disk: `topics/<name>/topic.json` (partition count, whether its partitions are
//! Raft replicas, its own settings) and one directory per partition, plus Kafka's topic-name
//! rules.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::{TopicConfig, TopicSettings};
use crate::error::{LogError, Result};
use crate::open_files::OpenFiles;
use crate::partition::Partition;

const META_FILE: &str = "topic.json";

/// The content of `topic.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    /// Partition count.
    pub partitions: u32,
    /// The partitions are Raft replicas (`replica.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated: bool,
    /// Settings given when the topic was created, over the configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TopicConfig>,
}

/// An open topic.
pub(crate) struct Topic {
    pub name: Arc<str>,
    /// Its partitions are Raft replicas.
    pub replicated: bool,
    pub dir: PathBuf,
    pub partitions: Vec<Arc<Partition>>,
    round_robin: AtomicU32,
}

/// Checks a topic name against Kafka's rules: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidTopic(name.to_owned()))
    }
}

impl Topic {
    /// Creates a topic directory with `partitions` partitions and opens it.
    pub(crate) fn create(
        root: &Path,
        name: &str,
        meta: &TopicMeta,
        settings: TopicSettings,
        files: &Arc<OpenFiles>,
    ) -> Result<Self> {
        let partitions = meta.partitions;
        check_name(name)?;
        if partitions == 0 || partitions > 10_000 {
            return Err(LogError::InvalidArgument(format!(
                "{partitions} partitions (1-10000 allowed)"
            )));
        }
        let dir = root.join(name);
        fs::create_dir_all(&dir)
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let bytes =
            serde_json::to_vec(meta).map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let path = dir.join(META_FILE);
        let write = || -> std::io::Result<()> {
            fs::write(&tmp, &bytes)?;
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&dir)?.sync_all()?;
            fs::File::open(root)?.sync_all()
        };
        write().map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
        let topic = Self::open(&dir, name, meta, settings, false, files)?;
        // Make the partition directories' entries durable too.
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io(format!("syncing {}", dir.display()), e))?;
        Ok(topic)
    }

    /// Opens an existing topic directory (`clean`: the last stop was a clean `close`); `None`
    /// if it has no valid metadata (half-created).
    pub(crate) fn load(
        dir: &Path,
        settings: impl Fn(&str, Option<&TopicConfig>) -> TopicSettings,
        clean: bool,
        files: &Arc<OpenFiles>,
    ) -> Result<Option<Self>> {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            return Ok(None);
        };
        if check_name(name).is_err() {
            return Ok(None);
        }
        let Ok(bytes) = fs::read(dir.join(META_FILE)) else {
            return Ok(None);
        };
        let Ok(meta) = serde_json::from_slice::<TopicMeta>(&bytes) else {
            return Ok(None);
        };
        let settings = settings(name, meta.config.as_ref());
        Self::open(dir, name, &meta, settings, clean, files).map(Some)
    }

    fn open(
        dir: &Path,
        name: &str,
        meta: &TopicMeta,
        settings: TopicSettings,
        clean: bool,
        files: &Arc<OpenFiles>,
    ) -> Result<Self> {
        let name: Arc<str> = Arc::from(name);
        let partitions = (0..meta.partitions as i32)
            .map(|p| {
                let pdir = dir.join(p.to_string());
                let settings = settings.clone();
                Partition::open(
                    name.clone(),
                    p,
                    &pdir,
                    settings,
                    clean,
                    meta.replicated,
                    files,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name,
            replicated: meta.replicated,
            dir: dir.to_path_buf(),
            partitions,
            round_robin: AtomicU32::new(0),
        })
    }

    /// The partition `id`.
    pub(crate) fn partition(&self, id: i32) -> Result<&Arc<Partition>> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.to_string(),
                partition: id,
            })
    }

    /// Next partition for a record with neither partition nor key.
    pub(crate) fn next_round_robin(&self) -> i32 {
        (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions.len().max(1) as u32)
            as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_name_rules() {
        for ok in ["events", "events.dlq", "a_b-c.9", &"x".repeat(249)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(250)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
