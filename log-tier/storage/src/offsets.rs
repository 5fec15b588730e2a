//! Durable consumer-group offsets: an in-memory map persisted as one JSON file, rewritten on
//! every commit (temp file, fsync, rename, directory fsync).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

const FILE: &str = "consumer-offsets.json";

#[derive(Serialize, Deserialize)]
struct Entry {
    group: String,
    topic: String,
    partition: i32,
    offset: i64,
}

type Key = (String, String, i32);

/// Committed offsets by (group, topic, partition).
pub(crate) struct OffsetStore {
    dir: PathBuf,
    map: Mutex<BTreeMap<Key, i64>>,
    /// Serialises file rewrites so an older map never overwrites a newer one.
    write_lock: tokio::sync::Mutex<()>,
}

impl OffsetStore {
    /// Loads the store in `dir` (empty when absent).
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let map = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Entry>>(&bytes)
                .map_err(|e| LogError::corrupt(path.display().to_string(), e.to_string()))?
                .into_iter()
                .map(|e| ((e.group, e.topic, e.partition), e.offset))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            map: Mutex::new(map),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, i64>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed offset, if any.
    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.map()
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// All offsets committed by `group`: `(topic, partition, offset)`.
    pub(crate) fn group(&self, group: &str) -> Vec<(String, i32, i64)> {
        self.map()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// Stores an offset durably.
    pub(crate) async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        let _turn = self.write_lock.lock().await;
        let bytes = {
            let mut map = self.map();
            map.insert((group.to_owned(), topic.to_owned(), partition), offset);
            encode(&map)?
        };
        self.persist(bytes).await
    }

    /// Forgets every offset of `topic`.
    pub(crate) async fn remove_topic(&self, topic: &str) -> Result<()> {
        let _turn = self.write_lock.lock().await;
        let bytes = {
            let mut map = self.map();
            map.retain(|(_, t, _), _| t != topic);
            encode(&map)?
        };
        self.persist(bytes).await
    }

    async fn persist(&self, bytes: Vec<u8>) -> Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| LogError::io("writing consumer offsets", e))
    }
}

fn encode(map: &BTreeMap<Key, i64>) -> Result<Vec<u8>> {
    let entries: Vec<Entry> = map
        .iter()
        .map(|((g, t, p), o)| Entry {
            group: g.clone(),
            topic: t.clone(),
            partition: *p,
            offset: *o,
        })
        .collect();
    serde_json::to_vec(&entries).map_err(|e| LogError::InvalidArgument(e.to_string()))
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    File::open(dir)?.sync_all()
}
