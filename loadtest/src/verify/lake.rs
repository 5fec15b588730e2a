//! Reads the lake back (S3 through object_store, or the local directory `headwater serve`
//! writes): every `*.ndjson.zst|gz` object, one envelope per line, counted by `id`.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::error::LoadtestError;
use crate::fleet::parse_id;
use crate::ledger::Tally;

/// A lake being read, remembering which objects were counted already.
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    seen: HashSet<Path>,
    /// Objects read so far.
    pub objects: u64,
}

impl Lake {
    /// The local directory `dir` (created when missing: the router may not have written yet).
    pub fn local(dir: &FsPath, prefix: &str) -> Result<Lake, LoadtestError> {
        std::fs::create_dir_all(dir).map_err(|e| LoadtestError::io(dir, e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(LoadtestError::Lake)?;
        Ok(Lake::new(Arc::new(store), prefix))
    }

    /// S3 bucket `bucket` at `endpoint` (credentials from the usual AWS_* variables).
    pub fn s3(bucket: &str, endpoint: Option<&str>, prefix: &str) -> Result<Lake, LoadtestError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        if std::env::var_os("AWS_REGION").is_none() {
            b = b.with_region("us-east-1");
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            b = b
                .with_access_key_id("testing")
                .with_secret_access_key("testing");
        }
        Ok(Lake::new(
            Arc::new(b.build().map_err(LoadtestError::Lake)?),
            prefix,
        ))
    }

    fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Lake {
        let prefix = prefix.trim_matches('/');
        Lake {
            store,
            prefix: (!prefix.is_empty()).then(|| Path::from(prefix)),
            seen: HashSet::new(),
            objects: 0,
        }
    }

    /// Reads objects not read before and adds this run's ids to `tally`.
    pub async fn read_new(&mut self, run: &str, tally: &mut Tally) -> Result<(), LoadtestError> {
        let metas: Vec<_> = self
            .store
            .list(self.prefix.as_ref())
            .try_collect()
            .await
            .map_err(LoadtestError::Lake)?;
        for meta in metas {
            let name = meta.location.as_ref();
            let zst = name.ends_with(".ndjson.zst");
            if !(zst || name.ends_with(".ndjson.gz")) || self.seen.contains(&meta.location) {
                continue;
            }
            let body = self
                .store
                .get(&meta.location)
                .await
                .map_err(LoadtestError::Lake)?
                .bytes()
                .await
                .map_err(LoadtestError::Lake)?;
            let text =
                decompress(&body, zst).map_err(|e| LoadtestError::io(FsPath::new(name), e))?;
            count_lines(&text, run, tally);
            self.seen.insert(meta.location);
            self.objects += 1;
        }
        Ok(())
    }
}

fn decompress(body: &[u8], zst: bool) -> std::io::Result<Vec<u8>> {
    if zst {
        return zstd::decode_all(body);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Counts the ids of run `run` in NDJSON envelopes.
pub fn count_lines(text: &[u8], run: &str, tally: &mut Tally) {
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(l) = serde_json::from_slice::<Line<'_>>(line)
            && let Some(seq) = parse_id(run, &l.id)
        {
            tally.add(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_local_objects_once() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("lake/dt=2026-12-01/hr=18");
        std::fs::create_dir_all(&sub).unwrap();
        let lines = "{\"id\":\"r-0\",\"payload\":{}}\n{\"id\":\"r-2\"}\n{\"id\":\"other-1\"}\n";
        let z = zstd::encode_all(lines.as_bytes(), 3).unwrap();
        std::fs::write(sub.join("events-0-0-2.ndjson.zst"), z).unwrap();
        std::fs::write(sub.join("ignored.txt"), b"x").unwrap();
        let mut lake = Lake::local(dir.path(), "").unwrap();
        let mut tally = Tally::new(3);
        lake.read_new("r", &mut tally).await.unwrap();
        lake.read_new("r", &mut tally).await.unwrap();
        assert_eq!(lake.objects, 1);
        assert_eq!(tally.distinct(), 2);
    }
}
